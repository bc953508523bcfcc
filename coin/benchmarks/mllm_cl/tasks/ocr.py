"""OCR, an MLLM-CL ability task: reading text in images (OCRBench rules)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON
from coin.tasks.spec import TaskSpec, register_task

PAPER = Protocol("paper", "ocrbench", None, "one",
                 "OCRBench: any answer is a substring of the lower-cased prediction (HME100k: spaces removed, "
                 "case kept)",
                 COMMON + ("`answer` may be a list: any of them counts",))

SPEC = register_task(TaskSpec(
    "OCR", "OCR", "phrase", "ocrbench", "Answer the question using a single word or phrase.", 16,
    abbreviation="OCR",
    doc="MLLM-CL ability: reading text in images (OCRBench rules)",
    protocols=(PAPER,),
))
