"""Scoring protocols: per task, which scorer, which normaliser and which answers.

A number can only be set beside the paper's when it was scored by the paper's rule, and
coin's own, stricter rules are worth reporting too. So every task declares its protocols
in its own file (``coin/tasks/<task>.py``, ``TaskSpec.protocols``), by name:

- ``paper``: the original CoIN evaluation of that task, with its bugs fixed (SPEC
  section 3: an empty prediction is wrong, predictions are paired with answers by id,
  boxes and letters are parsed robustly). Reports lead with it, and ``matrix.json``'s
  top-level ``matrix``/``metrics``/``ci`` are its numbers.
- ``strict``: coin's own rule where it differs from ``paper`` (whole-name match for
  ImageNet; the VQA answer normalisation and, where the records have ten answers, soft
  accuracy for the short-answer tasks). A task without one scores ``strict`` = ``paper``.
- further names a task may offer, e.g. TextVQA's ``single`` for released files without
  the official ten answers. ``eval.protocol: {Task: name}`` scores a task by that
  protocol in both tables, and the protocol card says so.

Each protocol lists its deliberate differences from the original code, one line each;
``protocol_card`` turns them into the table every report, ``matrix.json`` and
``coin score --help`` show. This module holds the machinery; the ``Protocol`` dataclass
the task files use lives below it, in ``coin.scoring.protocol``. It imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from coin.scoring.item import TestItem, as_item
from coin.scoring.protocol import ANSWER_SOURCES, Protocol
from coin.scoring.scorers import TaskScore, score_task
from coin.options import closest
from coin.registry import UnknownNameError
from coin.tasks import TASKS, get_task
from coin.tasks.orders import ORDERS

__all__ = [
    "COLUMNS",
    "ANSWER_SOURCES",
    "Protocol",
    "TaskProtocols",
    "task_protocols",
    "protocol_names",
    "resolve",
    "with_backbone",
    "choice_problems",
    "needs_ten_answers",
    "answer_keys",
    "score_protocols",
    "protocol_card",
    "format_card",
]

COLUMNS = ("paper", "strict")  # the two protocols every report and matrix.json carry


@dataclass(frozen=True)
class TaskProtocols:
    """The protocols a task offers (``paper`` first), by name."""

    task: str
    protocols: tuple[Protocol, ...]

    def get(self, name: str) -> Protocol:
        for p in self.protocols:
            if p.name == name:
                return p
        raise UnknownNameError(f"task {self.task} has no protocol {name!r}; choices: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return [p.name for p in self.protocols]


def task_protocols(task: str) -> TaskProtocols:
    """``task``'s protocols (its spec's); a task declared without any (a plugin's) gets its scorer as ``paper``."""
    spec = get_task(task)  # an unknown task lists the choices
    if spec.protocols:
        return TaskProtocols(task, spec.protocols)
    return TaskProtocols(task, (Protocol(name="paper", scorer=spec.scorer, normalizer=None, answers="one",
                                         rule=f"the task's scorer {spec.scorer!r}"),))


def protocol_names(task: str) -> list[str]:
    """The protocol names ``task`` offers (an unknown task lists the choices)."""
    return task_protocols(task).names()


def resolve(task: str, choice: Mapping[str, str | Mapping[str, str]] | None = None) -> dict[str, Protocol]:
    """The protocol behind each column (``paper``, ``strict``) for ``task``.

    ``strict`` falls back to ``paper`` where the task has none; a name chosen in
    ``choice`` (``eval.protocol``) replaces both. A ``{"paper": name}`` entry (a backbone's
    own, ``with_backbone``) makes ``name`` the task's paper protocol: the ``paper`` column,
    and ``strict`` where the task has no strict protocol.
    """
    tp = task_protocols(task)
    chosen = (choice or {}).get(task)
    if isinstance(chosen, str):
        p = tp.get(chosen)
        return {c: p for c in COLUMNS}
    paper = tp.get((chosen or {}).get("paper", "paper"))
    return {"paper": paper, "strict": tp.get("strict") if "strict" in tp.names() else paper}


def with_backbone(choice: Mapping[str, str] | None, paper: Mapping[str, str]) -> dict:
    """``eval.protocol`` (``choice``) completed with a backbone's own paper protocols (``Backbone.protocols``).

    Where the code CoIN ran a backbone with scored a task by a rule of its own (MiniGPT-v2's
    Grounding script), that protocol is the task's paper protocol for the backbone's runs; a task
    the user chose in ``eval.protocol`` keeps the user's choice.
    """
    return {**{task: {"paper": name} for task, name in paper.items()}, **dict(choice or {})}


def choice_problems(choice: object, key: str = "eval.protocol") -> list[str]:
    """Problems with a per-task protocol choice (``{Task: name}``), each naming its key."""
    if not isinstance(choice, Mapping):
        return [f"{key} must be a mapping of task names to protocol names, got {choice!r}"]
    problems = []
    for task, name in choice.items():
        if task not in TASKS:
            problems.append(f"{key}: {TASKS.unknown_message(task)}")
            continue
        names = protocol_names(task)
        if name not in names:
            hint = f" Did you mean {near!r}?" if (near := closest(name, names)) else ""
            problems.append(f"{key}.{task}: unknown protocol {name!r}.{hint} Choices: {', '.join(names)}")
    return problems


def needs_ten_answers(task: str, choice: Mapping[str, str] | None = None) -> bool:
    """Whether a protocol ``task`` is scored by needs ten ``answers`` on every record."""
    return any(p.answers == "ten" for p in resolve(task, choice).values())


def answer_keys(task: str) -> tuple[str, ...]:
    """The answer keys a test record of ``task`` must hold: what any of its protocols reads (``Protocol.reads``).

    Every protocol the task declares counts, not only the run's choice, so ``coin data check``
    and the loader give one verdict whatever ``eval.protocol`` says: Grounding's records need
    ``answer_bbox`` (and no ``answer``), most tasks' an ``answer``, MLLM-CL's APP none.
    """
    return tuple(dict.fromkeys(key for p in task_protocols(task).protocols for key in p.reads))


def missing_ten_answers(records: Sequence[TestItem | Mapping]) -> list[str]:
    """Question ids of records without a list of ten ``answers`` (a plain mapping is read by ``TestItem.from_row``)."""
    records = [as_item(r) for r in records]
    return [r.question_id for r in records if not (isinstance(r.answers, list) and len(r.answers) == 10)]


def score_protocols(task: str, outputs: Mapping, records: Sequence[TestItem | Mapping],
                    choice: Mapping[str, str] | None = None) -> dict[str, TaskScore]:
    """Score ``outputs`` under each column's protocol; a protocol scored twice is computed once.

    A protocol that needs ten answers refuses records without them (``ValueError`` naming
    the first ids) instead of quietly scoring them by another rule.
    """
    out: dict[str, TaskScore] = {}
    done: dict[str, TaskScore] = {}
    records = [as_item(r) for r in records]  # a user's own JSON records (``TestItem.from_row``)
    for column, p in resolve(task, choice).items():
        if p.name not in done:
            if p.answers == "ten" and (bad := missing_ten_answers(records)):
                raise ValueError(f"{task}: protocol {p.name!r} needs ten answers per record; {len(bad)} record(s) "
                                 f"have none, e.g. question_id {', '.join(bad[:3])}. Give data.answers.{task} "
                                 f"(the official annotation file) or choose another protocol in eval.protocol.{task}")
            done[p.name] = score_task(p.scorer_fn(), outputs, records)
        out[column] = done[p.name]
    return out


def protocol_card(tasks: Sequence[str], choice: Mapping[str, str] | None = None,
                  image_mode: str | None = None) -> dict[str, dict]:
    """Per task and column: protocol name, scorer, normaliser, answers and deviations (JSON-ready).

    ``image_mode``: ``eval.image_mode`` of a LLaVA run (``coin.tasks.image_modes``); each column then says how
    the task's test images were preprocessed (``image``), and a difference from the original's is listed
    with the option that reproduces it. None: a backbone with its own preprocessing (no entry).
    """
    from coin.tasks.image_modes import image_card_entry

    card = {}
    for task in tasks:
        cols = resolve(task, choice)
        image, differs = image_card_entry(task, image_mode) if image_mode is not None else (None, None)
        card[task] = {c: {"protocol": p.name, "scorer": p.scorer, "normalizer": p.normalizer or "–",
                          "answers": ANSWER_SOURCES[p.answers], "rule": p.rule,
                          "deviations": list(p.deviations) + ([differs] if differs else []),
                          "chosen": isinstance((choice or {}).get(task), str),
                          **({"image": image} if image is not None else {})}
                      for c, p in cols.items()}
    return card


def card_rows(card: Mapping[str, Mapping]) -> list[list[str]]:
    """The card as table rows: task, column, protocol, scorer, normaliser, answers, rule, test images
    (``image``; a card written before it: –), deviations."""
    rows = []
    for task, cols in card.items():
        same = cols.get("strict") == cols.get("paper")
        for column, p in cols.items():
            if column == "strict" and same:
                rows.append([task, "strict", "= paper", "", "", "", "", "", ""])
                continue
            name = p["protocol"] + (" (chosen in eval.protocol)" if p.get("chosen") else "")
            rows.append([task, column, name, p["scorer"], p["normalizer"], p["answers"], p["rule"],
                         p.get("image") or "–", "; ".join(p["deviations"]) or "–"])
    return rows


def format_card(tasks: Sequence[str] | None = None, choice: Mapping[str, str] | None = None) -> str:
    """The protocol card as plain text (``coin score --help``): one line per task and protocol."""
    if tasks is None:  # the paper's eight in its order, then any other registered task
        tasks = list(ORDERS["paper"]) + [t for t in TASKS if t not in ORDERS["paper"]]
    lines = []
    for task in tasks:
        tp = task_protocols(task)
        for p in tp.protocols:
            lines.append(f"{task} {p.name}: {p.rule} [scorer {p.scorer}, normaliser {p.normalizer or '–'}, "
                         f"{ANSWER_SOURCES[p.answers].split(' (')[0]}]")
            lines += [f"    differs from the original: {d}" for d in p.deviations]
        if "strict" not in tp.names():
            lines.append(f"{task} strict: = paper")
    return "\n".join(lines)
