"""MLLM-CL's scoring rules, per domain and ability, and OCRBench's.

Read from MLLM-CL's public evaluation code as SPEC section 10 records it; where a detail
could not be confirmed it says so here and in the README. Shared by all of them: an output
containing "Unanswerable" counts as wrong (MLLM-CL's rule), an empty output is unparsable.

- ``ai2d`` (remote sensing, autonomous driving: MLLM-CL's ``eval_ai2d``): lower-cased, the
  prediction equals the answer or contains it as whole words (word boundaries).
- ``contains`` (medical with ``strip``, case-sensitive; vision-centric with ``lower``): the
  answer is a substring of the prediction.
- ``sci`` (science): lower-cased substring; exact match for records whose image comes from
  AI2D, TQA, VQA or SciVerse (read from the image path's folders); MapQA's "which states"
  questions get partial credit, the share of the answer's states the prediction names
  (the original's exact partial-credit formula is unconfirmed).
- ``fin`` (finance): exact match after removing spaces and dots (case-sensitive as written).
- ``ocrbench`` (OCR): OCRBench's rule: any of the answers (``answer`` may be a list) is a
  substring of the lower-cased, stripped prediction with newlines as spaces; for
  handwritten math (``answer_type`` HME100k) spaces and newlines are removed from both and
  case is kept. The original reports the count out of 1,000 divided by 10, i.e. accuracy x 100.
"""

from __future__ import annotations

import re

from coin.data.sample import TestItem
from coin.scoring.normalize import Normalizer
from coin.scoring.scorers import SCORERS, Scored

__all__ = ["UNANSWERABLE", "answers_of", "score_ai2d", "score_contains", "score_fin", "score_ocrbench", "score_sci"]

UNANSWERABLE = "Unanswerable"
SCI_EXACT_SOURCES = ("ai2d", "tqa", "vqa", "sciverse")
_WHICH_STATES = re.compile(r"\bwhich states\b", re.I)


def _strip(text: str) -> str:
    return text.strip()


def answers_of(record: TestItem) -> list[str]:
    """The record's answers as strings (``answer`` may be one string or a list)."""
    a = record.answer
    return [str(x) for x in a] if isinstance(a, list) else [str(a)]


def _verdict(pred: str, hit: float, truths: list[str]) -> Scored:
    if hit > 0:
        return Scored(pred, hit, "correct")
    low = pred.lower()
    if any(t and t.lower() in low for t in truths):  # the answer is there, the rule wanted it alone
        return Scored(pred, 0.0, "wrong_format")
    return Scored(pred, 0.0, "wrong_content")


def _guard(output: str) -> Scored | None:
    """Empty output: unparsable; "Unanswerable" in it: wrong (MLLM-CL's rule)."""
    if not output.strip():
        return Scored(None, 0.0, "unparsable")
    if UNANSWERABLE in output:
        return Scored(output.strip(), 0.0, "wrong_content")
    return None


@SCORERS.register
def ai2d(output: str, record: TestItem, norm: Normalizer | None = None) -> Scored:
    """MLLM-CL's ``eval_ai2d`` (remote sensing, driving): equal, or the answer as whole words in the prediction.

    Lower-cased both; surrounding whitespace and a trailing period of the prediction are
    dropped. A one-letter answer is found as a whole word too, so "a car" credits answer
    "A": the original's leniency, kept for the ``paper`` protocol. ``norm`` is unused.
    """
    if (g := _guard(output)) is not None:
        return g
    pred = output.strip().rstrip(".").strip().lower()
    truths = answers_of(record)
    for t in (x.strip().lower() for x in truths):
        if t and (pred == t or re.search(r"(?<!\w)" + re.escape(t) + r"(?!\w)", pred)):
            return Scored(pred, 1.0, "correct")
    return _verdict(pred, 0.0, truths)


@SCORERS.register
def contains(output: str, record: TestItem, norm: Normalizer = _strip) -> Scored:
    """The answer, after ``norm``, is a substring of the prediction after ``norm`` (medical, vision-centric)."""
    if (g := _guard(output)) is not None:
        return g
    pred = norm(output)
    truths = answers_of(record)
    hit = any((t := norm(x)) and t in pred for x in truths)
    return _verdict(pred, 1.0 if hit else 0.0, truths)


def _states(answer: str) -> list[str]:
    return [s.strip().lower() for s in re.split(r",|\band\b", answer) if s.strip()]


@SCORERS.register
def sci(output: str, record: TestItem, norm: Normalizer | None = None) -> Scored:
    """MLLM-CL's science rule: substring; exact for AI2D/TQA/VQA/SciVerse images; partial credit for MapQA states."""
    if (g := _guard(output)) is not None:
        return g
    pred = output.strip().rstrip(".").strip().lower()
    truths = answers_of(record)
    truth = truths[0].strip().lower()
    folders = [p.lower() for p in re.split(r"[/\\]", str(record.extra.get("image", "")))[:-1]]
    if any(src in part for part in folders for src in SCI_EXACT_SOURCES):
        return _verdict(pred, 1.0 if pred == truth else 0.0, truths)
    if _WHICH_STATES.search(record.text) and len(states := _states(truth)) > 1:
        named = sum(1 for s in states if re.search(r"(?<!\w)" + re.escape(s) + r"(?!\w)", pred))
        return _verdict(pred, named / len(states), truths)
    return _verdict(pred, 1.0 if truth and truth in pred else 0.0, truths)


def _squash(text: str) -> str:
    return text.strip().replace(" ", "").replace(".", "")


@SCORERS.register
def fin(output: str, record: TestItem, norm: Normalizer = _squash) -> Scored:
    """MLLM-CL's finance rule: exact match after removing spaces and dots ("1,000.5" keeps its comma)."""
    if (g := _guard(output)) is not None:
        return g
    pred = norm(output)
    truths = answers_of(record)
    return _verdict(pred, 1.0 if any(pred == norm(t) for t in truths) else 0.0, truths)


@SCORERS.register
def ocrbench(output: str, record: TestItem, norm: Normalizer | None = None) -> Scored:
    """OCRBench's rule: an answer is a substring of the prediction (HME100k: without spaces, case kept)."""
    if (g := _guard(output)) is not None:
        return g
    truths = answers_of(record)
    if str(record.extra.get("answer_type", "")) == "HME100k":
        pred = output.strip().replace("\n", " ").replace(" ", "")
        hit = any((t := x.strip().replace("\n", " ").replace(" ", "")) and t in pred for x in truths)
    else:
        pred = output.lower().strip().replace("\n", " ")
        hit = any((t := x.lower().strip().replace("\n", " ")) and t in pred for x in truths)
    return _verdict(pred, 1.0 if hit else 0.0, truths)


# the names these scorers had before they registered under their own
score_ai2d = ai2d
score_contains = contains
score_sci = sci
score_fin = fin
score_ocrbench = ocrbench
