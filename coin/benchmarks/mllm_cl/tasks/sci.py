"""Sci, an MLLM-CL domain task: science diagrams, charts and maps."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON, STRICT_EXACT
from coin.tasks.spec import TaskSpec, register_task

PAPER = Protocol("paper", "sci", None, "one",
                 "lower-cased substring; exact for AI2D/TQA/VQA/SciVerse images; partial credit for MapQA "
                 "'which states'",
                 COMMON + ("the sources are read from the image path's folders and the MapQA credit is the share "
                           "of the answer's states named (both unconfirmed)",))

SPEC = register_task(TaskSpec(
    "Sci", "Sci", "phrase", "sci", "Answer the question using a single word or phrase.", 8,
    abbreviation="Sci",
    doc="MLLM-CL domain: science diagrams, charts and maps",
    protocols=(PAPER, STRICT_EXACT),
))
