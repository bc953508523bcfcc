"""IconQA (UCIT): abstract diagram questions (icons, counting, spatial reasoning)."""

from __future__ import annotations

from coin.tasks.spec import TaskSpec, register_task
from coin.benchmarks.ucit.rules import PAPER_UPPER, STRICT_EXACT

SPEC = register_task(TaskSpec(
    "IconQA", "IconQA", "phrase", "exact", "Answer the question using a single word or phrase.", 8,
    abbreviation="Icon",
    doc="UCIT: abstract diagram questions (icons, counting, spatial reasoning)",
    protocols=(PAPER_UPPER, STRICT_EXACT),
))
