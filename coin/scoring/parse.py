"""Reading answers out of model outputs: an option letter, a bounding box.

Pure functions over text, shared by the scorers (``coin.scoring.scorers``): what counts as the
letter of a multiple-choice answer, and which four numbers are a box. Each differs from the
original CoIN code where that code misread outputs (see the scorers' docstrings).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from coin.scoring.normalize import normalize_answer

__all__ = ["box_iou", "option_letters", "parse_box", "parse_letter"]


# ------------------------------------------------------------------------- letters

_OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[.)]\s*(.+?)\s*$", re.M)
_ALONE = re.compile(r"\(?([A-Za-z])\)?[.:)]?")
_LEADING = re.compile(r"\(([A-Za-z])\)|([A-Z])[.):](?:\s|$)")
_CUE = re.compile(  # the cue is a whole word: "choices." is not the cue "choice" + letter "s"
    r"\b(?:answer|option|choice)\b(?:\s+is)?\s*[:\-]?\s*(?:option\s+|choice\s+)?"
    r"(?:\(([A-Za-z])\)|([A-Za-z])(?=$|[.,:;!?)]|\s+(\S)))",
    re.I,
)
_BRACKETED = re.compile(r"\(([A-Z])\)")
_STANDALONE = re.compile(r"(?<![\w'])([A-Z])(?=$|[.,:;!?)]|\s+(\S))")


def option_letters(text: str) -> dict[str, str]:
    """Option letter -> normalised option text, read from lines like "B. a blue car"."""
    return {m.group(1): normalize_answer(m.group(2)) for m in _OPTION_LINE.finditer(text)}


def _is_letter(letter: str, follower: str | None) -> bool:
    """Whether an upper-case letter followed by the word starting ``follower`` is an option.

    "B is right" is option B, but "A cat" and "I think" are words, so A and I count
    only when no word follows them.
    """
    return follower is None or letter not in "AI" or not follower[0].isalpha()


def parse_letter(output: str, options: Mapping[str, str]) -> tuple[str | None, bool]:
    """Return (letter, given_as_letter); given_as_letter is False for an option's text.

    When the record lists its options, a letter that is none of them is no answer at all
    (a lone "E" on an A-D question, "None of the choices."): it is skipped, and if
    nothing else is found the output is unparsable, a format error.
    """
    text = output.strip()

    def valid(letter: str) -> bool:
        return not options or letter in options

    if m := _ALONE.fullmatch(text):  # "B", "b", "(B)", "B.", "B:"
        letter = m.group(1).upper()
        return (letter, True) if valid(letter) else (None, False)
    if m := _LEADING.match(text):  # "(B) blue", "B) blue", "B. blue"
        letter = (m.group(1) or m.group(2)).upper()
        if valid(letter):
            return letter, True
    for m in _CUE.finditer(text):  # "The answer is C", "Answer: (b)"
        if m.group(1):
            letter = m.group(1).upper()
        elif m.group(2).isupper():  # after a cue even "A" is a letter: "The answer is A because"
            letter = m.group(2)
        elif m.group(3) is None:  # "the answer is b." but not "the answer is a cat"
            letter = m.group(2).upper()
        else:
            continue
        if valid(letter):
            return letter, True
    pred = normalize_answer(text)
    for letter, option in options.items():
        if pred and pred == option:
            return letter, False
    for m in _BRACKETED.finditer(text):
        if valid(m.group(1)):
            return m.group(1), True
    for m in _STANDALONE.finditer(text):  # "I think B." (a valid option letter only)
        letter = m.group(1)
        if (not options or letter in options) and _is_letter(letter, m.group(2)):
            return letter, True
    return None, False


# -------------------------------------------------------------------------- boxes

# a number not glued to a word ("x1", "RefCOCO2" are labels, not coordinates)
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_BRACKET_GROUP = re.compile(r"\[([^\[\]]*)\]")


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """Four numbers from ``text``: a bracketed group of four first, else the first four.

    Brackets, commas and spaces are optional; a truncated "[0.1, 0.2, 0.3, 0.4" still
    parses; digits glued to letters ("x1") are not numbers. Fewer than four give None.
    """
    for group in _BRACKET_GROUP.findall(text):
        numbers = _NUMBER.findall(group)
        if len(numbers) == 4:
            return tuple(float(x) for x in numbers)  # type: ignore[return-value]
    numbers = _NUMBER.findall(text)
    if len(numbers) < 4:
        return None
    return tuple(float(x) for x in numbers[:4])  # type: ignore[return-value]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes in continuous coordinates."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
