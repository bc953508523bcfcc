"""Scoring protocols: per task, which scorer, which normaliser and which answers.

A number can only be set beside the paper's when it was scored by the paper's rule, and
coin's own, stricter rules are worth reporting too. So every task declares its protocols
here, by name, in one place:

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
``coin score --help`` show. This module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Mapping, Sequence

from coin.eval.normalize import get_normalizer
from coin.eval.scorers import SCORERS, Scored, TaskScore, score_task
from coin.registry import Registry, UnknownNameError

__all__ = [
    "COLUMNS",
    "ANSWER_SOURCES",
    "Protocol",
    "TaskProtocols",
    "TASK_PROTOCOLS",
    "task_protocols",
    "protocol_names",
    "resolve",
    "choice_problems",
    "needs_ten_answers",
    "score_protocols",
    "protocol_card",
    "format_card",
]

COLUMNS = ("paper", "strict")  # the two protocols every report and matrix.json carry

# where a protocol's ground truth comes from (the card's "answers" column)
ANSWER_SOURCES = {
    "one": "one answer (the test record's `answer`)",
    "ten": "ten answers (`answers`: joined from the official annotation file, or CoIN-Synth's own)",
    "ten_or_one": "ten answers where the record has `answers`, else the one `answer`",
    "letter": "one option letter (`answer`), options read from the prompt",
    "box": "a box (`answer_bbox`)",
}


@dataclass(frozen=True)
class Protocol:
    """How one task is scored under one protocol name.

    ``answers`` is a key of ``ANSWER_SOURCES``; ``"ten"`` means every test record must
    carry ten ``answers`` before the run starts. ``deviations`` are the deliberate
    differences from the original CoIN code, one line each.
    """

    name: str
    scorer: str
    normalizer: str | None
    answers: str
    rule: str
    deviations: tuple[str, ...] = ()

    def scorer_fn(self) -> Callable[[str, Mapping], Scored]:
        """``(output, record) -> Scored`` with this protocol's normaliser bound."""
        fn = SCORERS.get(self.scorer)
        return fn if self.normalizer is None else partial(fn, norm=get_normalizer(self.normalizer))


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


TASK_PROTOCOLS: Registry[TaskProtocols] = Registry("task")

_ID = "paired with the answers by question id (the original paired by list position)"
_EMPTY = "an empty prediction is wrong"
_WS = "surrounding whitespace is stripped (LLaVA's outputs already were)"


# the short-answer tasks' shared rules: the original's case-insensitive match, and coin's
_PAPER_LOWER = Protocol("paper", "exact", "lower", "one", "case-insensitive exact match against the one answer",
                        (_WS, "lower-cased where the original upper-cased (differs only for letters such as 'ß')"))
_STRICT_EXACT = Protocol("strict", "exact", "vqa", "one", "exact match after VQA normalisation",
                         ("coin's rule: articles, punctuation and number words are normalised first",))


def _add(task: str, *protocols: Protocol) -> None:
    TASK_PROTOCOLS.register(task, TaskProtocols(task, protocols))


_add("ScienceQA", Protocol(
    "paper", "letter", None, "letter", "option letter equals the answer's",
    ("the first one-letter word was read as the letter, so the article 'a' read as option A; here cues, "
     "brackets and standalone capitals are read and 'a cat' is not A",
     "a letter that is none of the record's options, or an option's text instead of its letter, is a "
     "format error (score 0, as before)")))
_add("TextVQA",
     Protocol("paper", "vqa", "m4c", "ten", "VQA soft accuracy over ten answers (m4c EvalAIAnswerProcessor)",
              ("the ten answers of TextVQA_0.5.1_val.json are joined by question id before the run; a record "
               "without them stops the run (the original failed on a missing id mid-evaluation)",
               "the m4c processor's 32-period cap (re.UNICODE passed as count) is dropped")),
     Protocol("single", "exact", "m4c", "one", "exact match against the one released answer (m4c processor)",
              ("not the paper's protocol: for released files without the official ten answers; lower than "
               "soft accuracy, not comparable with the paper",)))
_add("ImageNet",
     Protocol("paper", "substring", "strip", "one", "credited when `answer in pred or pred in answer` "
              "(case-sensitive)", (_EMPTY + " (the original's `'' in answer` credited it)", _ID)),
     Protocol("strict", "classification", "vqa", "one", "the whole class name, VQA-normalised, equals the "
              "prediction", ("coin's rule: a part of the name ('fish' for 'goldfish') or a sentence around "
                             "it is not credited",)))
_add("GQA",
     Protocol("paper", "exact", "gqa", "one", "exact match after lower-casing and removing trailing periods",
              (_WS, "a question without a prediction counts as wrong (the original averaged over the "
               "predictions it had)")),
     _STRICT_EXACT)
_add("VizWiz",
     _PAPER_LOWER,
     _STRICT_EXACT)
_add("Grounding", Protocol(
    "paper", "grounding", None, "box", "IoU with `answer_bbox` above 0.5",
    ("the box was read by slicing off the first and last character, which cut a digit off y2; here four "
     "numbers are found anywhere in the output",
     "unparsable outputs score 0 and count (as before); an inverted box scores 0")))
_add("VQAv2",
     _PAPER_LOWER,
     Protocol("strict", "vqa", "vqa", "ten_or_one", "VQA soft accuracy over `answers` when present "
              "(CoIN-Synth), else exact match; VQA normalisation",
              ("coin's rule: the standard VQAv2 metric where ten answers exist",)))
