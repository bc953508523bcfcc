"""AD, an MLLM-CL domain task: autonomous driving (road scenes)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON, STRICT_EXACT
from coin.tasks.spec import TASKS, TaskSpec

PAPER = Protocol(name="paper", scorer="ai2d", normalizer=None, answers="one",
                 rule="lower-cased; the prediction equals the answer or contains it as whole words (eval_ai2d)", deviations=COMMON)

SPEC = TASKS.register(TaskSpec(
    name="AD",
    folder="AD",
    answer_form="phrase",
    scorer="ai2d",
    instruction="Answer the question using a single word or phrase.",
    max_new_tokens=8,
    abbreviation="AD",
    doc="MLLM-CL domain: autonomous driving (road scenes)",
    protocols=(PAPER, STRICT_EXACT),
))
