"""OCR, an MLLM-CL ability task: reading text in images (OCRBench rules)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON
from coin.tasks.spec import TASKS, TaskSpec

PAPER = Protocol(name="paper", scorer="ocrbench", normalizer=None, answers="one",
                 rule="OCRBench: any answer is a substring of the lower-cased prediction (HME100k: spaces removed, "
                      "case kept)",
                 deviations=COMMON + ("`answer` may be a list: any of them counts",))

SPEC = TASKS.register(TaskSpec(
    name="OCR",
    folder="OCR",
    answer_form="phrase",
    scorer="ocrbench",
    instruction="Answer the question using a single word or phrase.",
    max_new_tokens=16,
    abbreviation="OCR",
    doc="MLLM-CL ability: reading text in images (OCRBench rules)",
    protocols=(PAPER,),
))
