"""The small loop both pretraining stages of the tiny base share.

Seeded reshuffled epochs, AdamW, linear warm-up then a cosine over all steps, gradient
clipping. (Stage training of the continual run has its own loop in ``coin.engine.train``:
it adds method hooks, accumulation and signals, which pretraining needs none of.)

With ``checkpoint`` set, the loop saves its state there every ``every`` steps (the trained
weights, AdamW's moments, the schedule, torch's RNG; atomically) and a later call with the same
arguments continues from it: the batches are replayed from the seed up to the saved step, so a
resumed fit ends with the weights an uninterrupted one reaches.
"""

from __future__ import annotations

import io
import math
import random
from pathlib import Path
from typing import Callable, Iterator

import torch

from coin.io import atomic_write_bytes


def warmup_cosine(steps: int, warmup: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over ``warmup`` steps, capped by a cosine over ``steps``."""
    return lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))


def batches(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless batches of ``range(n)``: seeded reshuffled epochs, a batch may span two epochs."""
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            perm = list(range(n))
            rng.shuffle(perm)
            order += perm
        idx, order = order[:batch_size], order[batch_size:]
        yield idx


def fit(params: list, loss_of: Callable[[list[int]], torch.Tensor], n: int, *, steps: int, batch_size: int,
        lr: float, warmup: int, seed: int, desc: str, progress: bool = True,
        betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.01,
        checkpoint: Path | None = None, every: int = 50, log: Callable[[str], None] | None = None,
        trace: list[float] | None = None, stop: int | None = None) -> float:
    """Minimise ``loss_of(indices)`` over batches of ``range(n)`` for ``steps``; returns the last loss.

    ``checkpoint``: a file to save the loop's state to every ``every`` steps and to resume from.
    ``log``: told the step and loss every ``every`` steps (where no progress bar shows).
    ``trace``: each step's loss is appended to it. ``stop``: end after that many steps of the same
    schedule (the first steps of the full run, for the recipe check of the shipped base).
    """
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, max(1, warmup)))
    start, last = 0, float("nan")
    if checkpoint is not None and Path(checkpoint).is_file():
        start, last = _load(Path(checkpoint), params, opt, sched, steps)
        if log is not None:
            log(f"{desc}: resumed at step {start}/{steps} from {checkpoint}")
    stream = batches(n, batch_size, seed)
    for _ in range(start):  # the batches the saved steps took
        next(stream)
    bar = tqdm(range(start, steps), desc=desc, unit="step", disable=not progress, dynamic_ncols=True,
               initial=start, total=steps)
    for step in bar:
        loss = loss_of(next(stream))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        last = loss.item()
        if trace is not None:
            trace.append(last)
        if stop is not None and step + 1 >= stop:
            break
        bar.set_postfix(loss=f"{last:.3f}")
        if (step + 1) % every == 0 and step + 1 < steps:
            if checkpoint is not None:
                _save(Path(checkpoint), step + 1, last, params, opt, sched)
            if log is not None:
                log(f"{desc}: step {step + 1}/{steps}, loss {last:.3f}")
    return last


def _save(path: Path, step: int, loss: float, params: list, opt, sched) -> None:
    buf = io.BytesIO()
    torch.save({"step": step, "loss": loss, "params": [p.detach() for p in params], "opt": opt.state_dict(),
                "sched": sched.state_dict(), "torch_rng": torch.get_rng_state()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load(path: Path, params: list, opt, sched, steps: int) -> tuple[int, float]:
    try:
        state = torch.load(path, weights_only=True)
    except Exception as e:  # not a checkpoint of this loop (a foreign or damaged file)
        raise ValueError(f"{path}: not a readable checkpoint ({e}); delete it to start over") from e
    saved = state["params"]
    if len(saved) != len(params) or any(a.shape != b.shape for a, b in zip(saved, params)):
        raise ValueError(f"{path}: the checkpoint's {len(saved)} weights do not match the {len(params)} being "
                         "trained; delete it to start over")
    if not 0 < state["step"] < steps:
        raise ValueError(f"{path}: checkpoint at step {state['step']}, but this fit runs {steps} steps; "
                         "delete it to start over")
    with torch.no_grad():
        for p, t in zip(params, saved):
            p.copy_(t)
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), float(state["loss"])
