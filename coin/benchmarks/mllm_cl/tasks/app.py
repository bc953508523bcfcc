"""APP, an MLLM-CL ability task: GUI agent tasks from MMT-Bench; no public answers, submission only."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.tasks.spec import TASKS, TaskSpec

PAPER = Protocol(name="paper", scorer="submission", normalizer=None, answers="none",
                 rule="unscored: MMT-Bench's answers are not public; the outputs are written as a submission file",
                 deviations=("never scored against missing answers: its cells stay empty",))

SPEC = TASKS.register(TaskSpec(
    name="APP",
    folder="APP",
    answer_form="letter",
    scorer="submission",
    instruction="Answer with the option's letter from the given choices directly.",
    max_new_tokens=8,
    abbreviation="APP",
    doc="MLLM-CL ability: GUI agent tasks from MMT-Bench; no public answers (submission only)",
    protocols=(PAPER,),
))
