"""APP, an MLLM-CL ability task: GUI agent tasks from MMT-Bench; no public answers, submission only."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.tasks.spec import TaskSpec, register_task

PAPER = Protocol("paper", "submission", None, "none",
                 "unscored: MMT-Bench's answers are not public; the outputs are written as a submission file",
                 ("never scored against missing answers: its cells stay empty",))

SPEC = register_task(TaskSpec(
    "APP", "APP", "letter", "submission", "Answer with the option's letter from the given choices directly.", 8,
    abbreviation="APP",
    doc="MLLM-CL ability: GUI agent tasks from MMT-Bench; no public answers (submission only)",
    protocols=(PAPER,),
))
