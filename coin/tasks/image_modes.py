"""How a test image is preprocessed at evaluation (``eval.image_mode``), and what the protocol card says of it.

LLaVA-1.5's training pads every image to a square of the processor's mean colour
(``image_aspect_ratio: pad``, ``expand2square``), and coin pads at evaluation too. The original
CoIN evaluation did not always: its ScienceQA, ImageNet, Grounding and VQAv2 scripts
(LLaVA's ``model_vqa_science.py`` / ``model_vqa.py``) call ``image_processor.preprocess`` on the
raw image, whose CLIP processor resizes the shortest side to 336 and centre-crops 336x336; the
others pad. ``eval.image_mode``:

- ``pad`` (coin's default): every test image padded to a square, as in training;
- ``paper``: the original per task, centre-cropped for ``PAPER_CROP_TASKS``, padded for the others;
- ``crop``: every test image centre-cropped.

Training always pads. The mode applies to the LLaVA backbones (``Backbone.image_modes``); the
others preprocess with their own processors. This module imports no torch.
"""

from __future__ import annotations

from coin.config import IMAGE_MODES  # pad, paper, crop

__all__ = ["CROP", "IMAGE_MODES", "PAD", "PAPER_CROP_TASKS", "eval_image_step", "image_card_entry", "original_step"]
PAPER_CROP_TASKS = ("ScienceQA", "ImageNet", "Grounding", "VQAv2")  # the original centre-crops these at evaluation

PAD = "pad to square"
CROP = "centre crop (the original's)"
STEPS = {"pad": PAD, "crop": CROP}


def eval_image_step(task: str, mode: str = "pad") -> str:
    """``pad`` or ``crop``: what ``mode`` does to ``task``'s test images."""
    if mode == "pad":
        return "pad"
    if mode == "crop":
        return "crop"
    if mode == "paper":
        return "crop" if task in PAPER_CROP_TASKS else "pad"
    raise ValueError(f"eval.image_mode must be one of {', '.join(IMAGE_MODES)}, got {mode!r}")


def original_step(task: str) -> str:
    """What the original CoIN evaluation did to ``task``'s images."""
    return eval_image_step(task, "paper")


def image_card_entry(task: str, mode: str) -> tuple[str, str | None]:
    """The card's words for ``task`` under ``mode``, and the difference from the original (None: the same)."""
    step, orig = eval_image_step(task, mode), original_step(task)
    words = PAD if step == "pad" else "centre crop" + (" (the original's)" if orig == "crop" else "")
    if step == orig:
        return words, None
    if orig == "crop":
        return words, ("test images padded to a square (as in training); the original centre-crops them at "
                       "evaluation (CLIP's shortest-side resize to 336, then a 336x336 crop); "
                       "eval.image_mode: paper reproduces it")
    return words, ("test images centre-cropped (eval.image_mode: crop); the original pads them to a square; "
                   "eval.image_mode: paper (or pad) reproduces it")