_add("OCR-VQA",
     Protocol("paper", "exact", "lower", "one", "case-insensitive exact match against the one answer",
              (_WS, "the original's skip of outputs containing 'Unanswerable' is dropped: it changes a score "
               "only where an answer itself contains that word")),
     _STRICT_EXACT)


def task_protocols(task: str) -> TaskProtocols:
    """``task``'s protocols; a task registered without any (a plugin's) gets its registry scorer as ``paper``."""
    if task in TASK_PROTOCOLS:
        return TASK_PROTOCOLS.get(task)
    from coin.tasks import get_task  # an unknown task lists the choices

    scorer = get_task(task).scorer
    return TaskProtocols(task, (Protocol("paper", scorer, None, "one", f"the task's scorer {scorer!r}"),))


def protocol_names(task: str) -> list[str]:
    """The protocol names ``task`` offers (an unknown task lists the choices)."""
    return task_protocols(task).names()


def resolve(task: str, choice: Mapping[str, str] | None = None) -> dict[str, Protocol]:
    """The protocol behind each column (``paper``, ``strict``) for ``task``.

    ``strict`` falls back to ``paper`` where the task has none; a name chosen in
    ``choice`` (``eval.protocol``) replaces both.
    """
    tp = task_protocols(task)
    chosen = (choice or {}).get(task)
    if chosen is not None:
        p = tp.get(chosen)
        return {c: p for c in COLUMNS}
    paper = tp.get("paper")
    return {"paper": paper, "strict": tp.get("strict") if "strict" in tp.names() else paper}


def choice_problems(choice: object, key: str = "eval.protocol") -> list[str]:
    """Problems with a per-task protocol choice (``{Task: name}``), each naming its key."""
    if not isinstance(choice, Mapping):
        return [f"{key} must be a mapping of task names to protocol names, got {choice!r}"]
    problems = []
    from coin.tasks import TASKS

    for task, name in choice.items():
        if task not in TASKS:
            problems.append(f"{key}: {TASKS.unknown_message(task)}")
            continue
        names = protocol_names(task)
        if name not in names:
            import difflib

            close = difflib.get_close_matches(str(name), names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            problems.append(f"{key}.{task}: unknown protocol {name!r}.{hint} Choices: {', '.join(names)}")
    return problems


def needs_ten_answers(task: str, choice: Mapping[str, str] | None = None) -> bool:
    """Whether a protocol ``task`` is scored by needs ten ``answers`` on every record."""
    return any(p.answers == "ten" for p in resolve(task, choice).values())


def missing_ten_answers(records: Sequence[Mapping]) -> list[str]:
    """Question ids of records without a list of ten ``answers``."""
    return [str(r.get("question_id")) for r in records
            if not (isinstance(r.get("answers"), list) and len(r["answers"]) == 10)]


def score_protocols(task: str, outputs: Mapping, records: Sequence[Mapping],
                    choice: Mapping[str, str] | None = None) -> dict[str, TaskScore]:
    """Score ``outputs`` under each column's protocol; a protocol scored twice is computed once.

    A protocol that needs ten answers refuses records without them (``ValueError`` naming
    the first ids) instead of quietly scoring them by another rule.
    """
    out: dict[str, TaskScore] = {}
    done: dict[str, TaskScore] = {}
    for column, p in resolve(task, choice).items():
        if p.name not in done:
            if p.answers == "ten" and (bad := missing_ten_answers(records)):
                raise ValueError(f"{task}: protocol {p.name!r} needs ten answers per record; {len(bad)} record(s) "
                                 f"have none, e.g. question_id {', '.join(bad[:3])}. Give data.answers.{task} "
                                 f"(the official annotation file) or choose another protocol in eval.protocol.{task}")
            done[p.name] = score_task(p.scorer_fn(), outputs, records)
        out[column] = done[p.name]
    return out


def protocol_card(tasks: Sequence[str], choice: Mapping[str, str] | None = None) -> dict[str, dict]:
    """Per task and column: protocol name, scorer, normaliser, answers and deviations (JSON-ready)."""
    card = {}
    for task in tasks:
        cols = resolve(task, choice)
        card[task] = {c: {"protocol": p.name, "scorer": p.scorer, "normalizer": p.normalizer or "–",
                          "answers": ANSWER_SOURCES[p.answers], "rule": p.rule, "deviations": list(p.deviations),
                          "chosen": (choice or {}).get(task) is not None}
                      for c, p in cols.items()}
    return card


def card_rows(card: Mapping[str, Mapping]) -> list[list[str]]:
    """The card as table rows: task, column, protocol, scorer, normaliser, answers, rule, deviations."""
    rows = []
    for task, cols in card.items():
        same = cols.get("strict") == cols.get("paper")
        for column, p in cols.items():
            if column == "strict" and same:
                rows.append([task, "strict", "= paper", "", "", "", "", ""])
                continue
            name = p["protocol"] + (" (chosen in eval.protocol)" if p.get("chosen") else "")
            rows.append([task, column, name, p["scorer"], p["normalizer"], p["answers"], p["rule"],
                         "; ".join(p["deviations"]) or "–"])
    return rows


def format_card(tasks: Sequence[str] | None = None, choice: Mapping[str, str] | None = None) -> str:
    """The protocol card as plain text (``coin score --help``): one line per task and protocol."""
    if tasks is None:
        from coin.tasks.registry import ORDERS

        tasks = list(ORDERS["paper"]) + [t for t in TASK_PROTOCOLS if t not in ORDERS["paper"]]
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
