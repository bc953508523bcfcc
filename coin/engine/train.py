"""One training stage: the loop, readable top to bottom.

AdamW (``train.weight_decay``, ``adam_betas``, ``adam_eps``), the lr schedule ``train.schedule``
(coin.schedule; by default the paper's cosine with linear warm-up), gradient clipping and
accumulation; methods contribute through their hooks only.
"""

from __future__ import annotations

import math
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from coin.config import TrainConfig
from coin.engine.lm_loss import forward_with_loss
from coin.engine import checkpoint as ckpt
from coin.engine import dist, fsdp
from coin.engine.loader import WorkerBatches, default_workers, load_batches, micro_batches
from coin.errors import Interrupted, NonFiniteLossError
from coin.schedule import factors
from coin.methods import Method, StageContext
from coin.models.backbone import CountsTruncation


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
    truncated: int = 0  # training samples cut to the model's max_length (LlavaVLM.truncated_ids)


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


def param_groups(named: dict, full_train: list[str], cfg: TrainConfig) -> list[dict]:
    """One optimizer group, or two when the fully trained modules (the projector) have their own lr."""
    if cfg.projector_lr is None:
        return [{"params": list(named.values())}]
    full = [p for n, p in named.items() if any(m in n for m in full_train)]
    rest = [p for n, p in named.items() if not any(m in n for m in full_train)]
    return [g for g in ({"params": rest}, {"params": full, "lr": cfg.projector_lr}) if g["params"]]


