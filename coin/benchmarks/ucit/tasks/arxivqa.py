"""ArxivQA (UCIT): multiple-choice questions on figures of arXiv papers (the prompt includes a rationale)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.tasks.spec import TaskSpec, register_task
from coin.benchmarks.ucit.rules import PAPER_UPPER

STRICT_LETTER = Protocol("strict", "letter", None, "letter",
                         "the option letter read from the output (coin's ScienceQA reader)",
                         ("coin's rule: 'The answer is B' and '(B)' count; an option's text instead of its letter "
                          "is a format error",))

SPEC = register_task(TaskSpec(
    "ArxivQA", "ArxivQA", "letter", "exact", "Answer with the option's letter from the given choices directly.", 8,
    abbreviation="Arxiv",
    doc="UCIT: multiple-choice questions on figures of arXiv papers (the prompt includes a rationale)",
    protocols=(PAPER_UPPER, STRICT_LETTER),
))
