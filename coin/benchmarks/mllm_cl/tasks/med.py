"""Med, an MLLM-CL domain task: medical images (radiology, pathology)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON, STRICT_EXACT
from coin.tasks.spec import TaskSpec, register_task

PAPER = Protocol("paper", "contains", "strip", "one",
                 "the answer is a substring of the prediction (case-sensitive as written; unconfirmed)", COMMON)

SPEC = register_task(TaskSpec(
    "Med", "Med", "phrase", "contains", "Answer the question using a single word or phrase.", 8,
    abbreviation="Med",
    doc="MLLM-CL domain: medical images (radiology, pathology)",
    protocols=(PAPER, STRICT_EXACT),
))
