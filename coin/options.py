"""One options builder: a typed dataclass from a user's mapping, every problem named by its full key.

The run config, each method, adapter and backbone, and the judge's backends declare their
options as dataclasses (fields with defaults, a comment per field) and go through this one
builder, so they all say the same things the same way, before any weights load:

- ``unknown key 'train.lrr' (did you mean 'train.lr'?)``
- ``train.batch_size must be int, got 'big'``
- ``train.lr must be > 0, got -1`` (from the dataclass's own ``check()``)
- ``train.lr must be a finite number, got nan`` (every key: see below)

No key anywhere accepts NaN or an infinity (``.nan``, ``.inf``, ``1e999``): a number that is not
finite, at any depth of a value (a ``dict[str, float]`` map, a list), is a problem naming its full
key (``eval.max_new_tokens.GQA``, ``train.adam_betas[1]``), unless the section's own ``check()``
already reported that key in its own words; so a ``check()`` comparing ``lr <= 0`` need not
remember that NaN compares false, and a value with a NaN never reaches a run.

A dataclass may define ``check(self) -> list[str]``: value problems, each starting with a key
relative to the dataclass (``"lr must be > 0, got -1"``); the builder adds the prefix. Nested
dataclasses are built and checked recursively, and so is each value of a field annotated
``dict[str, Sub]`` (``train.per_task.GQA.batch_size``). A dataclass whose class attribute ``__open__``
names one of its dict fields is an *open section*: keys that are not its fields are collected
there instead of reported, for the layer above to check against the registry entry the
section selects (``adapter.type`` picks the adapter, whose own ``Options`` take ``experts``).

This module imports nothing from coin, so anything may use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import io
import math
import re
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

from coin.errors import OptionsError

__all__ = ["NoOptions", "OptionDoc", "OptionsError", "build", "check_type", "closest", "describe", "flat_dict", "parse_section",
           "nonfinite", "open_field", "option_problems", "parse", "suggest", "type_name"]


@dataclass
class NoOptions:
    """The options of an entry that takes none (any key given is reported as unknown)."""


def closest(name: object, choices: Iterable[str]) -> str | None:
    """The choice nearest to ``name`` (difflib's ratio above 0.6), or None."""
    found = difflib.get_close_matches(str(name), list(choices), n=1)
    return found[0] if found else None


def suggest(name: object, choices: Iterable[str], prefix: str = "") -> str:
    """``" (did you mean 'prefix+x'?)"`` for the nearest choice, or an empty string."""
    near = closest(name, choices)
    return f" (did you mean '{prefix}{near}'?)" if near else ""


def check_type(value: Any, tp: Any) -> bool:
    """Whether ``value`` fits the annotation ``tp`` (bool is not an int; an int is a float)."""
    if tp is Any or isinstance(tp, typing.TypeVar):
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(check_type(value, t) for t in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is type(None) or tp is None:
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, (dict, tp))
    return isinstance(value, tp) if isinstance(tp, type) else True


def type_name(tp: Any) -> str:
    """A readable name for an annotation (``int or null``)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(t) for t in typing.get_args(tp))
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None) or tp is None:
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(tp, "__name__", str(tp))


_SCI = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _coerce(value: Any, tp: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; read it as the number everyone means.

    Only where a string does not fit the key (``lr: float``): a key that takes strings (``str``,
    ``str | float``, ``Any``) keeps what the user wrote.
    """
    if isinstance(value, str) and _SCI.match(value.strip()) and not check_type(value, tp) and check_type(1.0, tp):
        return float(value)
    return value


def nonfinite(value: Any, key: str = "") -> list[tuple[str, float]]:
    """(key, number) of every non-finite float in ``value``, at any depth (``key``, ``key.name``, ``key[2]``)."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(key, value)]
    if isinstance(value, dict):
        return [f for name, v in value.items() for f in nonfinite(v, f"{key}.{name}" if key else str(name))]
    if isinstance(value, (list, tuple)):
        return [f for i, v in enumerate(value) for f in nonfinite(v, f"{key}[{i}]")]
    return []


def _dataclass_of(tp: Any, value: Any) -> type | None:
    """The dataclass a mapping given for annotation ``tp`` is built as (``Sub`` or ``Sub | None``), else None."""
    if not isinstance(value, dict):
        return None
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if not any(typing.get_origin(a) is dict or a is dict or a is Any for a in args):
            found = [a for a in args if dataclasses.is_dataclass(a)]
            return found[0] if len(found) == 1 else None
    return None


def _mapping_entry(tp: Any) -> type | None:
    """The dataclass ``Sub`` of an annotation ``dict[str, Sub]`` (a mapping of named sections), else None."""
    args = typing.get_args(tp) if typing.get_origin(tp) is dict else ()
    return args[1] if len(args) == 2 and dataclasses.is_dataclass(args[1]) else None


def _make(cls: type, kwargs: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    """``cls(**kwargs)``; a field without a default that ``kwargs`` lacks is a problem, not a ``TypeError``."""
    missing = [f for f in dataclasses.fields(cls) if f.init and f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if not missing:
        return cls(**kwargs)
    for f in missing:
        if not any(p.startswith(f"{prefix}{f.name} ") for p in problems):  # not already reported as mistyped
            problems.append(f"{prefix}{f.name} is required")
    obj = object.__new__(cls)  # every field set, the missing ones to None, so the caller can go on reading
    for f in dataclasses.fields(cls):
        if f.name in kwargs:
            value = kwargs[f.name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = None
        object.__setattr__(obj, f.name, value)
    return obj


def _is_float(tp: Any) -> bool:
    if tp is float:
        return True
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else ()
    return float in args and int not in args


def open_field(cls: type) -> str | None:
    """The dict field collecting an open section's other keys (``__open__``), or None."""
    return getattr(cls, "__open__", None)


def build(cls: type, data: Any, prefix: str = "", problems: list[str] | None = None) -> Any:
    """An instance of the dataclass ``cls`` from ``data``; problems are appended to ``problems``.

    Never raises for bad input: an unusable key keeps its default and the problem is listed.
    ``prefix`` is the dotted key of ``cls`` itself (``"train."``), used in every message.
    """
    return _build(cls, data, prefix, [] if problems is None else problems)[0]


def _build(cls: type, data: Any, prefix: str, problems: list[str]) -> tuple[Any, bool]:
    """``build``, and whether every value given fit (the section and the ones nested in it).

    A section's own ``check()`` runs only when every value fit: one that did not kept its
    default, and judging values then would mislead. A nested section's failed ``check()`` does
    not stop its parent's: its values are the user's, so every value problem is listed at once.
    """
    if isinstance(data, cls):
        return data, True
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(data).__name__}")
        return _make(cls, {}, prefix, []), False
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    extra_field = open_field(cls)
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    bad_values = 0  # a value that did not fit kept its default: checking values then would mislead
    unfinite: dict[str, list[tuple[str, float]]] = {}  # field -> its non-finite numbers (key, value)
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key == extra_field or key not in names:
            if extra_field is not None and key != extra_field:
                extra[key] = value
                continue
            choices = [n for n in names if n != extra_field]
            listing = f"; {cls.__name__} takes: {', '.join(choices)}" if len(choices) <= 12 and choices else ""
            if not choices:
                listing = f"; {cls.__name__} takes no options"
            problems.append(f"unknown key '{full}'{suggest(key, choices, prefix)}{listing}")
            continue
        tp = hints[key]
        value = _coerce(value, tp)
        sub = tp if dataclasses.is_dataclass(tp) and not isinstance(value, tp) else _dataclass_of(tp, value)
        entry = _mapping_entry(tp)
        if entry is not None and isinstance(value, dict):  # ``dict[str, Sub]``: each value a nested section
            kwargs[key] = {}
            for name, item in value.items():
                kwargs[key][name], fit = _build(entry, item, f"{full}.{name}.", problems)
                bad_values += not fit
        elif sub is not None:  # a nested section (``Sub`` or ``Sub | None`` given a mapping)
            kwargs[key], fit = _build(sub, value, full + ".", problems)
            bad_values += not fit
        elif check_type(value, tp):
            kwargs[key] = float(value) if _is_float(tp) and isinstance(value, int) else value
            if found := nonfinite(value, full):  # NaN/inf: never usable; reported below, after check()
                unfinite[key] = found
        else:
            problems.append(f"{full} must be {type_name(tp)}, got {value!r}")
            bad_values += 1
    if extra_field is not None:
        kwargs[extra_field] = extra
    n = len(problems)
    obj = _make(cls, kwargs, prefix, problems)
    fit = not bad_values and len(problems) == n  # no value kept its default, no required key missing
    own: list[str] = []
    if fit:
        check = getattr(obj, "check", None)
        if callable(check):
            own = [prefix + p for p in check()]
            problems += own
    for key, found in unfinite.items():  # every non-finite number is a problem, said by check() or here
        full = f"{prefix}{key}"
        if not any(p.startswith(full) and p[len(full):len(full) + 1] in (" ", ".", "[", ":") for p in own):
            problems += [f"{k} must be a finite number, got {v}" for k, v in found]
    return obj, fit


