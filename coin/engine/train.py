"""One training stage: the loop, readable top to bottom.

AdamW without weight decay, cosine schedule with linear warm-up (the paper's recipe),
gradient clipping and accumulation; methods contribute through their hooks only.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import torch

from coin.config import TrainConfig
from coin.methods import Method, StageContext


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the message names the step and the batch's sample ids."""


@dataclass
class StageStats:
    steps: int
    samples: int
    seconds: float
    final_loss: float
    mean_loss: float


def cosine_with_warmup(total: int, warmup: int):
    """Multiplier for step ``s``: linear warm-up to 1, then a cosine down to 0 at ``total``."""

    def f(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min((s - warmup) / max(total - warmup, 1), 1.0)))

    return f


def batches(n: int, batch_size: int, epochs: float, seed: int) -> list[list[int]]:
    """Seeded shuffled index batches covering ``epochs`` passes (a fraction takes a prefix)."""
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(math.ceil(epochs)):
        perm = list(range(n))
        rng.shuffle(perm)
        order += perm
    order = order[: max(1, round(n * epochs))]
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def train_stage(ctx: StageContext, samples: list, cfg: TrainConfig, methods: list[Method], seed: int,
                progress: bool = True) -> StageStats:
    """Train ``ctx.vlm.model`` on ``samples`` for one stage and return its statistics."""
    from tqdm.auto import tqdm

    model, vlm = ctx.vlm.model, ctx.vlm
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    plan = batches(len(samples), cfg.batch_size * cfg.grad_accum, cfg.epochs, seed)
    warmup = max(1, math.ceil(cfg.warmup_ratio * len(plan)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(len(plan), warmup))
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]
    device = next(model.parameters()).device
    model.train()
    t0, losses = time.time(), []
    bar = tqdm(plan, desc=f"train {ctx.task}", unit="step", disable=not progress, dynamic_ncols=True, leave=False)
    for step, idx in enumerate(bar):
        chunk = [samples[i] for i in idx]
        micro = [chunk[k : k + cfg.batch_size] for k in range(0, len(chunk), cfg.batch_size)]
        total = 0.0
        for part in micro:
            batch = {k: v.to(device) for k, v in vlm.train_batch(part).items()}
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                outputs = model(**batch)
                loss = outputs.loss
                for m in methods:
                    loss = m.loss(ctx, batch, outputs, loss)
            if not torch.isfinite(loss):
                ids = ", ".join(s.id for s in part)
                raise NonFiniteLossError(f"stage {ctx.stage + 1} ({ctx.task}): loss is {loss.item()} at step {step}; batch ids: {ids}")
            (loss * len(part) / len(chunk)).backward()
            total += loss.item() * len(part) / len(chunk)
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(total)
        bar.set_postfix(loss=f"{total:.3f}")
    model.eval()
    return StageStats(len(plan), len(samples), time.time() - t0, losses[-1] if losses else float("nan"),
                      sum(losses) / max(len(losses), 1))
