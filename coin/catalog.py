"""What this install has registered, kind by kind: the data behind ``coin ls``.

Each kind is one line in ``KINDS``: the module and attribute holding its entries (a
``coin.registry.Registry`` or a plain mapping), and what an entry is. An entry is listed
with its one-line doc, its options (``coin.options.describe``: name, type, default, the
comment beside the field) and, for entries that are plain records (a task, a family, an
order), their key facts. Plugins register into the same registries, so an entry a plugin
adds is listed like a built-in one once the plugin is imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from coin.options import OptionDoc, describe, suggest, type_name
from coin.registry import Registry, UnknownNameError

__all__ = ["KINDS", "Entry", "Kind", "catalog", "entries", "resolve_kind"]


@dataclass(frozen=True)
class Kind:
    """Where one kind's entries live and what they are.

    ``facts`` gives an entry's key facts when the generic ones (a record's plain fields) do
    not say what matters; ``options`` its options when they are not an ``Options`` dataclass.
    """

    module: str
    attr: str
    what: str
    facts: Callable[[str, Any], dict[str, str]] | None = None
    options: Callable[[str], list[OptionDoc]] | None = None


@dataclass
class Entry:
    """One registered entry as ``coin ls`` shows it."""

    name: str
    doc: str = ""
    options: list[OptionDoc] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "doc": self.doc, "options": [dataclasses.asdict(o) for o in self.options],
                "facts": dict(self.facts)}


def _protocol_facts(task: str, spec: Any) -> dict[str, str]:
    """Per protocol of ``task``: its rule, scorer, normaliser and answer source."""
    from coin.tasks.protocol_sets import task_protocols

    return {p.name: f"{p.rule} (scorer {p.scorer}, normaliser {p.normalizer or '–'}, answers {p.answers})"
            for p in task_protocols(task).protocols}


def _order_facts(name: str, tasks: Any) -> dict[str, str]:
    return {"tasks": " → ".join(map(str, tasks))}


def _builder_options(source: str) -> list[OptionDoc]:
    """A builder's extra keyword arguments (``coin data build --option key=value``) with their defaults."""
    from coin.benchmarks.coin.builders import options_of

    return [OptionDoc(k, type_name(type(v)) if v is not None else "any", v, "") for k, v in options_of(source).items()]


# kind -> where its entries are; a new registry is one line here
KINDS: dict[str, Kind] = {
    "methods": Kind("coin.methods", "METHODS", "continual-learning methods (`method:`; options under `method_options:`)"),
    "adapters": Kind("coin.adapters", "ADAPTERS", "adapters (`adapter.type:`; their own keys under `adapter:`)"),
    "backbones": Kind("coin.models.backbone", "BACKBONES", "models (`model.name:`; their own keys under `model:`)"),
    "tasks": Kind("coin.tasks", "TASKS", "tasks of every benchmark (`tasks.order:` lists them)"),
    "benchmarks": Kind("coin.benchmarks", "BENCHMARKS", "task streams: tasks, orders, sources (`data.benchmark:`)",
                       facts=lambda name, spec: spec.describe()),
    "protocols": Kind("coin.tasks", "TASKS", "scoring protocols per task (`eval.protocol: {Task: name}`)",
                      facts=_protocol_facts),
    "orders": Kind("coin.tasks.orders", "ORDERS", "named task orders (`tasks.order:`)", facts=_order_facts),
    "families": Kind("coin.tasks.instructions", "FAMILIES", "instruction families (`data.instructions:`)"),
    "scorers": Kind("coin.scoring.scorers", "SCORERS", "per-answer scorers (`coin score --scorer`)"),
    "normalizers": Kind("coin.scoring.normalize", "NORMALIZERS", "answer normalisers (`coin score --normalizer`)"),
    "builders": Kind("coin.benchmarks.coin.builders", "BUILDERS", "raw-data sources (`coin data build SOURCE`)",
                     options=_builder_options),
    "judge-backends": Kind("coin.scoring.judge.backends", "BACKENDS", "LLM-judge backends (`coin judge --backend`)"),
    "judge-prompts": Kind("coin.scoring.judge.prompt", "PROMPTS", "judge prompt versions (`coin judge --prompt-version`)"),
    "judge-protocols": Kind("coin.scoring.judge.protocols", "JUDGE_PROTOCOLS",
                            "how the judge is asked and read (`coin judge --protocol`)"),
    "trackers": Kind("coin.tracking", "TRACKERS", "experiment trackers (`log.trackers:`)"),
    "conversations": Kind("coin.models.conversation", "CONVERSATIONS", "chat templates of the LLaVA backbones"),
}