def option_problems(cls: type, data: Any, prefix: str = "") -> list[str]:
    """Every problem with ``data`` as options of ``cls`` (empty when there is none)."""
    problems: list[str] = []
    build(cls, data, prefix, problems)
    return problems


def parse(cls: type, data: Any, prefix: str = "", source: str | None = None, what: str = "options") -> Any:
    """An instance of ``cls`` from ``data``; raises ``OptionsError`` listing every problem."""
    problems: list[str] = []
    obj = build(cls, data, prefix, problems)
    if problems:
        raise OptionsError(problems, source, what)
    return obj


def flat_dict(obj: Any) -> Any:
    """``dataclasses.asdict`` where each open section's collected options sit beside its own keys."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        extra_field = open_field(type(obj))
        for f in dataclasses.fields(obj):
            value = flat_dict(getattr(obj, f.name))
            if f.name == extra_field:
                out.update(value if isinstance(value, dict) else {})
            else:
                out[f.name] = value
        return out
    if isinstance(obj, dict):
        return {k: flat_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(flat_dict(v) for v in obj)
    return obj


def parse_section(section: Any, key: str, selector: str, registry: Any) -> tuple[Any, list[str]]:
    """An open section (``model``, ``adapter``...) with its entry's own keys parsed, and every problem.

    ``getattr(section, selector)`` names the entry in ``registry`` (a ``coin.registry.Registry``);
    the keys collected in ``section.options`` are built with the entry's options dataclass
    (``registry.options_of``), and then the entry's ``check_section(section)``, if it has one, joins
    them with the section's common keys (MoELoRA: ``adapter.r`` divisible by ``adapter.experts``).
    A key another entry takes is named with that entry. Returns a copy; ``section`` is unchanged.
    """
    name = getattr(section, selector)
    if name not in registry:
        return section, [f"{key}.{selector}: {registry.unknown_message(name)}"]
    options_cls = registry.options_of(name) or NoOptions
    raw = section.options if isinstance(section.options, dict) else flat_dict(section.options)
    problems: list[str] = []
    options = build(options_cls, raw, f"{key}.", problems)
    common = [f.name for f in dataclasses.fields(section) if f.name != open_field(type(section))]
    own = [f.name for f in dataclasses.fields(options_cls)] if dataclasses.is_dataclass(options_cls) else []
    for i, problem in enumerate(problems):
        for k in raw:
            if not problem.startswith(f"unknown key '{key}.{k}'"):
                continue
            owners = [n for n in registry.names()
                      if n != name and k in getattr(registry.options_of(n), "__dataclass_fields__", {})]
            if owners:  # a key of another entry: say which one takes it
                problems[i] = (f"unknown key '{key}.{k}' for {key}.{selector} {name!r}: it is an option of "
                               f"{', '.join(repr(o) for o in owners)}")
            elif "(did you mean" not in problem and (near := closest(k, common)):  # a typo of a common key
                problems[i] = problem.replace(f"unknown key '{key}.{k}'",
                                              f"unknown key '{key}.{k}' (did you mean '{key}.{near}'?)", 1)
    takes = f"; {options_cls.__name__} takes"  # say it of the entry users name, not of its options class
    problems = [p.replace(takes, f"; {registry.kind} {name!r} takes") for p in problems]
    out = dataclasses.replace(section, options=options)
    check = getattr(registry.get(name), "check_section", None)
    if not problems and callable(check):
        problems += check(out)
    return out, problems


@dataclass(frozen=True)
class OptionDoc:
    """One option as ``coin ls`` shows it."""

    name: str
    type: str
    default: Any
    doc: str



def parsed(section: Any, key: str, selector: str, registry: Any) -> Any:
    """``section`` with its entry's ``options`` parsed (``parse_section``), raising ``OptionsError`` on a problem.

    A section from ``coin.config_load`` (its options already the entry's dataclass) is returned as it
    is; one built by hand (``options`` still a mapping) is parsed here, so a bad key still names itself.
    """
    options_cls = registry.options_of(getattr(section, selector)) or NoOptions
    if isinstance(section.options, options_cls):
        return section
    section, problems = parse_section(section, key, selector, registry)
    if problems:
        raise OptionsError(problems, what=key)
    return section

def describe(cls: type | None) -> list[OptionDoc]:
    """The options of the dataclass ``cls``: name, type, default and the comment beside the field."""
    if cls is None or not dataclasses.is_dataclass(cls):
        return []
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name == open_field(cls):
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = flat_dict(f.default_factory())
        else:
            default = None
        out.append(OptionDoc(f.name, type_name(hints[f.name]), default, f.metadata.get("doc") or comments.get(f.name, "")))
    return out


@lru_cache(maxsize=None)
def _field_comments(cls: type) -> dict[str, str]:
    """{field: its comment}, read from the class's source (MRO too).

    The comment is the one beside the field (``name: type = default  # comment``), else the
    comment lines right above it. The class may sit at any depth (inside a function, a class).
    """
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        fields = {f.name for f in dataclasses.fields(klass)}
        pending, above = None, []  # the field named on this line; the comment block just above
        try:
            for tok in tokenize.generate_tokens(io.StringIO(source).readline):
                if tok.type == tokenize.COMMENT and tok.start[1] == 4 and pending is None:
                    above.append(tok.string.lstrip("#").strip())
                elif tok.type == tokenize.NAME and tok.start[1] == 4 and pending is None:
                    pending = (tok.string, tok.start[0])
                    if tok.string in fields and above:
                        out[tok.string] = " ".join(above)
                    above = []
                elif tok.type == tokenize.COMMENT and pending and tok.start[0] == pending[1]:
                    if pending[0] in fields:
                        out[pending[0]] = tok.string.lstrip("#").strip()
                if tok.type == tokenize.NEWLINE:
                    pending = None
                elif tok.type == tokenize.NL and pending is None and not tok.line.strip():
                    above = []  # a blank line ends a comment block
        except (tokenize.TokenError, IndentationError):
            continue
    return out
