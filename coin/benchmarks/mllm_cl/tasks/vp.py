"""VP, an MLLM-CL ability task: vision-centric perception (CV-Bench: counting, depth, distance, relations)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON
from coin.tasks.spec import TASKS, TaskSpec

PAPER = Protocol(name="paper", scorer="contains", normalizer="lower", answers="one",
                 rule="lower-cased: the answer is a substring of the prediction",
                 deviations=COMMON)

SPEC = TASKS.register(TaskSpec(
    name="VP",
    folder="VP",
    answer_form="letter",
    scorer="contains",
    instruction="Answer with the option's letter from the given choices directly.",
    max_new_tokens=8,
    abbreviation="VP",
    doc="MLLM-CL ability: vision-centric perception (CV-Bench: counting, depth, distance, relations)",
    protocols=(PAPER,),
))
