"""Math, an MLLM-CL ability task: mathematical reasoning on images (MathVista's extraction)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON
from coin.tasks.spec import TASKS, TaskSpec

PAPER = Protocol(name="paper", scorer="mathvista", normalizer=None, answers="one",
                 rule="MathVista: rule extraction (option, bare number, 'The answer is'), then the comparison",
                 deviations=COMMON + ("the LLM extraction step for what the rules cannot read runs after the run on coin's "
                                      "judge backends (coin.benchmarks.mllm_cl.mathvista.llm_rescore_run); inside the run such a response "
                                      "scores 0",))

SPEC = TASKS.register(TaskSpec(
    name="Math",
    folder="Math",
    answer_form="phrase",
    scorer="mathvista",
    instruction="Answer the question using a single word or phrase.",
    max_new_tokens=16,
    abbreviation="Math",
    doc="MLLM-CL ability: mathematical reasoning on images (MathVista's extraction)",
    protocols=(PAPER,),
))
