"""CLEVR-Math (UCIT): arithmetic word problems over CLEVR scenes (add or remove objects, then count)."""

from __future__ import annotations

from coin.tasks.spec import TaskSpec, register_task
from coin.benchmarks.ucit.rules import PAPER_UPPER, STRICT_EXACT

SPEC = register_task(TaskSpec(
    "CLEVR-Math", "CLEVR-Math", "phrase", "exact", "Answer the question using a single word or phrase.", 8,
    abbreviation="CLEVR",
    doc="UCIT: arithmetic word problems over CLEVR scenes (add or remove objects, then count)",
    protocols=(PAPER_UPPER, STRICT_EXACT),
))
