"""Reading a 0-10 score out of a judge's reply, strictly.

The original code read "Score: 10" as 1 and silently skipped anything else. Here a reply
is read from its first non-empty line (Markdown emphasis and code marks removed), in one
of two shapes:

- the line is a score and nothing more: a bare number (``7``, ``7.5``), a labelled one
  (``Score: 10``, ``Rating = 6``, ``Assistant: 8``), a fraction of ten (``8/10``,
  ``8 out of 10``), optionally in brackets (``[[8]]``) and ending in a full stop;
- the line opens with a labelled score or a score out of ten and goes on in prose
  (``Score: 8. The answer is correct.``, ``8/10 because it is fine``). Judges asked for
  "a single line containing only" the score often add their reason on the same line;
  reading those as unparsable once turned 28% of a run's answers into zeros.

A bare number followed by prose (``7 apples``, ``7, mostly right``) is not a score: nothing
says the number is one. Anything ambiguous stays unparsable too: a number that goes on
(``Score: 8 or 9``, ``Score: 7-8``, ``Score: 3 out of 5``, ``8/100``) or prose that gives
another score (``Score: 8. A rating of 9 fits better``, ``8/10, maybe 9/10``). Other numbers
in the prose (a box's coordinates, "2 of 3 parts") are fine. Unparsable replies and
well-formed numbers outside [0, 10] (``out_of_range``) are counted, score 0 in the task sum
(as in the paper, whose denominator counts every sample) and are never read as some other
digit of the reply. Later lines are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["OK", "UNPARSABLE", "OUT_OF_RANGE", "STATUSES", "ParsedScore", "parse_score"]

OK, UNPARSABLE, OUT_OF_RANGE = "ok", "unparsable", "out_of_range"
STATUSES = (OK, UNPARSABLE, OUT_OF_RANGE)

_LABEL = r"(?:(?:overall\s+|final\s+)?(?:score|rating)(?:\s+for\s+the\s+assistant)?|assistant)"
_SEP = r"\s*(?:[:=]|\bis\b)?\s*"  # Score: 7, Rating = 6, Score is 7
_NUM = r"\[{0,2}\s*(?P<num>[-+]?(?:\d+(?:\.\d+)?|\.\d+))(?:\s*\]{1,2})?"  # 7, 7.5, [[7]]
_OF_TEN = r"\s*(?:/|out\s+of)\s*10(?:\.0+)?(?!\d)"  # /10, out of 10

_FLAGS = re.IGNORECASE
# the whole line is the score
_SCORE_LINE = re.compile(rf"(?:{_LABEL})?{_SEP}{_NUM}(?:{_OF_TEN})?\s*\.?", _FLAGS)
# the line opens with a score that says it is one, and may go on in prose
_OPENERS = (re.compile(rf"{_LABEL}{_SEP}{_NUM}(?:{_OF_TEN})?", _FLAGS), re.compile(rf"{_NUM}{_OF_TEN}", _FLAGS))
# what may follow the opening score: the end, a space or a punctuation mark (not "8abc", "8/100")
_BOUNDARY = re.compile(r"$|\s|[.,;:!?)]|[-\u2013\u2014]\s")
# the number goes on: "8 or 9", "7-8", "8, 9", "3 out of 5", "8 (9 if lenient)", "8.5.3"
_CONTINUED = re.compile(r"\s*(?:(?:[,;]\s*)?(?:or|to|and|-|\u2013|\u2014|~)\s*[-+]?\.?\d|[,;(]\s*[-+]?\.?\d|\.\d"
                        r"|(?:/|out\s+of)\s*[-+]?\d)", _FLAGS)
# the prose gives another score: "9/10", "9 out of 10", "a score of 9", "rating: 9"
_ANOTHER = re.compile(rf"\d{_OF_TEN}|\b(?:score|rating)\b\s*(?:[:=]|\bis\b|\bof\b)?\s*[-+]?\.?\d", _FLAGS)


@dataclass(frozen=True)
class ParsedScore:
    """A judge reply's score in [0, 10] (None unless ``status`` is ``ok``) and its status."""

    score: float | None
    status: str


def _opening_score(line: str) -> re.Match | None:
    """The labelled or out-of-ten score that opens ``line``, when the prose after it is unambiguous."""
    for opener in _OPENERS:
        m = opener.match(line)
        if m is None:
            continue
        rest = line[m.end():]
        if _BOUNDARY.match(rest) and not _CONTINUED.match(rest) and not _ANOTHER.search(rest):
            return m
        return None  # the line opens with a score-like number but goes on ambiguously
    return None


def parse_score(reply: str | None) -> ParsedScore:
    """Read the score of one judge reply; see the module docstring for what is accepted."""
    if reply is None:
        return ParsedScore(None, UNPARSABLE)
    line = next((ln.strip() for ln in str(reply).splitlines() if ln.strip()), "")
    line = re.sub(r"[*_`]", "", line).strip()  # Markdown emphasis and code marks carry no digits
    m = _SCORE_LINE.fullmatch(line) or _opening_score(line)
    if m is None:
        return ParsedScore(None, UNPARSABLE)
    value = float(m.group("num"))
    if not 0.0 <= value <= 10.0:
        return ParsedScore(None, OUT_OF_RANGE)
    return ParsedScore(value, OK)
