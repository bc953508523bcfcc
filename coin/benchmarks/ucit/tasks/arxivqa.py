"""ArxivQA (UCIT): multiple-choice questions on figures of arXiv papers (the prompt includes a rationale)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.tasks.spec import TASKS, TaskSpec
from coin.benchmarks.ucit.rules import PAPER_UPPER

STRICT_LETTER = Protocol(name="strict", scorer="letter", normalizer=None, answers="letter",
                         rule="the option letter read from the output (coin's ScienceQA reader)",
                         deviations=("coin's rule: 'The answer is B' and '(B)' count; an option's text instead of its letter "
                                     "is a format error",))

SPEC = TASKS.register(TaskSpec(
    name="ArxivQA",
    folder="ArxivQA",
    answer_form="letter",
    scorer="exact",
    instruction="Answer with the option's letter from the given choices directly.",
    max_new_tokens=8,
    abbreviation="Arxiv",
    doc="UCIT: multiple-choice questions on figures of arXiv papers (the prompt includes a rationale)",
    protocols=(PAPER_UPPER, STRICT_LETTER),
))