def train_stage(ctx: StageContext, samples: list, cfg: TrainConfig, methods: list[Method], seed: int,
                progress: bool = True, checkpoint_dir: Path | None = None, log=print,
                on_step: Callable[[int, int, dict], None] | None = None, shard_optimizer: bool = True) -> StageStats:
    """Train ``ctx.vlm.model`` on ``samples`` for one stage and return its statistics.

    One optimizer step consumes ``batch_size x grad_accum x processes`` samples of a seeded
    plan that every process computes alike; each process takes its contiguous share and
    runs it in micro-batches of ``batch_size``, as many on every process (``loader``). Each
    micro-batch's loss is weighted by its share of the step's samples, so the gradient equals
    a single process's with the same effective batch. Batches are built ahead of the step by
    ``train.num_workers`` loader workers, from a plan fixed first, so they do not depend on
    the number of workers. With ``checkpoint_dir``, the main process writes a checkpoint every
    ``cfg.checkpoint_every`` steps and on SIGINT/SIGTERM; training resumes from the newest
    good one. ``on_step(done, total, values)`` is called on the main process after each optimiser
    step with its loss, learning rate, gradient norm and the methods' extra terms (telemetry).
    ``shard_optimizer`` (``dist.shard_optimizer``): a model sharded by ``dist.strategy: fsdp`` keeps
    AdamW's moments sharded over the processes too (``fsdp.adamw``).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    model, vlm = ctx.vlm.model, ctx.vlm
    rank, world = dist.rank(), dist.world()
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    params = list(named.values())
    # under dist.strategy fsdp the moments are sharded over the processes (dist.shard_optimizer; fsdp.adamw)
    opt = fsdp.adamw(param_groups(named, vlm.full_train, cfg), fsdp.is_sharded(model) and shard_optimizer,
                     lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)
    per_rank = cfg.batch_size * cfg.grad_accum
    plan = batches(len(samples), per_rank * world, cfg.epochs, seed)
    # step k runs at lr x factor(k - 1): LambdaLR applies factor(0) now and steps after each optimiser step
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factors(cfg.schedule, len(plan), cfg.warmup_ratio))
    start, found = 0, None
    if checkpoint_dir is not None:
        found = ckpt.latest_good(checkpoint_dir, log)
        if found is not None:  # the generators are restored right before the first step, below
            start = ckpt.restore(*found, named, opt, sched, plan=_plan_meta(plan, per_rank * world), rng=False)
            if dist.is_main():
                log(f"stage {ctx.stage + 1} ({ctx.task}): resuming training at step {start}/{len(plan)}")
    # accelerate wraps the model as the launch says (DDP under several processes); a model sharded by
    # dist.strategy fsdp runs as it is, its replicated weights' gradients averaged below
    # (fsdp.reduce_gradients). Precision is coin's (train.precision: autocast below), not the
    # launcher's; the scheduler stays ours (accelerate's would step once per process).
    acc, engine, sharded = None, model, fsdp.is_sharded(model)
    if not sharded:
        acc = Accelerator(mixed_precision="no", cpu=dist.device().type == "cpu")
        dist.check_supported(acc.distributed_type)
        engine, opt = acc.prepare(model, opt)
    inner = getattr(opt, "optimizer", opt)  # accelerate's wrapper steps once per call; the loop steps the optimizer
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]
    device = next(model.parameters()).device
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")  # fp16 needs loss scaling
    steps = [micro_batches([samples[i] for i in plan[step]], rank, per_rank, cfg.batch_size)
             for step in range(start, len(plan))]
    workers = default_workers(device) if cfg.num_workers is None else cfg.num_workers
    # a worker seeds each micro-batch from (seed, stage, its place in the stage: ctx.micro below), so
    # what it draws is the same in a resumed stage as in an uninterrupted one
    make = vlm.train_batch if workers == 0 else WorkerBatches(vlm.train_batch)  # workers keep no image cache
    stream = load_batches([part for micro in steps for part, _ in micro], make, workers,
                          pin_memory=device.type == "cuda", seed=f"{seed}/{ctx.stage}",
                          keys=[(step * world + rank) * cfg.grad_accum + k
                                for step, micro in enumerate(steps, start) for k in range(len(micro))])
    truncated = len(vlm.truncated_ids(samples)) if isinstance(vlm, CountsTruncation) else 0
    if truncated and dist.is_main():
        log(f"stage {ctx.stage + 1} ({ctx.task}): {truncated} of {len(samples)} training samples are longer than "
            f"model.max_length ({vlm.max_length} tokens) and are cut at the end")
    model.train()
    if found is not None:
        # every generator a step draws from (torch CPU and CUDA, random, NumPy) as it was after step
        # ``start`` of the interrupted run; nothing between here and the first step draws
        ckpt.set_rng_state(ckpt.of_process(found[0]["rng"], rank, world))
    t0, losses, skipped = time.time(), [], 0
    # periodic checkpoints written in the background on the main process (train.checkpoint_async)
    writer = (ckpt.AsyncCheckpointer(checkpoint_dir) if checkpoint_dir is not None and cfg.checkpoint_async
              and dist.is_main() else None)
    last_checkpoint = _now()
    bar = tqdm(total=len(plan), initial=start, desc=f"train {ctx.task}", unit="step",
               disable=not progress or not dist.is_main(), dynamic_ncols=True, leave=False)
    loop = _Loop(ctx, cfg, methods, engine, acc, opt, inner, scaler, params, device, dtype, sharded, log)
    failed = True
    try:
        with _StopFlag() as stop:
            for step in range(start, len(plan)):
                chunk = [samples[i] for i in plan[step]]
                # as many micro-batches on every process (padding weighted zero on a short last step):
                # each one calls collectives that must pair across processes
                total, bad, terms, share = _accumulate(loop, step, chunk, steps[step - start], stream)
                if bad:
                    opt.zero_grad(set_to_none=True)
                    skipped += 1
                else:
                    total, grad_norm = _update(loop, total)
                    losses.append(total)
                    if on_step is not None and dist.is_main():
                        on_step(step + 1, len(plan), {"loss": total, "lr": sched.get_last_lr()[0],
                                                      "grad_norm": float(grad_norm),
                                                      **{k: v / max(share, 1e-12) for k, v in terms.items()}})
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{total:.3f}")
                done = step + 1
                # a signal that reached one process stops every one at this step (else the others would go on
                # to the next step's collectives alone and hang); one scalar all-reduce per step
                stopping = dist.any_true(stop.signal is not None)
                if stopping and stop.signal is None:
                    stop.signal = signal.SIGTERM  # another process was told to stop: this one stops with it
                periodic = cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0 and done < len(plan)
                if checkpoint_dir is not None and cfg.checkpoint_minutes and not periodic and done < len(plan):
                    # every process takes part: clocks differ, and one process's "time" is enough
                    periodic = dist.any_true(_now() - last_checkpoint >= 60 * cfg.checkpoint_minutes)
                if checkpoint_dir is not None and (periodic or stop.signal is not None):
                    rng = ckpt.with_processes(dist.gather_objects(ckpt.rng_state()))  # each process's own
                    with fsdp.optimizer_state_on_main(opt):  # the moments of every process, when sharded
                        if dist.is_main():
                            meta = _plan_meta(plan, per_rank * world)
                            if writer is not None and stop.signal is None:
                                writer.submit(ckpt.snapshot(done, named, opt, sched, plan=meta, rng=rng))
                            else:  # interrupted: written now, before the stage reports it
                                if writer is not None:
                                    writer.wait()
                                ckpt.save_checkpoint(checkpoint_dir, done, named, opt, sched, plan=meta, rng=rng)
                                ckpt.prune(checkpoint_dir)
                    last_checkpoint = _now()
                    if stop.signal is None:
                        dist.barrier()
                if stop.signal is not None:
                    bar.close()
                    raise Interrupted(f"interrupted by signal {stop.signal} at step {done} of stage {ctx.stage + 1} "
                                      f"({ctx.task}); a checkpoint was written")
        failed = False
    finally:
        if writer is not None:  # the write in flight completes (or is named) before the stage goes on
            try:
                writer.wait()
            except Exception as e:
                if not failed:
                    raise
                log(f"warning: the last checkpoint of stage {ctx.stage + 1} was not written: {e}")
    bar.close()
    if acc is not None:
        acc.free_memory()  # drop the DDP wrapper; ``model`` itself is unchanged
    del engine
    model.eval()
    return StageStats(len(plan), len(samples), time.time() - t0, losses[-1] if losses else float("nan"),
                      sum(losses) / max(len(losses), 1), skipped, start, truncated)


@dataclass
class _Loop:
    """What each optimiser step of ``train_stage`` uses: the stage, its config and methods, the wrapped
    model and its optimiser, the trainable weights, the device and the autocast dtype."""

    ctx: StageContext
    cfg: TrainConfig
    methods: list
    engine: Any
    acc: Any
    opt: Any
    inner: Any
    scaler: Any
    params: list
    device: torch.device
    dtype: Any
    sharded: bool
    log: Callable[[str], None]


def _accumulate(loop: _Loop, step: int, chunk: list, micro: list, stream) -> tuple[float, bool, dict, float]:
    """Forward and backward of step ``step``'s micro-batches on this process, gradients accumulated.

    Returns the step's loss on this process (weighted by each micro-batch's share of the step), whether
    the step is skipped (a non-finite loss on any process, ``train.on_nonfinite: skip``), the methods'
    extra terms weighted alike, and the share of the step's samples this process ran."""
    ctx, cfg, world, rank = loop.ctx, loop.cfg, dist.world(), dist.rank()
    total, bad, terms, share = 0.0, False, {}, 0.0
    for k, (part, weight) in enumerate(micro):
        ready = next(stream)
        if bad:  # a skipped step: its remaining batches are drained, not used
            continue
        ctx.micro = (step * world + rank) * cfg.grad_accum + k  # the same stream under any process count
        batch = {key: v.to(loop.device, non_blocking=True) for key, v in ready.items()}
        sync = k == len(micro) - 1
        with _no_sync(loop.acc, loop.engine, not sync):
            with torch.autocast(loop.device.type, dtype=loop.dtype or torch.bfloat16, enabled=loop.dtype is not None):
                outputs = forward_with_loss(loop.engine, batch, cfg.logits)  # LM head at labels only
                loss = outputs.loss
                for m in loop.methods:
                    loss = m.loss(ctx, batch, outputs, loss)
            # every process must agree before the gradient all-reduce in backward
            if dist.any_true(not torch.isfinite(loss)):
                ids = ", ".join(s.id for s in chunk)
                msg = (f"stage {ctx.stage + 1} ({ctx.task}): loss is {loss.item()} at step {step}; "
                       f"batch ids: {ids}")
                if cfg.on_nonfinite == "stop":
                    raise NonFiniteLossError(msg)
                if dist.is_main():
                    loop.log(f"warning: {msg}; batch skipped")
                bad = True
                continue
            scale = weight * len(part) / len(chunk) * world  # DDP averages over processes
            loop.scaler.scale(loss * scale).backward()
        total += loss.item() * weight * len(part) / len(chunk)
        share += weight * len(part) / len(chunk)
        for m in loop.methods:  # each extra term, weighted like the loss over this process's micro-batches
            for key, v in m.last_terms().items():
                terms[f"{m.name}/{key}"] = terms.get(f"{m.name}/{key}", 0.0) + v * weight * len(part) / len(chunk)
    return total, bad, terms, share


