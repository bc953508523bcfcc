"""VP, an MLLM-CL ability task: vision-centric perception (CV-Bench: counting, depth, distance, relations)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON
from coin.tasks.spec import TaskSpec, register_task

PAPER = Protocol("paper", "contains", "lower", "one", "lower-cased: the answer is a substring of the prediction",
                 COMMON)

SPEC = register_task(TaskSpec(
    "VP", "VP", "letter", "contains", "Answer with the option's letter from the given choices directly.", 8,
    abbreviation="VP",
    doc="MLLM-CL ability: vision-centric perception (CV-Bench: counting, depth, distance, relations)",
    protocols=(PAPER,),
))
