"""The CoIN judge prompt (SPEC section 6), versioned so that a cached score never outlives its wording.

The wording and layout are the original CoIN code's: ``rule.json`` (rules ``CoIN`` and
``CoIN_Grounding``), grammar slips included, laid out as ``create_prompt.py`` wrote
``prompt_to_eval.json`` (system line, then context, ground truth, answer and rule). The
question differs in one place: ``<image>`` is removed with its line break, where
``create_prompt.py`` kept it and the judge script later removed the tag alone. Nor is this
exactly what the original judge read: its script (``eval_GenealKnowledge.py``) discarded
this system line and sent "You are a helpful assistant." instead; that request is the
judge's ``paper`` protocol (``coin.scoring.judge.protocols``), and ``original_content`` builds
its user text. Any change of wording is a new entry in ``PROMPTS`` under a new version, and
the version is part of the judge cache key, so scores of two wordings are never mixed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable, Mapping

from coin.scoring.item import TestItem, as_item
from coin.registry import Registry

__all__ = ["PROMPT_VERSION", "PROMPTS", "SYSTEM", "RULE", "RULE_GROUNDING", "build_messages", "original_content",
           "prompt_sha"]

Messages = list[dict[str, str]]

PROMPT_VERSION = "coin-v1"

SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."

RULE = (
    "We would like to request your feedback on the performance of an AI assistants in response to the user "
    "question displayed above.\n"
    "Please rate the accuracy of its responses according to the ground truth answer displayed above. The "
    "assistant receives an overall score on a scale of 0 to 10, where a higher score indicates better overall "
    "performance.\n"
    "Please output a single line containing only a values indicating the scores for the Assistant."
)

RULE_GROUNDING = (
    "We would like to request your feedback on the performance of an AI assistants in response to the user "
    "question displayed above. The user asks the question on observing an image. For your reference, the "
    "visual content in the image is represented with one descriptive sentence describing the same image and "
    "the bounding box coordinates of each object in the scene. These coordinates are in the form of bounding "
    "boxes, represented as (x1, y1, x2, y2) with floating numbers ranging from 0 to 1. These values correspond "
    "to the top left x, top left y, bottom right x, and bottom right y. \n"
    "Please rate the accuracy of its responses according to the ground truth answer displayed above. The "
    "assistant receives an overall score on a scale of 0 to 10, where a higher score indicates better overall "
    "performance.\n"
    "Please output a single line containing only a values indicating the scores for the Assistant."
)

PromptBuilder = Callable[[Mapping, str, bool], Messages]
PROMPTS: Registry[PromptBuilder] = Registry("judge prompt version")


def _question(text: str, grounding: bool) -> str:
    """The question the judge sees: the record's text without the model-only markup.

    ``<image>`` is a placeholder for the MLLM's image tokens, not part of the question,
    so it is removed. Outside grounding the last line (the format instruction) is dropped,
    as in the original: the judge grades content, not format. Grounding keeps the full
    text, whose one line holds the referring expression.
    """
    text = str(text).replace("<image>\n", "").replace("<image>", "").strip()
    if grounding:
        return text
    return "\n".join(text.split("\n")[:-1])


def _content(question: str, record: TestItem, output: str, grounding: bool) -> str:
    """The user turn: context, ground truth (grounding: ``answer_bbox``), the answer, the rule."""
    truth = record.answer_bbox if grounding and record.has("answer_bbox") else record.answer
    rule = RULE_GROUNDING if grounding else RULE
    return ("[Context]\n"
            f"[Question]\n{question}\n\n"
            f"[Ground truth answer]\n{truth}\n\n[End of ground truth answer]\n\n"
            f"[Assistant]\n{output}\n\n[End of Assistant]\n\n"
            f"[System]\n{rule}\n\n")


def original_content(record: TestItem | Mapping, output: str, grounding: bool) -> str:
    """The user text exactly as ``create_prompt.py`` wrote it: the question is the record's text
    as it is (``<image>`` included, nothing stripped) without its last line; grounding: all of it.
    A plain mapping is read by ``TestItem.from_row``."""
    record = as_item(record)
    text = record.text
    return _content(text if grounding else "\n".join(text.split("\n")[:-1]), record, output, grounding)


def _coin_v1(record: TestItem, output: str, grounding: bool) -> Messages:
    """The CoIN prompt as ``create_prompt.py`` wrote it (``<image>`` removed): system line, then the user turn."""
    content = _content(_question(record.text, grounding), record, output, grounding)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]


_coin_v1.name = PROMPT_VERSION  # type: ignore[attr-defined]  # a version ("coin-v1") is not a Python name
PROMPTS.register(_coin_v1)


def build_messages(record: TestItem | Mapping, output: str, grounding: bool,
                   version: str = PROMPT_VERSION) -> Messages:
    """Chat messages asking the judge to grade ``output`` against the test ``record``.

    ``record`` needs ``text`` and ``answer`` (grounding: ``answer_bbox``, else ``answer``);
    a plain mapping is read by ``TestItem.from_row``. ``grounding`` selects the box variant.
    An unknown ``version`` lists the known ones.
    """
    return PROMPTS.get(version)(as_item(record), output, grounding)


def prompt_sha(messages: Messages) -> str:
    """SHA-256 of the messages' canonical JSON: the prompt-content part of the cache key."""
    blob = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
