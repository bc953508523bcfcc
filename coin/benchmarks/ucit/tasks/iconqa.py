"""IconQA (UCIT): abstract diagram questions (icons, counting, spatial reasoning)."""

from __future__ import annotations

from coin.tasks.spec import TASKS, TaskSpec
from coin.benchmarks.ucit.rules import PAPER_UPPER, STRICT_EXACT

SPEC = TASKS.register(TaskSpec(
    name="IconQA",
    folder="IconQA",
    answer_form="phrase",
    scorer="exact",
    instruction="Answer the question using a single word or phrase.",
    max_new_tokens=8,
    abbreviation="Icon",
    doc="UCIT: abstract diagram questions (icons, counting, spatial reasoning)",
    protocols=(PAPER_UPPER, STRICT_EXACT),
))
