"""Instruction families: which format-instruction line each task's prompts end with.

CoIN asks whether the *wording* of the instruction matters. A family is a way of choosing
that line; the lines themselves live with each task (``TaskSpec.instructions`` in
``coin/tasks/<task>.py``), so a task is one file:

- ``original`` (Type1): the line of the released files (SPEC section 2), ``TaskSpec.instruction``;
- ``diverse`` (Type2): one distinct line per task, from table 1 of the paper;
- ``10type``: ten lines per task, one drawn per sample (seeded by sample id).

Only some strings are known from the paper; every string we wrote ourselves carries
``ours=True`` so a report can say which prompts differ from the original benchmark. A
family without a line for a task (a plugin task that gives only its Original line) falls
back to the task's Original line, marked ``fallback=True``; ``ours`` and ``prompt_notes``
list those too. Grounding's line embeds the referring expression (``{}``), so applying a
family to a Grounding prompt first reads the expression back out of whichever template it uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from coin.scoring.item import TestItem
from coin.registry import Registry
from coin.tasks.spec import TASKS, Template, get_task

__all__ = ["ALIASES", "FAMILIES", "Family", "Note", "Template", "apply_family", "draw", "get_family", "ours",
           "prompt_notes", "rewrite", "split_prompt", "templates"]

ORIGINAL_FAMILY = "original"


@dataclass(frozen=True)
class Family:
    """An instruction family: a name and how a sample gets its line; the lines live with the tasks.

    ``per_sample`` draws one of a task's lines per sample. ``lines`` are a family's own lines
    per task, for a family added by a plugin (used where the task's spec has none for it).
    """

    name: str
    description: str
    per_sample: bool = False
    lines: Mapping[str, tuple[Template, ...]] = field(default_factory=dict, hash=False)

    def templates_for(self, task: str) -> tuple[Template, ...]:
        """``task``'s lines in this family; its Original line, marked ``fallback``, when it has none."""
        spec = get_task(task)
        for key in spec.instructions:
            if key not in FAMILIES:
                raise ValueError(f"task {task}: instructions.{key}: {FAMILIES.unknown_message(key)}")
        if self.name == ORIGINAL_FAMILY:
            return (Template(spec.instruction),)
        own = spec.instructions.get(self.name) or tuple(self.lines.get(task, ()))
        return own or (Template(spec.instruction, fallback=True),)

    @property
    def templates(self) -> dict[str, tuple[Template, ...]]:
        """Every registered task's lines in this family (fallbacks marked)."""
        return {task: self.templates_for(task) for task in TASKS}


FAMILIES: Registry[Family] = Registry("instruction family")
ORIGINAL = FAMILIES.register(Family(name=ORIGINAL_FAMILY, description="Type1: the line of the released CoIN files"))
DIVERSE = FAMILIES.register(Family(name="diverse", description="Type2: one distinct line per task (paper, table 1)"))
TEN_TYPE = FAMILIES.register(Family(name="10type", description="ten lines per task, one drawn per sample (seeded)",
                                    per_sample=True))

ALIASES = {"type1": "original", "type2": "diverse", "10types": "10type"}


def get_family(name: str) -> Family:
    """The family ``name`` (case-insensitive; "type1"/"type2" accepted); unknown names list the choices."""
    key = str(name).lower()
    return FAMILIES.get(ALIASES.get(key, key))


def templates(family: str, task: str) -> tuple[Template, ...]:
    """The templates of ``task`` in ``family`` (its Original line, marked ``fallback``, where the family has none)."""
    return get_family(family).templates_for(task)


def draw(family: str, task: str, sample_id: str, seed: int = 0) -> Template:
    """The template a sample gets: fixed, or a seeded draw keyed by the sample's id.

    Keyed by id (not position), so volume subsets and shuffles keep each sample's line.
    """
    options = templates(family, task)
    if len(options) == 1:
        return options[0]
    digest = hashlib.blake2b(f"{seed}/{task}/{sample_id}".encode(), digest_size=8).digest()
    return options[int.from_bytes(digest, "big") % len(options)]


def _norm(line: str) -> str:
    return line.strip().rstrip(".").strip().lower()


def _known_lines(task: str) -> frozenset[str]:
    """``task``'s lines of every family, normalised (cached per set of registered families)."""
    return _known_lines_of(task, tuple(FAMILIES.names()))


@lru_cache(maxsize=None)
def _known_lines_of(task: str, families: tuple[str, ...]) -> frozenset[str]:
    return frozenset(_norm(t.text) for fam in families for t in FAMILIES.get(fam).templates_for(task)
                     if "{}" not in t.text)


@lru_cache(maxsize=None)
def _slot_patterns(task: str, families: tuple[str, ...]) -> tuple[re.Pattern, ...]:
    """Patterns that read the embedded text (``{}``) back out of any of ``task``'s lines, most specific first."""
    out = []
    for fam in families:
        for t in FAMILIES.get(fam).templates_for(task):
            head, _, tail = t.text.partition("{}")
            out.append(re.compile(re.escape(head.strip()) + r"\s*(.+?)\s*" + re.escape(tail.strip()) + "$", re.S))
    return tuple(sorted(out, key=lambda p: -len(p.pattern)))  # most specific first


def split_prompt(text: str, task: str, where: str = "prompt") -> tuple[str, str | None]:
    """Split a prompt into (body before the instruction line, embedded description or None).

    Raises ``ValueError`` naming ``where`` when the last line is not an instruction of
    ``task`` in any family: replacing it would silently drop part of the question.
    """
    body, _, last = text.rstrip().rpartition("\n")
    if "{}" in get_task(task).instruction:
        for pat in _slot_patterns(task, tuple(FAMILIES.names())):
            if m := pat.match(last.strip()):
                return body, m.group(1)
        raise ValueError(f"{where}: no {task} instruction template matches {last.strip()!r}")
    if not body.strip():
        raise ValueError(f"{where}: expected the question and then the format-instruction line, got {text!r}")
    if _norm(last) not in _known_lines(task):
        raise ValueError(f"{where}: last line {last.strip()!r} is not a {task} format instruction of any family")
    return body, None


def rewrite(text: str, task: str, family: str, sample_id: str, seed: int = 0, where: str = "prompt") -> str:
    """``text`` with its format-instruction line replaced by ``family``'s line for this sample."""
    body, description = split_prompt(text, task, where)
    line = draw(family, task, sample_id, seed).text
    if description is not None:
        line = line.format(description)
    return f"{body}\n{line}" if body else line


def _kind(item: Any) -> str:
    if isinstance(item, TestItem):
        return "item"
    if isinstance(item, dict):
        return "train" if "conversations" in item else "test"
    if dataclasses.is_dataclass(item) and hasattr(item, "prompt"):
        return "sample"
    raise TypeError(f"cannot apply an instruction family to a {type(item).__name__}")


def _apply_one(item: Any, family: str, seed: int, task: str | None, k: int) -> Any:
    kind = _kind(item)
    if kind == "sample":
        t, where = task or item.task, f"sample {k} (id {item.id})"
        turns = tuple((rewrite(q, t, family, item.id, seed, f"{where} turn {n + 1}"), a)
                      for n, (q, a) in enumerate(item.turns))
        return dataclasses.replace(item, prompt=rewrite(item.prompt, t, family, item.id, seed, where), turns=turns)
    if kind == "item":  # a loaded test record
        where = f"record {k} (question_id {item.question_id})"
        return dataclasses.replace(item, text=rewrite(item.text, task or item.task, family, item.question_id, seed, where))
    if kind == "test":
        sid = str(item["question_id"])
        t = task or item["task"]
        return {**item, "text": rewrite(str(item["text"]), t, family, sid, seed, f"record {k} (question_id {sid})")}
    sid = str(item["id"])
    if task is None:
        raise ValueError(f"record {k} (id {sid}): training records carry no task name; pass task=")
    conv = []
    for n, turn in enumerate(item["conversations"]):
        if not isinstance(turn, dict) or turn.get("from") != "human":
            conv.append(turn)
            continue
        value = str(turn["value"])
        prefix = "<image>\n" if value.startswith("<image>\n") else ""
        where = f"record {k} (id {sid})" + (f" turn {n // 2}" if n else "")
        conv.append({**turn, "value": prefix + rewrite(value[len(prefix):], task, family, sid, seed, where)})
    return {**item, "conversations": conv}


def apply_family(items: Iterable[Any], family: str, seed: int = 0, task: str | None = None) -> list:
    """Rewrite the format-instruction line of every item for ``family`` (new objects; inputs untouched).

    Items may be training ``Sample``s, loaded test records (``TestItem``), released test records (``text``) or released training
    records (``conversations``; these need ``task``). ``10type`` draws per sample id.

    Every human turn is rewritten, not only the first: released records group several
    questions about one image into one conversation, each ending with the format line, so
    rewriting the first alone would train on a mix of families. All turns of one record get
    the same line (the draw is keyed by the record's id).
    """
    get_family(family)
    return [_apply_one(item, family, seed, task, k) for k, item in enumerate(items)]


class Note(NamedTuple):
    """A line whose wording is not the paper's: ``fallback`` (a task's Original line standing in) or ours."""

    family: str
    task: str
    text: str
    fallback: bool = False


def ours(family: str | None = None, tasks: Sequence[str] | None = None) -> list[Note]:
    """Every line we wrote ourselves and every fallback line, per family and task (for reports and docs).

    ``tasks`` defaults to every registered task; ``family`` to every family.
    """
    names = [get_family(family).name] if family else FAMILIES.names()
    return [Note(f, task, t.text, t.fallback) for f in names for task in (tasks or TASKS.names())
            for t in FAMILIES.get(f).templates_for(task) if t.ours or t.fallback]


def prompt_notes(family: str, tasks: Sequence[str]) -> list[str]:
    """One sentence per task whose ``family`` lines are not the paper's: written by coin, or a fallback.

    For a run's report. A task not registered in this process (a plugin's, read back
    without the plugin) is named as such instead of failing the report.
    """
    fam = get_family(family)
    out = []
    for task in tasks:
        if task not in TASKS:
            out.append(f"{task}: not registered here (a plugin's task?); its {fam.name} lines are unknown")
            continue
        notes = ours(fam.name, [task])
        if any(n.fallback for n in notes):
            out.append(f"{task}: no {fam.name} line of its own; falls back to its Original line "
                       f"{notes[0].text!r}")
        elif notes:
            out.append(f"{task}: {len(notes)} of its {fam.name} line(s) written by coin, not taken from the paper")
    return out
