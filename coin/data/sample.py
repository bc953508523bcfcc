"""``Sample``: one model input, the unit every stage after the loader works on; ``TestItem``: one test record.

It lives with the data (not with a model wrapper) so that reading a JSON file, applying an
instruction family or building CoIN-Synth never imports torch: a backbone turns samples
into tensors, nothing here does.
"""

from __future__ import annotations

from dataclasses import dataclass

from coin.scoring.item import TestItem, as_item  # the loaded test record (it lives where scorers can read it)

__all__ = ["Sample", "TestItem", "as_item"]


@dataclass(frozen=True)
class Sample:
    """One model input: an image file (or none), the full prompt text and (for training) the answer.

    A text-only sample (``image`` None, e.g. half of ScienceQA) is prompted without image tokens
    and gets no image features, as LLaVA does; a batch may mix both kinds.
    """

    id: str
    task: str
    image: str | None  # absolute path; None: text-only
    prompt: str
    answer: str | None = None
    turns: tuple[tuple[str, str], ...] = ()  # further (question, answer) turns of a multi-turn conversation

