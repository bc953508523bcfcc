"""ImageNet-R (UCIT): classify renditions (art, cartoons, sketches) of 200 ImageNet classes."""

from __future__ import annotations

from coin.tasks.spec import TaskSpec, register_task
from coin.benchmarks.ucit.rules import PAPER_UPPER, STRICT_EXACT

SPEC = register_task(TaskSpec(
    "ImageNet-R", "ImageNet-R", "class", "exact", "Answer the question using a single word or phrase.", 8,
    abbreviation="INetR",
    doc="UCIT: classify renditions (art, cartoons, sketches) of 200 ImageNet classes",
    protocols=(PAPER_UPPER, STRICT_EXACT),
))
