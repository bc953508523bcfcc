"""One training stage: the loop, readable top to bottom.

AdamW without weight decay, cosine schedule with linear warm-up (the paper's recipe),
gradient clipping and accumulation; methods contribute through their hooks only.
"""

from __future__ import annotations

import math
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from coin.config import TrainConfig
from coin.engine import checkpoint as ckpt
from coin.methods import Method, StageContext


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the message names the step and the batch's sample ids."""


class Interrupted(RuntimeError):
    """SIGINT/SIGTERM arrived; a resumable checkpoint was written first."""


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (main thread only)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict = {}

    def __enter__(self) -> "_StopFlag":
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclass
class StageStats:
    steps: int
    samples: int
    seconds: float
    final_loss: float
    mean_loss: float
    skipped_batches: int = 0
    resumed_from: int = 0


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
                progress: bool = True, checkpoint_dir: Path | None = None, log=print) -> StageStats:
    """Train ``ctx.vlm.model`` on ``samples`` for one stage and return its statistics.

    With ``checkpoint_dir``, a checkpoint is written every ``cfg.checkpoint_every`` steps
    and on SIGINT/SIGTERM, and training resumes from the newest good one.
    """
    from tqdm.auto import tqdm

    model, vlm = ctx.vlm.model, ctx.vlm
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    params = list(named.values())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    plan = batches(len(samples), cfg.batch_size * cfg.grad_accum, cfg.epochs, seed)
    warmup = max(1, math.ceil(cfg.warmup_ratio * len(plan)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(len(plan), warmup))
    start = 0
    if checkpoint_dir is not None:
        found = ckpt.latest_good(checkpoint_dir, log)
        if found is not None:
            start = ckpt.restore(*found, named, opt, sched)
            log(f"stage {ctx.stage + 1} ({ctx.task}): resuming training at step {start}/{len(plan)}")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]
    device = next(model.parameters()).device
    model.train()
    t0, losses, skipped = time.time(), [], 0
    bar = tqdm(total=len(plan), initial=start, desc=f"train {ctx.task}", unit="step", disable=not progress,
               dynamic_ncols=True, leave=False)
    with _StopFlag() as stop:
        for step in range(start, len(plan)):
            chunk = [samples[i] for i in plan[step]]
            micro = [chunk[k : k + cfg.batch_size] for k in range(0, len(chunk), cfg.batch_size)]
            total, bad = 0.0, False
            for part in micro:
                batch = {k: v.to(device) for k, v in vlm.train_batch(part).items()}
                with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                    outputs = model(**batch)
                    loss = outputs.loss
                    for m in methods:
                        loss = m.loss(ctx, batch, outputs, loss)
                if not torch.isfinite(loss):
                    ids = ", ".join(s.id for s in part)
                    msg = f"stage {ctx.stage + 1} ({ctx.task}): loss is {loss.item()} at step {step}; batch ids: {ids}"
                    if cfg.on_nonfinite == "stop":
                        raise NonFiniteLossError(msg)
                    log(f"warning: {msg}; batch skipped")
                    bad = True
                    break
                (loss * len(part) / len(chunk)).backward()
                total += loss.item() * len(part) / len(chunk)
            if bad:
                opt.zero_grad(set_to_none=True)
                skipped += 1
            else:
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses.append(total)
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{total:.3f}")
            done = step + 1
            periodic = cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0 and done < len(plan)
            if checkpoint_dir is not None and (periodic or stop.signal is not None):
                ckpt.save_checkpoint(checkpoint_dir, done, named, opt, sched)
                ckpt.prune(checkpoint_dir)
            if stop.signal is not None:
                bar.close()
                raise Interrupted(f"interrupted by signal {stop.signal} at step {done} of stage {ctx.stage + 1} "
                                  f"({ctx.task}); a checkpoint was written")
    bar.close()
    model.eval()
    return StageStats(len(plan), len(samples), time.time() - t0, losses[-1] if losses else float("nan"),
                      sum(losses) / max(len(losses), 1), skipped, start)
