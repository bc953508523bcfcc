"""ImageNet-R (UCIT): classify renditions (art, cartoons, sketches) of 200 ImageNet classes."""

from __future__ import annotations

from coin.tasks.spec import TASKS, TaskSpec
from coin.benchmarks.ucit.rules import PAPER_UPPER, STRICT_EXACT

SPEC = TASKS.register(TaskSpec(
    name="ImageNet-R",
    folder="ImageNet-R",
    answer_form="class",
    scorer="exact",
    instruction="Answer the question using a single word or phrase.",
    max_new_tokens=8,
    abbreviation="INetR",
    doc="UCIT: classify renditions (art, cartoons, sketches) of 200 ImageNet classes",
    protocols=(PAPER_UPPER, STRICT_EXACT),
))