def resolve_kind(name: str) -> str:
    """The kind called ``name`` (a singular form is accepted); an unknown one lists the kinds."""
    for plural in (name, name + "s", name[:-1] + "ies" if name.endswith("y") else name):
        if plural in KINDS:
            return plural
    raise UnknownNameError(f"unknown kind {name!r}{suggest(name, KINDS)}; kinds: {', '.join(KINDS)}")


def _is_record(obj: Any) -> bool:
    """An entry that is a plain value (a task spec, a family, an order), not a class or a function."""
    return not (inspect.isclass(obj) or callable(obj))


def _first_line(text: Any) -> str:
    return str(text or "").strip().split("\n")[0].strip()


def _doc(source: Any, name: str, obj: Any) -> str:
    """The entry's one-line doc; a record's class docstring (the same for every entry) is not its doc."""
    doc = source.doc(name) if isinstance(source, Registry) else _first_line(getattr(obj, "doc", "") or "")
    if _is_record(obj) and doc == _first_line(type(obj).__doc__) and not getattr(obj, "doc", None):
        return _first_line(getattr(obj, "description", ""))  # a record may describe itself (a family)
    return doc


def _value(v: Any) -> str | None:
    """A fact's text, or None for a value a listing cannot show in a line (a function, a nested record)."""
    if v is None or isinstance(v, (str, bool, int, float)):
        return None if v is None or v == "" else str(v)
    if isinstance(v, Mapping):
        return ", ".join(map(str, v)) or None
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, (str, int, float, bool)) for x in v):
            return ", ".join(map(str, v)) or None
        names = [getattr(x, "name", None) for x in v]
        return ", ".join(map(str, names)) if all(isinstance(n, str) for n in names) and names else None
    return None


def _facts(obj: Any) -> dict[str, str]:
    """A record's plain fields (not its name or doc), each as one line of text."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        skip = ("name", "doc", "description")  # shown as the entry's name and doc
        pairs = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name not in skip]
    elif isinstance(obj, (list, tuple)):
        pairs = [("items", obj)]
    else:
        return {}
    return {k: text for k, v in pairs if (text := _value(v)) is not None}


def entries(kind: str) -> list[Entry]:
    """Every entry of ``kind`` (see ``KINDS``), by name."""
    spec = KINDS[resolve_kind(kind)]
    source = getattr(importlib.import_module(spec.module), spec.attr)
    names = source.names() if isinstance(source, Registry) else sorted(source)
    out = []
    for name in names:
        obj = source.get(name)
        if spec.options is not None:
            options = spec.options(name)
        else:
            options = describe(source.options_of(name)) if isinstance(source, Registry) else []
        facts = spec.facts(name, obj) if spec.facts is not None else (_facts(obj) if _is_record(obj) else {})
        out.append(Entry(name, _doc(source, name, obj), options, facts))
    return out


def catalog(kinds: list[str] | None = None) -> dict[str, dict]:
    """``{kind: {"what": ..., "entries": [entry dicts]}}`` for ``kinds`` (all when None), JSON-ready."""
    chosen = [resolve_kind(k) for k in kinds] if kinds else list(KINDS)
    return {k: {"what": KINDS[k].what, "entries": [e.to_dict() for e in entries(k)]} for k in chosen}
