"""Learning-rate schedules by name (``train.schedule``): the factor of ``train.lr`` at each optimiser step.

A schedule turns a stage's number of optimiser steps and ``train.warmup_ratio`` into a
function ``factor(s)`` of the 0-based optimiser step ``s``: the loop's ``LambdaLR`` sets the lr
to ``lr x factor(0)`` before the first step and calls ``sched.step()`` after each one, so step
``k`` (1-based) runs at ``lr x factor(k - 1)``. Every schedule below is written in that
convention, so the lr of each step equals what the code it reproduces used at that step.

- ``cosine`` (the default; the paper's stated recipe): linear warm-up over
  ``max(1, ceil(ratio x steps))`` steps, the first at ``1/warmup``, then a cosine to 0.
- ``constant``: the same linear warm-up, then ``train.lr`` to the end.
- ``warmup_lr``: what CoIN's scripts ran. They pass ``--deepspeed scripts/zero3_offload.json``,
  whose ``scheduler`` entry (DeepSpeed's ``WarmupLR``, ``warmup_type`` log by default) replaces
  ``--lr_scheduler_type cosine`` in the Hugging Face Trainer, which fills it in with
  ``warmup_min_lr`` 0, ``warmup_max_lr`` = the learning rate and ``warmup_num_steps`` =
  ``ceil(warmup_ratio x steps)`` (``TrainingArguments.get_warmup_steps``). ``WarmupLR`` raises W
  to at least 2 and, after optimiser step ``k``, sets the lr to
  ``max_lr x min(1, log(k) / log(W))`` (its ``last_batch_iteration`` is ``k - 1``); it never
  set the lr before the first step, so DeepSpeed's optimiser took that one at the lr it was built
  with, the full learning rate (DeepSpeed issues #5731 and #6569; PR #6597, October 2024, later
  set it to ``warmup_min_lr`` first, after CoIN's scripts ran). So: step 1 at ``lr``, step 2 at 0,
  step ``k >= 2`` at ``lr x min(1, log(k - 1) / log(W))``, reaching ``lr`` at step W + 1.

This module imports nothing heavy: the dry run and the config check read it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from coin.options import suggest

__all__ = ["SCHEDULES", "Schedule", "factors", "schedule_problems"]

Factor = Callable[[int], float]


@dataclass(frozen=True)
class Schedule:
    """One schedule: ``build(total, warmup_ratio)`` gives its ``factor(s)``; ``summary`` is the dry run's words."""

    name: str
    summary: str
    build: Callable[[int, float], Factor]


def _linear_warmup_steps(total: int, ratio: float) -> int:
    """coin's warm-up length: ``ceil(ratio x total)``, at least one step."""
    return max(1, math.ceil(ratio * total))


def _cosine(total: int, ratio: float) -> Factor:
    warmup = _linear_warmup_steps(total, ratio)

    def f(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min((s - warmup) / max(total - warmup, 1), 1.0)))

    return f


def _constant(total: int, ratio: float) -> Factor:
    warmup = _linear_warmup_steps(total, ratio)

    def f(s: int) -> float:
        return (s + 1) / warmup if s < warmup else 1.0

    return f


def _warmup_lr(total: int, ratio: float) -> Factor:
    steps = max(2, math.ceil(ratio * total))  # the Trainer's warm-up steps; WarmupLR's max(2, .)
    inverse_log = 1.0 / math.log(steps)

    def f(s: int) -> float:
        if s == 0:  # WarmupLR has not touched the optimiser yet: its own lr, warmup_max_lr
            return 1.0
        it = s - 1  # WarmupLR's last_batch_iteration after optimiser step s
        return inverse_log * math.log(it + 1) if it < steps else 1.0

    return f


SCHEDULES: dict[str, Schedule] = {s.name: s for s in (
    Schedule(name="cosine", summary="cosine to 0 after a linear warm-up", build=_cosine),
    Schedule(name="constant", summary="constant after a linear warm-up", build=_constant),
    Schedule(name="warmup_lr", summary="DeepSpeed WarmupLR as CoIN's scripts ran it: log warm-up from 0, "
             "then constant, the first step at the full lr", build=_warmup_lr),
)}


def factors(name: str, total: int, warmup_ratio: float) -> Factor:
    """``factor(s)`` of schedule ``name`` for a stage of ``total`` optimiser steps (``LambdaLR``'s lambda)."""
    return SCHEDULES[name].build(total, warmup_ratio)


def schedule_problems(name: object, key: str = "train.schedule") -> list[str]:
    """The problem with a schedule name, naming ``key`` and the choices (none when it is registered)."""
    if name in SCHEDULES:
        return []
    near = suggest(name, SCHEDULES)
    return [f"{key} must be one of {', '.join(SCHEDULES)}, got {name!r}{near}"]
