"""How the judge is asked and read: coin's deterministic protocol (the default) and the original's, as run.

``judge.protocol`` picks one of two entries:

- ``coin`` (default): the CoIN prompt with its "helpful and precise assistant" system line
  (``coin.scoring.judge.prompt``), greedy decoding (temperature 0), ``judge.max_tokens`` (16),
  a strict parser (``coin.scoring.judge.parse``: "Score: 10" is 10, anything ambiguous is
  counted unparsable), task score = sum / (10 N) x 100 unrounded. Asked twice, a judge gives
  the same reply, so the cache holds the answer and two runs compare.
- ``paper``: the judge exactly as CoIN's scripts ran it, to set a number beside the paper's.
  ``eval_GenealKnowledge.py`` kept only the last message of ``create_prompt.py``'s prompt,
  so the "helpful and precise assistant" line never reached the judge: it sent the system
  message "You are a helpful assistant." and the user text with ``<image>`` removed and
  stripped, sampled by vLLM at temperature 0.7, top-p 0.8, repetition penalty 1.05, up to
  20 tokens; ``evaluate_score.py`` read the reply loosely (``parse_paper``) and rounded each
  task's score to an integer. Sampling makes it irreproducible: the same answers graded
  twice give different scores, and a cached reply is one draw among many.

The protocol is part of the judge cache key (``backends.cache_id``) and of the judge's folder
name, so a reply drawn under one protocol is never read under the other. coin's own rule
that N counts every test sample (a missing prediction scores 0) holds under both; the
original's N counted the predictions it found.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

from coin.scoring.judge.parse import OK, OUT_OF_RANGE, UNPARSABLE, ParsedScore, parse_score
from coin.scoring.item import TestItem
from coin.scoring.judge.prompt import Messages, build_messages, original_content
from coin.registry import Registry

__all__ = ["CARD_LINE", "DEFAULT_PROTOCOL", "JUDGE_PROTOCOLS", "JudgeProtocol", "PAPER_SYSTEM", "get_protocol", "parse_paper"]

DEFAULT_PROTOCOL = "coin"
# the run report's protocol card: the judge's difference from the original, and the option that reproduces it
CARD_LINE = ("Reasoning capability (`coin judge`, the LLM judge): by default (`judge.protocol: coin`) the judge "
             "decodes greedily with the CoIN prompt's system line, a strict parser and unrounded scores, so two "
             "runs compare; the original sent \"You are a helpful assistant.\", sampled at temperature 0.7, "
             "top-p 0.8, repetition penalty 1.05, up to 20 tokens, read the reply loosely and rounded each "
             "task's score to an integer: `judge.protocol: paper` reproduces it.")
PAPER_SYSTEM = "You are a helpful assistant."  # eval_GenealKnowledge.py's system message


@dataclass(frozen=True)
class JudgeProtocol:
    """What one protocol sends, how the judge decodes, how a reply is read and a task score made.

    ``sampling``: decoding settings beside the prompt (``temperature``, ``top_p``,
    ``repetition_penalty``); the backends pass them on, the ``openai`` one with
    ``repetition_penalty`` in ``extra_body`` as vLLM accepts it. ``max_tokens`` None: the
    config's ``judge.max_tokens``; a number: the protocol's own, fixed.
    """

    name: str
    doc: str
    messages: Callable[[TestItem, str, bool, str], Messages]  # (record, output, grounding, prompt version)
    parse: Callable[[str | None], ParsedScore]
    sampling: Mapping[str, float] = field(default_factory=lambda: {"temperature": 0.0})
    max_tokens: int | None = None
    rounded: bool = False  # task scores rounded to an integer

    @property
    def greedy(self) -> bool:
        return not self.sampling.get("temperature")

    def reply_tokens(self, configured: int) -> int:
        """The reply length limit sent: the protocol's own, else ``judge.max_tokens``."""
        return self.max_tokens if self.max_tokens is not None else configured

    def task_score(self, total: float, n: int) -> float:
        """A task's score from the sum of its ``n`` answers' scores: sum / (10 N) x 100 (rounded under ``paper``)."""
        score = total / (10.0 * n) * 100.0
        return float(round(score)) if self.rounded else score


JUDGE_PROTOCOLS: Registry[JudgeProtocol] = Registry("judge protocol")


def get_protocol(name: str) -> JudgeProtocol:
    """The protocol registered as ``name`` (an unknown name lists the choices)."""
    return JUDGE_PROTOCOLS.get(name)


# --------------------------------------------------------------------------- paper

_DIGIT = re.compile(r"[1-9]")


def parse_paper(reply: str | None) -> ParsedScore:
    """A reply read as ``evaluate_score.py`` read it.

    ``float(reply)`` when it parses: counted when <= 10 (negative numbers included, as there),
    else nothing (``out_of_range``). Otherwise, with a ``/`` in the reply, the part before the
    first ``/`` when it is all digits and <= 10 ("8/10" is 8; " 8/10" and "8.5/10" give nothing).
    Otherwise the first digit 1-9 anywhere ("Score: 10" is 1, "7-8" is 7). Nothing found:
    ``unparsable``, score 0. Two guards the script lacked: a non-finite number ("nan", "-inf")
    and a numeric character ``float`` refuses ("½") give nothing instead of spoiling the sum
    or stopping the run.
    """
    if reply is None:
        return ParsedScore(None, UNPARSABLE)
    try:
        value = float(reply)
    except ValueError:
        value = None
    if value is not None:
        if not math.isfinite(value):
            return ParsedScore(None, UNPARSABLE)
        return ParsedScore(value, OK) if value <= 10.0 else ParsedScore(None, OUT_OF_RANGE)
    if "/" in reply:
        head = reply.split("/")[0]
        try:
            value = float(head) if head.isnumeric() else None
        except ValueError:  # numeric to str.isnumeric, not to float: "½"
            value = None
        if value is None:
            return ParsedScore(None, UNPARSABLE)
        return ParsedScore(value, OK) if value <= 10.0 else ParsedScore(None, OUT_OF_RANGE)
    digit = _DIGIT.search(reply)
    return ParsedScore(float(digit.group()), OK) if digit else ParsedScore(None, UNPARSABLE)


def _paper_messages(record: TestItem, output: str, grounding: bool, version: str) -> Messages:
    """``create_prompt.py``'s user text, ``<image>`` removed and stripped, under "You are a helpful assistant."."""
    user = original_content(record, output, grounding).replace("<image>", "").strip()
    return [{"role": "system", "content": PAPER_SYSTEM}, {"role": "user", "content": user}]


def _coin_messages(record: TestItem, output: str, grounding: bool, version: str) -> Messages:
    return build_messages(record, output, grounding, version)


JUDGE_PROTOCOLS.register(JudgeProtocol(
    name="coin", doc="coin's: the CoIN prompt and system line, greedy, judge.max_tokens, strict parsing, unrounded "
                     "(the default: reproducible)", messages=_coin_messages, parse=parse_score))
JUDGE_PROTOCOLS.register(JudgeProtocol(
    name="paper", doc="the original as run: 'You are a helpful assistant.', temperature 0.7, top-p 0.8, repetition "
                      "penalty 1.05, 20 tokens, loose parsing, rounded task scores (sampled: not reproducible)",
    messages=_paper_messages, parse=parse_paper, sampling={"temperature": 0.7, "top_p": 0.8, "repetition_penalty": 1.05},
    max_tokens=20, rounded=True))
