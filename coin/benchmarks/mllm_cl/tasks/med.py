"""Med, an MLLM-CL domain task: medical images (radiology, pathology)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON, STRICT_EXACT
from coin.tasks.spec import TASKS, TaskSpec

PAPER = Protocol(name="paper", scorer="contains", normalizer="strip", answers="one",
                 rule="the answer is a substring of the prediction (case-sensitive as written; unconfirmed)", deviations=COMMON)

SPEC = TASKS.register(TaskSpec(
    name="Med",
    folder="Med",
    answer_form="phrase",
    scorer="contains",
    instruction="Answer the question using a single word or phrase.",
    max_new_tokens=8,
    abbreviation="Med",
    doc="MLLM-CL domain: medical images (radiology, pathology)",
    protocols=(PAPER, STRICT_EXACT),
))
