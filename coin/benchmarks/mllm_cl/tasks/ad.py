"""AD, an MLLM-CL domain task: autonomous driving (road scenes)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON, STRICT_EXACT
from coin.tasks.spec import TaskSpec, register_task

PAPER = Protocol("paper", "ai2d", None, "one",
                 "lower-cased; the prediction equals the answer or contains it as whole words (eval_ai2d)", COMMON)

SPEC = register_task(TaskSpec(
    "AD", "AD", "phrase", "ai2d", "Answer the question using a single word or phrase.", 8,
    abbreviation="AD",
    doc="MLLM-CL domain: autonomous driving (road scenes)",
    protocols=(PAPER, STRICT_EXACT),
))
