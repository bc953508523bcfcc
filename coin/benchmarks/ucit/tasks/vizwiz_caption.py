"""VizWiz-Caption (UCIT): captions of photos taken by blind people."""

from __future__ import annotations

from coin.tasks.spec import TaskSpec, register_task
from coin.benchmarks.ucit.rules import CAPTION

SPEC = register_task(TaskSpec(
    "VizWiz-Caption", "VizWiz-caption", "phrase", "caption", "Describe the image briefly.", 64,
    abbreviation="VizCap",
    doc="UCIT: captions of photos taken by blind people",
    protocols=(CAPTION,),
))
