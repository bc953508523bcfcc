"""What several built-in tasks share, declared once: instruction lines and the short-answer protocols.

A task file takes from here rather than repeating a string, so a line that five tasks use
is one string, and the short-answer tasks' paper rule is one declaration.
"""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.tasks.spec import Template

__all__ = ["LETTER", "PAPER_LOWER", "SHORT", "STRICT_EXACT", "WHITESPACE", "from_paper", "written_by_us"]

SHORT = "Answer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."

WHITESPACE = "surrounding whitespace is stripped (LLaVA's outputs already were)"


def from_paper(*texts: str) -> tuple[Template, ...]:
    """Lines taken from the paper or the released files."""
    return tuple(Template(t) for t in texts)


def written_by_us(*texts: str) -> tuple[Template, ...]:
    """Lines coin wrote itself (marked ``ours``, so reports can say which prompts differ from the benchmark)."""
    return tuple(Template(t, ours=True) for t in texts)


# the short-answer tasks' shared rules: the original's case-insensitive match, and coin's
PAPER_LOWER = Protocol(name="paper", scorer="exact", normalizer="lower", answers="one",
                       rule="case-insensitive exact match against the one answer",
                       deviations=(WHITESPACE,
                                   "lower-cased where the original upper-cased (differs only for letters such as 'ß')"))
STRICT_EXACT = Protocol(name="strict", scorer="exact", normalizer="vqa", answers="one",
                        rule="exact match after VQA normalisation",
                        deviations=("coin's rule: articles, punctuation and number words are normalised first",))
