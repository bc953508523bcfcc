"""CLEVR-Math (UCIT): arithmetic word problems over CLEVR scenes (add or remove objects, then count)."""

from __future__ import annotations

from coin.tasks.spec import TASKS, TaskSpec
from coin.benchmarks.ucit.rules import PAPER_UPPER, STRICT_EXACT

SPEC = TASKS.register(TaskSpec(
    name="CLEVR-Math",
    folder="CLEVR-Math",
    answer_form="phrase",
    scorer="exact",
    instruction="Answer the question using a single word or phrase.",
    max_new_tokens=8,
    abbreviation="CLEVR",
    doc="UCIT: arithmetic word problems over CLEVR scenes (add or remove objects, then count)",
    protocols=(PAPER_UPPER, STRICT_EXACT),
))