def _update(loop: _Loop, total: float) -> tuple[float, torch.Tensor]:
    """The optimiser step on the accumulated gradients (averaged over processes, unscaled, clipped);
    returns the step's loss summed over processes and the gradient norm before clipping."""
    total = dist.sum_over_processes(total)
    if loop.sharded:
        fsdp.reduce_gradients(loop.params)
    loop.scaler.unscale_(loop.inner)
    if loop.cfg.max_grad_norm > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(loop.params, loop.cfg.max_grad_norm)
    else:  # logged even without clipping
        grad_norm = _grad_norm(loop.params)
    loop.scaler.step(loop.inner)
    loop.scaler.update()
    loop.opt.zero_grad(set_to_none=True)
    return total, grad_norm


def _now() -> float:
    """The clock of ``train.checkpoint_minutes`` (monotonic: a clock set back does not delay a checkpoint)."""
    return time.monotonic()


def _plan_meta(plan: list[list[int]], per_step: int) -> dict:
    """What a checkpoint's step counter means: the stage's optimiser steps and samples per step."""
    return {"steps": len(plan), "samples_per_step": per_step}


def _grad_norm(params: list) -> torch.Tensor:
    """The global L2 norm of the gradients (what ``clip_grad_norm_`` would report), changing none."""
    norms = [torch.linalg.vector_norm(p.grad.detach().float()) for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def _no_sync(acc, engine, skip: bool):
    """Skip DDP's gradient all-reduce on all but a step's last micro-batch."""
    from contextlib import nullcontext

    return acc.no_sync(engine) if skip and acc is not None and dist.world() > 1 else nullcontext()
