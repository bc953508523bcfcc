"""The small loop both pretraining stages of the tiny base share.

Seeded reshuffled epochs, AdamW, linear warm-up then a cosine over all steps, gradient
clipping. (Stage training of the continual run has its own loop in ``coin.engine.train``:
it adds method hooks, accumulation, checkpoints and signals, which pretraining needs none of.)
"""

from __future__ import annotations

import math
import random
from typing import Callable

import torch


def warmup_cosine(steps: int, warmup: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over ``warmup`` steps, capped by a cosine over ``steps``."""
    return lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))


def fit(params: list, loss_of: Callable[[list[int]], torch.Tensor], n: int, *, steps: int, batch_size: int,
        lr: float, warmup: int, seed: int, desc: str, progress: bool = True,
        betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.01) -> float:
    """Minimise ``loss_of(indices)`` over batches of ``range(n)`` for ``steps``; returns the last loss."""
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, max(1, warmup)))
    rng = random.Random(seed)
    order: list[int] = []
    loss = torch.tensor(float("nan"))
    bar = tqdm(range(steps), desc=desc, unit="step", disable=not progress, dynamic_ncols=True)
    for _ in bar:
        if len(order) < batch_size:
            perm = list(range(n))
            rng.shuffle(perm)
            order += perm
        idx, order = order[:batch_size], order[batch_size:]
        loss = loss_of(idx)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return loss.item()
