"""Flickr30k (UCIT): captions of everyday scenes (Flickr30k)."""

from __future__ import annotations

from coin.tasks.spec import TASKS, TaskSpec
from coin.benchmarks.ucit.rules import CAPTION

SPEC = TASKS.register(TaskSpec(
    name="Flickr30k",
    folder="Flickr30k-cap",
    answer_form="phrase",
    scorer="caption",
    instruction="Describe the image briefly.",
    max_new_tokens=64,
    abbreviation="Flickr",
    doc="UCIT: captions of everyday scenes (Flickr30k)",
    protocols=(CAPTION,),
))
