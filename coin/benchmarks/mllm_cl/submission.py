"""Tasks without public answers: answers are kept for a submission file, never scored against nothing.

MLLM-CL's APP task is MMT-Bench, whose test answers are held by its authors: a number for it
can only come from their evaluation server. Its protocol is ``submission``: the task's
score is None (an empty cell; metrics that need it are None too, never an average of fewer
tasks), every row is tagged ``unscored``, and ``submission_rows`` gives what is sent: each
question id with the raw output and the option letter read from it.

The server's file format could not be confirmed from the public code (MMT-Bench's own
toolkit writes a spreadsheet); the JSON list written here has the fields a conversion needs.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from coin.data.sample import TestItem
from coin.scoring.parse import option_letters, parse_letter
from coin.scoring.protocol import ANSWER_SOURCES, SOURCE_KEYS
from coin.scoring.scorers import SCORERS, Scored, TaskScore

__all__ = ["SUBMISSION", "is_unscored", "submission_rows"]

SUBMISSION = "none"
ANSWER_SOURCES.setdefault(SUBMISSION, "no public answers: the outputs are written as a submission file, unscored")
SOURCE_KEYS.setdefault(SUBMISSION, ())  # a record needs no answer


class Unscored:
    """No score: the answers are held by the benchmark's authors (submission file only)."""

    name = "submission"

    def __call__(self, output: str, record: TestItem, norm=None) -> Scored:
        return Scored(_letter(output, record), None, "unscored")  # type: ignore[arg-type]

    def score_task(self, outputs: Mapping[str, str], records: Sequence[TestItem]) -> TaskScore:
        samples = [{"question_id": r.question_id, "output": outputs.get(r.question_id),
                    "parsed": _letter(outputs.get(r.question_id) or "", r), "score": None, "tag": "unscored"}
                   for r in records]
        n = len(records)
        return TaskScore(score=None, n=n, tags={"unscored": n}, samples=samples)  # type: ignore[arg-type]


def _letter(output: str, record: TestItem) -> str | None:
    return parse_letter(output, option_letters(record.text))[0]


def is_unscored(protocol) -> bool:
    """Whether a protocol (``coin.scoring.protocol.Protocol``) scores nothing."""
    return getattr(protocol, "answers", None) == SUBMISSION


def submission_rows(rows: Sequence[Mapping]) -> list[dict]:
    """The submission file's content from a task's prediction rows: id, raw output, option letter."""
    return [{"question_id": r["question_id"], "prediction": r.get("output"), "option": r.get("parsed")} for r in rows]


SCORERS.register(Unscored())
