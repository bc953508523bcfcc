"""Reading a 0-10 score out of a judge's reply, strictly.

The original code read "Score: 10" as 1 and silently skipped anything else. Here a
reply is read from its first non-empty line, which must be a score and nothing more:
a bare number (``7``, ``7.5``), a labelled one (``Score: 10``, ``Rating = 6``,
``Assistant: 8``), a fraction of ten (``8/10``, ``8 out of 10``), optionally in Markdown
emphasis or brackets (``**9**``, ``[[8]]``) and ending in a full stop. Everything else is
``unparsable``, and a well-formed number outside [0, 10] is ``out_of_range``; both are
counted, score 0 in the task sum (as in the paper, whose denominator counts every
sample) and are never read as some other digit of the reply.

Later lines are ignored: the prompt asks for "a single line containing only" the score,
and judges that add an explanation do it on the following lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["OK", "UNPARSABLE", "OUT_OF_RANGE", "STATUSES", "ParsedScore", "parse_score"]

OK, UNPARSABLE, OUT_OF_RANGE = "ok", "unparsable", "out_of_range"
STATUSES = (OK, UNPARSABLE, OUT_OF_RANGE)

_SCORE_LINE = re.compile(
    r"""
    (?:(?:overall\s+|final\s+)?(?:score|rating)(?:\s+for\s+the\s+assistant)?|assistant)?  # optional label
    \s*(?:[:=]|\bis\b)?\s*                                                               # : = is
    \[{0,2}\s*(?P<num>[-+]?(?:\d+(?:\.\d+)?|\.\d+))\s*\]{0,2}                           # 7, 7.5, [[7]]
    (?:\s*(?:/|out\s+of)\s*10(?:\.0+)?)?                                                # /10, out of 10
    \s*\.?                                                                              # closing full stop
    """,
    re.IGNORECASE | re.VERBOSE,
)


@dataclass(frozen=True)
class ParsedScore:
    """A judge reply's score in [0, 10] (None unless ``status`` is ``ok``) and its status."""

    score: float | None
    status: str


def parse_score(reply: str | None) -> ParsedScore:
    """Read the score of one judge reply; see the module docstring for what is accepted."""
    if reply is None:
        return ParsedScore(None, UNPARSABLE)
    line = next((ln.strip() for ln in str(reply).splitlines() if ln.strip()), "")
    line = re.sub(r"[*_`]", "", line).strip()  # Markdown emphasis and code marks carry no digits
    m = _SCORE_LINE.fullmatch(line)
    if m is None:
        return ParsedScore(None, UNPARSABLE)
    value = float(m.group("num"))
    if not 0.0 <= value <= 10.0:
        return ParsedScore(None, OUT_OF_RANGE)
    return ParsedScore(value, OK)
