"""How many tokens each task's answers may take at evaluation, and how many answers hit that limit.

A fixed small limit cuts real answers: OCR-VQA's titles and author names and TextVQA's
phrases often pass 8 Llama tokens ("J. R. R. Tolkien" is 9), and a cut answer scores 0 under
exact match. So each task's limit is sized from its own training answers, in the model's own
tokens: the longest answer plus a margin (``margin``), never below the task's registry
value (``TaskSpec.max_new_tokens``, e.g. a letter's 4). ``eval.max_new_tokens: {Task: N}``
overrides a task's limit. The count of answers that reached the limit is stored with the
task's scores, so a limit that is still too small shows.
"""

from __future__ import annotations

import math
from typing import Mapping

from coin.tasks import get_task


def margin(longest: int) -> int:
    """Tokens allowed past the longest training answer: a quarter of it, at least 2 (room for a test
    answer a little longer than any training one). Short-answer tasks mostly stay at the registry's
    floor; long ones (OCR-VQA's titles) grow with their answers."""
    return max(2, math.ceil(longest / 4))


def _answers(samples: list) -> list[str]:
    out = []
    for s in samples:
        out.append(s.answer or "")
        out += [a for _, a in getattr(s, "turns", ())]
    return out


def answer_lengths(tokenizer, answers: list[str]) -> list[int]:
    """Token counts of ``answers`` as the model emits them (after the prompt: a leading space, no
    special tokens)."""
    if not answers:
        return []
    return [len(ids) for ids in tokenizer([" " + a for a in answers], add_special_tokens=False)["input_ids"]]


def answer_limits(tokenizer, train: Mapping[str, list], tasks: list[str],
                  overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """Per task: ``overrides[task]``, else the longest training answer plus ``margin``, at least the
    registry's value (which also serves a task without training samples)."""
    limits = {}
    for task in tasks:
        if overrides and task in overrides:
            limits[task] = int(overrides[task])
            continue
        floor = get_task(task).max_new_tokens
        lengths = answer_lengths(tokenizer, _answers(train.get(task, [])))
        longest = max(lengths, default=0)
        limits[task] = max(floor, longest + margin(longest)) if lengths else floor
    return limits


def count_at_limit(tokenizer, outputs: list[str | None], limit: int) -> int:
    """How many outputs reached ``limit`` tokens (re-encoded as the model emits them): answers the
    limit may have cut. Outputs are stored as text, so this also works on a resumed folder."""
    texts = [o for o in outputs if o]
    return sum(n >= limit for n in answer_lengths(tokenizer, texts))
