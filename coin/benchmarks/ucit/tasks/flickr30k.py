"""Flickr30k (UCIT): captions of everyday scenes (Flickr30k)."""

from __future__ import annotations

from coin.tasks.spec import TaskSpec, register_task
from coin.benchmarks.ucit.rules import CAPTION

SPEC = register_task(TaskSpec(
    "Flickr30k", "Flickr30k-cap", "phrase", "caption", "Describe the image briefly.", 64,
    abbreviation="Flickr",
    doc="UCIT: captions of everyday scenes (Flickr30k)",
    protocols=(CAPTION,),
))
