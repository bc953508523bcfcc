"""Answer sources: the official ten answers joined into the released test records by id.

The released CoIN TextVQA test file holds one ``answer`` per question, while the paper
scores TextVQA with soft accuracy against the ten human answers of the official
``TextVQA_0.5.1_val.json``, joined by question id. ``data.answers.<Task>: PATH`` names
such a file (relative paths are under ``data.root``); its layout is the official one::

    {"dataset_name": "textvqa", "dataset_version": "0.5.1",
     "data": [{"question_id": 34602, "answers": ["nous les gosses", ...], ...}, ...]}

``join_answers`` copies each id's ``answers`` into the matching test record and lists
what did not match: test ids without answers (they stop the run: the protocol needs ten),
duplicate ids in the annotation file (ambiguous: they stop the run too) and annotation
ids without a test record (listed only: the official file covers all of val, a test file
may hold fewer). ``answer_problems`` is the check ``coin data check``, ``coin run`` and
``coin run --dry-run`` share, so a missing answer source is named before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

from coin.data.sample import TestItem
from coin.errors import AnswerSourceError
from coin.io import read_json

__all__ = ["AnswerSourceError", "AnswerTable", "JoinReport", "read_answer_file", "join_answers", "answer_source",
           "answer_problems"]

_LIST_LIMIT = 5


@dataclass
class AnswerTable:
    """``answers`` by question id (as a string) read from one file, and its duplicate ids."""

    path: Path
    answers: dict[str, list[str]]
    duplicates: list[str] = field(default_factory=list)


@dataclass
class JoinReport:
    """What joining an answer table into test records left unmatched."""

    without_answers: list[str] = field(default_factory=list)  # test ids with no answers in the file
    without_record: list[str] = field(default_factory=list)  # file ids with no test record
    duplicates: list[str] = field(default_factory=list)  # ids given twice in the file
    wrong_count: list[str] = field(default_factory=list)  # "id (N answers)" where N != 10

    @property
    def ok(self) -> bool:
        return not (self.without_answers or self.duplicates or self.wrong_count)

    def problems(self, source: str, task: str) -> list[str]:
        """One line per kind of mismatch that stops a run, with the first ids."""
        out = []
        for items, what in ((self.without_answers, "test question id(s) have no answers in it"),
                            (self.duplicates, "question id(s) appear more than once in it"),
                            (self.wrong_count, "question id(s) there do not have ten answers")):
            if items:
                out.append(f"{task}: answer file {source}: {len(items)} {what}: {_some(items)}")
        return out

    def notes(self, source: str, task: str) -> list[str]:
        """Mismatches that do not stop a run (annotation ids without a test record)."""
        if not self.without_record:
            return []
        return [f"{task}: answer file {source}: {len(self.without_record)} question id(s) there have no test "
                f"record (not used): {_some(self.without_record)}"]


def _some(items: Sequence[str]) -> str:
    more = f" (and {len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else ""
    return ", ".join(items[:_LIST_LIMIT]) + more


def read_answer_file(path: str | Path) -> AnswerTable:
    """Read an official annotation file (a top-level ``data`` list of ``question_id`` + ``answers``)."""
    path = Path(path)
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise AnswerSourceError(f"answer file {path} does not exist") from None
    except ValueError as e:
        raise AnswerSourceError(f"answer file {path}: {e}") from None
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise AnswerSourceError(f"answer file {path}: expected an object with a 'data' list (the official "
                                f"TextVQA_0.5.1_val.json layout), got {type(data).__name__}")
    answers: dict[str, list[str]] = {}
    duplicates: list[str] = []
    for k, row in enumerate(rows):
        if not isinstance(row, dict) or "question_id" not in row or "answers" not in row:
            raise AnswerSourceError(f"answer file {path}: data[{k}] needs 'question_id' and 'answers'")
        if not isinstance(row["answers"], list) or not all(isinstance(a, str) for a in row["answers"]):
            raise AnswerSourceError(f"answer file {path}: data[{k}] (question_id {row['question_id']}): "
                                    "'answers' must be a list of strings")
        qid = str(row["question_id"])
        if qid in answers:
            duplicates.append(qid)
        answers[qid] = list(row["answers"])
    return AnswerTable(path, answers, sorted(set(duplicates), key=duplicates.index))


def join_answers(records: Sequence[TestItem | Mapping], table: AnswerTable) -> tuple[list, JoinReport]:
    """Copies of ``records`` with ``answers`` from ``table`` (by question id), and what did not match.

    A record whose id is missing from the table keeps no ``answers`` (any it had are
    dropped, so an unmatched record is never scored against stale answers). A loaded
    ``TestItem`` gets them by ``dataclasses.replace`` (``answers`` last in its key order, as
    written back); a raw JSON row (the data check's, ``coin score``'s file) stays a dict.
    """
    report = JoinReport(duplicates=list(table.duplicates))
    out, seen = [], set()
    for r in records:
        if isinstance(r, TestItem):
            qid = r.question_id
            answers = table.answers.get(qid)
            r = r.without("answers")
            out.append(r if answers is None else replace(r, answers=answers))
        elif "question_id" not in r:  # a malformed record, reported by the data check
            out.append(dict(r))
            continue
        else:
            qid = str(r["question_id"])
            rec = {k: v for k, v in r.items() if k != "answers"}
            if qid in table.answers:
                rec["answers"] = table.answers[qid]
            out.append(rec)
        seen.add(qid)
        if qid in table.answers:
            if len(table.answers[qid]) != 10:
                report.wrong_count.append(f"{qid} ({len(table.answers[qid])} answers)")
        else:
            report.without_answers.append(qid)
    report.without_record = [q for q in table.answers if q not in seen]
    return out, report


def answer_source(root: Path, answers_cfg: Mapping[str, str] | None, task: str) -> Path | None:
    """The answer file configured for ``task`` (``data.answers.<Task>``), resolved under ``root``."""
    value = (answers_cfg or {}).get(task)
    if not value:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


def answer_problems(task: str, records: Sequence[Mapping] | None, source: Path | None, test_file: str,
                    needs_ten: bool) -> tuple[list[str], list[str]]:
    """(problems, notes) of ``task``'s answer source; problems stop a run before any model loads.

    ``records`` are the test records (None when the test file could not be read: its own
    problem is reported elsewhere). With a ``source``, the file is read and joined; without
    one, a task whose protocol needs ten answers must find them in the records themselves
    (CoIN-Synth writes them).
    """
    if records is None:
        return [], []
    if source is not None:
        try:
            table = read_answer_file(source)
        except AnswerSourceError as e:
            return [f"{task}: data.answers.{task}: {e}"], []
        _, report = join_answers(records, table)
        return report.problems(str(source), task), report.notes(str(source), task)
    if not needs_ten:
        return [], []
    bad = [str(r.get("question_id")) for r in records
           if not (isinstance(r, dict) and isinstance(r.get("answers"), list) and len(r["answers"]) == 10)]
    if not bad:
        return [], []
    from coin.tasks.protocol_sets import task_protocols

    others = [p.name for p in task_protocols(task).protocols if p.answers != "ten"]
    alt = (f", or score {task} by another protocol by name: eval.protocol.{task}: {' or '.join(others)} "
           "(not comparable with the paper)") if others else ""
    example = " (for TextVQA: TextVQA_0.5.1_val.json)" if task == "TextVQA" else ""
    return [f"{task}: its protocol scores against ten answers per question, but {len(bad)} of {len(records)} "
            f"records in {test_file} have none (e.g. question_id {_some(bad)}). Give the official annotation "
            f"file{example} as data.answers.{task}: PATH (joined by question id){alt}"], []
