"""Sci, an MLLM-CL domain task: science diagrams, charts and maps."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON, STRICT_EXACT
from coin.tasks.spec import TASKS, TaskSpec

PAPER = Protocol(name="paper", scorer="sci", normalizer=None, answers="one",
                 rule="lower-cased substring; exact for AI2D/TQA/VQA/SciVerse images; partial credit for MapQA "
                      "'which states'",
                 deviations=COMMON + ("the sources are read from the image path's folders and the MapQA credit is the share "
                                      "of the answer's states named (both unconfirmed)",))

SPEC = TASKS.register(TaskSpec(
    name="Sci",
    folder="Sci",
    answer_form="phrase",
    scorer="sci",
    instruction="Answer the question using a single word or phrase.",
    max_new_tokens=8,
    abbreviation="Sci",
    doc="MLLM-CL domain: science diagrams, charts and maps",
    protocols=(PAPER, STRICT_EXACT),
))
