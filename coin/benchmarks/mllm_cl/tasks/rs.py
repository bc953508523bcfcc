"""RS, an MLLM-CL domain task: remote sensing (aerial and satellite images)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON, STRICT_EXACT
from coin.tasks.spec import TaskSpec, register_task

PAPER = Protocol("paper", "ai2d", None, "one",
                 "lower-cased; the prediction equals the answer or contains it as whole words (eval_ai2d)", COMMON)

SPEC = register_task(TaskSpec(
    "RS", "RS", "phrase", "ai2d", "Answer the question using a single word or phrase.", 8,
    abbreviation="RS",
    doc="MLLM-CL domain: remote sensing (aerial and satellite images)",
    protocols=(PAPER, STRICT_EXACT),
))
