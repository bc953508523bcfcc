"""VizWiz-Caption (UCIT): captions of photos taken by blind people."""

from __future__ import annotations

from coin.tasks.spec import TASKS, TaskSpec
from coin.benchmarks.ucit.rules import CAPTION

SPEC = TASKS.register(TaskSpec(
    name="VizWiz-Caption",
    folder="VizWiz-caption",
    answer_form="phrase",
    scorer="caption",
    instruction="Describe the image briefly.",
    max_new_tokens=64,
    abbreviation="VizCap",
    doc="UCIT: captions of photos taken by blind people",
    protocols=(CAPTION,),
))
