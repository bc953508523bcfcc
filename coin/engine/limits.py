"""How many tokens each task's answers may take at evaluation, and how many answers hit that limit.

A fixed small limit cuts real answers: OCR-VQA's titles and author names and TextVQA's
phrases often pass 8 Llama tokens ("J. R. R. Tolkien" is 9), and a cut answer scores 0 under
exact match. So each task's limit is sized from its own training answers, in the model's own
tokens: the longest answer plus a margin (``margin``), never below the task's registry
value (``TaskSpec.max_new_tokens``, e.g. a letter's 4). ``eval.max_new_tokens: {Task: N}``
overrides a task's limit: the shipped paper recipes (configs/coin/) set the original code's
limits that way (LLaVA 128 new tokens for TextVQA, GQA, VizWiz and OCR-VQA and 1024 for the
others, Qwen-VL 30, MiniGPT-v2 100). Either way a row stops at its end-of-sequence token. The
count of answers that reached the limit is stored with the task's scores, so a limit that is
still too small shows; which rule set each task's limit is on the run's protocol card
(``limit_card``) and in the dry run (``limit_line``).
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


SIZED = "sized from the training answers"
SET = "eval.max_new_tokens"


def limit_line(tasks: list[str], overrides: Mapping[str, int] | None) -> str:
    """The dry run's line: which rule sets each task's generation limit (the sizes need the tokenizer)."""
    given = [f"{t} {overrides[t]}" for t in tasks if overrides and t in overrides]
    sized = [t for t in tasks if not overrides or t not in overrides]
    parts = [f"{SET}: " + ", ".join(given)] if given else []
    parts += [f"{SIZED} (coin's default): " + ", ".join(sized)] if sized else []
    return "new tokens per answer (rows stop at end-of-sequence): " + "; ".join(parts)


def limit_card(tasks: list[str], overrides: Mapping[str, int] | None, used: Mapping[str, dict]) -> dict[str, dict]:
    """Per task: the generation limit a run used, the rule behind it and the answers that reached it.

    ``used``: a scores.json entry per task (``max_new_tokens``, ``at_limit``), e.g. the last stage's.
    """
    card = {}
    for t in tasks:
        entry = used.get(t) or {}
        card[t] = {"max_new_tokens": entry.get("max_new_tokens"), "at_limit": entry.get("at_limit"),
                   "rule": SET if overrides and t in overrides else SIZED}
    return card
