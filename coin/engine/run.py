"""A continual instruction-tuning run: zero-shot, then train and evaluate task after task.

A run is a folder::

    config.yaml                      the resolved config
    data_sources.json                each task's files and where their prompts come from (as released or rewritten)
    stages/00-zeroshot/              predictions of the base model (when eval.zero_shot)
    stages/NN-<task>/adapter/        the adapter after stage NN (safetensors)
    stages/NN-<task>/predictions/    <task>.jsonl per evaluated task: output, parsed, score, tag
    stages/NN-<task>/scores.json     per-task scores and tag counts of this stage
    stages/NN-<task>/cost.json       the stage's train and eval seconds, peak memory (coin.engine.cost)
    stages/NN-<task>/routing.json    per task, where a routing method sent its test inputs (DISCO, HiDe-LLaVA)
    stages/NN-<task>/DONE            written last: the stage is complete
    stages/NN-<task>/train_log.jsonl one line per optimiser step: loss, lr, gradient norm (coin.tracking)
    logs/                            TensorBoard event files (log.trackers)
    matrix.json, report.md, report.html, heatmap.png, forgetting.png

A finished stage is never recomputed: running the same command on the same folder skips
it and continues with the next one.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from coin import metrics, requirements
from coin.adapters import attach_adapter, load_adapter
from coin.adapters.routing import RoutedVLM
from coin.config import RunConfig
from coin.benchmarks.load import BenchmarkData, load_benchmark, verify_data
from coin.benchmarks.layout import data_sources, source_lines
from coin.benchmarks.check import HeaderPass
from coin.data.coin_json import DataError
from coin.data.images import set_max_pixels
from coin.engine import dist, fsdp, weights_from_main
from coin.engine.matrix import answer_spaces_of, write_matrix
from coin.engine.cost import peak_memory_mb, record_stage, run_cost
from coin.engine.evaluate import evaluate_task, task_entry
from coin.engine.limits import answer_limits, count_at_limit
from coin.engine.run_folder import FolderLock, clear_run_folder, prepare_run_dir, write_environment
from coin.tracking import STEP_LOG, RunTracker, StepLog
from coin.engine.train import train_stage
from coin.io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from coin.methods import StageContext, build_method
from coin.options import flat_dict
from coin.tasks.protocol_sets import with_backbone
from coin.models import BACKBONES, VLM, load_model
from coin.models.backbone import CachesPixels, CachesVision, SharesPrefix
from coin.models.empty import empty_weights
from coin.tasks.orders import resolve_order
from coin.tasks import get_task


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate_stage(vlm: VLM, bench: BenchmarkData, tasks: list[str], stage_dir: Path, batch_size: int,
                   progress: bool, limits: dict | None = None) -> dict:
    """Generate, score and write predictions for ``tasks`` (resumable); returns the stage's scores.

    ``limits``: new tokens per task (``coin.engine.limits``; default the registry's). Each
    task's entry records its limit and how many answers reached it (``at_limit``).
    """
    scores = {}
    spaces = answer_spaces_of(bench)
    for task in tasks:
        limit = (limits or {}).get(task, get_task(task).max_new_tokens)
        result = evaluate_task(vlm, task, bench.test[task], limit, batch_size,
                               stage_dir / "predictions", progress, protocol=bench.protocol, spaces=spaces)
        if isinstance(vlm, RoutedVLM):  # a method routing inputs to per-task adapters (DISCO, HiDe-LLaVA)
            _record_routing(vlm, task, stage_dir)
        if result is not None:
            scores[task] = task_entry(task, result, bench.protocol)
            outputs = [s["output"] for s in result["paper"].samples]
            scores[task].update(max_new_tokens=limit, at_limit=count_at_limit(vlm.tokenizer, outputs, limit))
    if dist.is_main():
        atomic_write_json(stage_dir / "scores.json", scores)
    dist.barrier()
    return scores


def _record_routing(vlm: RoutedVLM, task: str, stage_dir: Path) -> None:
    """``task``'s entry in the stage's ``routing.json``: of its test inputs routed in this launch (summed over
    processes), how many went to each stored adapter (``routed``, by the adapter's task) and the share whose
    top route was the task's own adapter (``accuracy``; None for a task not learned yet), and how many were
    routed by the method's fallback (``fallback``, when any: a router answer that named no adapter). A task answered
    by an earlier launch (nothing routed now) keeps the entry that launch wrote."""
    routed = {expert: int(dist.sum_over_processes(count)) for expert, count in vlm.take(task).items()}
    fallback = int(dist.sum_over_processes(vlm.take_fallbacks(task)))
    n = sum(routed.values())
    if n and dist.is_main():
        path = stage_dir / "routing.json"
        entries = read_json(path) if path.is_file() else {}
        entries[task] = {"accuracy": routed[task] / n if task in routed else None, "n": n, "routed": routed}
        if fallback:  # e.g. MR-LoRA's router named no expert: routed by its seeded fallback, counted here
            entries[task]["fallback"] = fallback
        atomic_write_json(path, entries)


def run(cfg: RunConfig, out: str | os.PathLike, progress: bool = True, log=print, echo=None,
        fresh: bool = False, finish: Callable[[Path], object] | None = None) -> dict:
    """Run (or continue) the experiment ``cfg`` in folder ``out``; returns ``matrix.json``'s content.

    Two processes never work in one folder at once: the second is refused with a message.
    ``log`` takes progress messages; ``echo`` (default ``log``) the one result line per stage.
    Steps and stage scores go to the trackers of ``cfg.log`` (coin.tracking).
    ``fresh``: empty the folder first (``--fresh``): only a coin run folder, only once its lock is held,
    so a live run's folder is never deleted under it.
    ``finish(out)``: called by the main process once ``matrix.json`` is written, before the processes
    part (``coin.api.run`` and ``coin run`` pass the report writer; the engine draws nothing itself).
    """
    requirements.check(log=log)  # an old transformers is named here, not as an IndexError after the model loads
    lock = FolderLock()
    tracker = RunTracker(cfg.log.trackers, Path(out), cfg.name or Path(out).name, cfg.log.project,
                         config=flat_dict(cfg))
    try:
        return _run(cfg, Path(out), progress, log, lock, tracker, echo or log, fresh, finish)
    finally:
        tracker.close()
        lock.release()


@dataclass
class _Session:
    """What every phase of a run reads: the config, the folder, where messages go, and what startup made."""

    cfg: RunConfig
    out: Path
    progress: bool
    log: Callable[[str], None]
    echo: Callable[[str], None]
    tracker: RunTracker
    sharded: bool
    order: list[str] = field(default_factory=list)
    bench: BenchmarkData | None = None
    vlm: VLM | None = None
    limits: dict = field(default_factory=dict)


def _run(cfg: RunConfig, out: Path, progress: bool, log, lock: FolderLock, tracker: RunTracker, echo,
         fresh: bool, finish: Callable[[Path], object] | None) -> dict:
    """The phases of a run: start (data, processes, folder), load, zero-shot, each stage, the matrix."""
    run = _Session(cfg, out, progress, log, echo, tracker, fsdp.active(cfg.dist.strategy))
    headers = _start(run, lock, fresh)
    _load(run, headers)
    zero_dir = _zero_shot(run) if cfg.eval.zero_shot else None
    if not run.sharded:
        _attach(run.vlm, cfg, run.log, run.sharded)
    methods = [build_method(cfg.method, cfg.method_options)]
    stage_dirs: list[Path] = []
    # folders whose predictions came from weights identical to the current ones: a stage that
    # trains nothing (zero-shot, multi-task before its last stage) reuses them instead of
    # generating the same answers again (the fresh adapter adds exactly zero: B = 0)
    identical: list[Path] = [zero_dir] if zero_dir is not None else []
    global_step = 0  # optimiser steps of the stages before this one: telemetry's steps run across stages
    for j, task in enumerate(run.order):
        stage_dir = out / "stages" / f"{j + 1:02d}-{task}"
        stage_dirs.append(stage_dir)
        if (stage_dir / "DONE").is_file():
            _load_stage(run.vlm, methods, stage_dir)
            identical = identical + [stage_dir] if _untrained(stage_dir) else [stage_dir]
            global_step += _steps(stage_dir)
            run.log(f"stage {j + 1}/{len(run.order)} {task}: done earlier, skipped")
            continue
        ctx = StageContext(vlm=run.vlm, task=task, stage=j, tasks=run.order,
                           train_data={t: run.bench.train[t] for t in run.order[: j + 1]}, run_dir=out, seed=cfg.seed)
        stats = _train(run, ctx, methods, stage_dir, global_step)
        identical = identical + [stage_dir] if _untrained(stage_dir) else [stage_dir]
        scores = _evaluate(run, ctx, methods, stage_dir, identical)
        global_step += _steps(stage_dir)
        if dist.is_main():
            tracker.stage(global_step, _stage_values(stage_dirs, run.order, scores, stats), key=f"stage {j + 1}")
        _mark_done(stage_dir)
        if dist.is_main():
            shutil.rmtree(stage_dir / "checkpoints", ignore_errors=True)
        head = ""
        if stats is not None:
            head = f"{stats.steps} steps in {stats.seconds:.0f}s, loss {stats.final_loss:.3f} | " if stats.steps else ""
        run.echo(f"stage {j + 1}/{len(run.order)} {task}: {head}{_fmt_scores(scores, run.order)}")

    cost = run_cost(run.vlm, methods, [zero_dir, *stage_dirs])  # summed over the stages' cost.json, resumes included
    result = None
    if dist.is_main():
        result = write_matrix(out, cfg, run.order, stage_dirs, zero_dir, cost, bench=run.bench)
        if finish is not None:  # e.g. the report (coin.api.run, coin run): the engine does not draw
            finish(out)
    dist.barrier()
    return result if result is not None else read_json(out / "matrix.json")


def _start(run: _Session, lock: FolderLock, fresh: bool) -> HeaderPass | None:
    """Check the data, start the process group, load the benchmark and create (or check) the run folder.

    Returns the image-header pass still reading in the background (``data.check_images: exists``)."""
    cfg, out = run.cfg, run.out
    run.order = resolve_order(cfg.tasks.order)
    if run.sharded:  # a method that cannot run sharded is refused by name before anything loads
        fsdp.check_method(cfg.method)
    set_max_pixels(cfg.data.max_image_pixels)  # every image this process opens (coin.data.images)
    # every file, image and answer source is checked before any model loads, by the main process
    # alone and before the process group exists: the others wait to join it (no collective
    # timeout runs while it reads a large tree); it also generates CoIN-Synth into the cache
    manifest = verify_data(cfg.data, run.order, protocols=cfg.eval.protocol) if dist.is_main() else None
    # under data.check_images: exists the images were only stat-ed: their headers (and pixel counts)
    # are read while the benchmark and the model load, and a bad one stops the run before any image is used
    headers = HeaderPass(manifest, cfg.data.max_image_pixels) \
        if manifest is not None and cfg.data.check_images == "exists" else None
    dist.init(dist.STARTUP_TIMEOUT)
    if not dist.is_main():  # one voice: the other processes work silently
        run.progress, run.log = False, (lambda m: None)
        run.echo = run.log
    with dist.main_first():
        # eval.protocol, with the backbone's own paper protocols (MiniGPT-v2's Grounding) where it names none
        scoring = with_backbone(cfg.eval.protocol, BACKBONES.get(cfg.model.name).protocols)
        run.bench = load_benchmark(cfg.data, run.order, cfg.seed, protocols=scoring, manifest=manifest, check=False)
    with dist.main_first():  # the main process creates and locks the folder; the others then check its config
        if dist.is_main():
            if fresh:
                clear_run_folder(out, check_only=True)  # not a run folder: refused before anything is written
            out.mkdir(parents=True, exist_ok=True)
            lock.acquire(out)  # before --fresh deletes anything: a live run's folder is refused, not emptied
            if fresh:
                clear_run_folder(out)
        prepare_run_dir(out, cfg)
        if dist.is_main():
            write_environment(out, cfg)
            sources = write_data_sources(out, cfg, run.order, run.bench.root)  # the report's Prompts section reads it
    run.log(f"run folder: {out}" + (f" ({dist.world()} processes)" if dist.world() > 1 else ""))
    if dist.is_main():
        run.log(f"data sources (instructions {cfg.data.instructions}):\n" + "\n".join(source_lines(sources)))
    return headers


def _load(run: _Session, headers: HeaderPass | None) -> None:
    """Load the model on every process (the weights read once, by the main process, where the backbone
    can), move or shard it, and size each task's answers."""
    cfg, log = run.cfg, run.log
    seed_everything(cfg.seed)
    backbone = BACKBONES.get(cfg.model.name)
    with dist.main_first():  # e.g. the tiny base is pretrained once, into the cache
        with empty_weights(weights_from_main.builds_empty(backbone)):  # then sent by the main process
            vlm = load_model(cfg.model, log, run.progress)
    if weights_from_main.sending(backbone):
        log(f"weights read by the main process and sent to the {dist.world() - 1} others")
    if not run.sharded:  # under FSDP each process moves only its shards to its device (fsdp.shard)
        if weights_from_main.sending(backbone):
            weights_from_main.receive_whole(vlm.model, dist.device())
        else:
            vlm.model.to(dist.device())
    _share_pixel_cache(vlm, cfg, log)
    if isinstance(vlm, SharesPrefix):  # LLaVA models (Qwen2-VL's M-RoPE keeps per-question prefill)
        vlm.share_prefix = cfg.eval.share_prefix
    if hasattr(vlm, "eval_image_mode"):  # LLaVA models: test images padded or cropped (coin.tasks.image_modes)
        vlm.eval_image_mode = cfg.eval.image_mode
    _await_headers(headers)  # before the zero-shot evaluation and the first training step read an image
    dist.end_startup()  # from here on every process works in step: a stuck collective is a bug
    run.limits = answer_limits(vlm.tokenizer, run.bench.train, run.order, cfg.eval.max_new_tokens)
    log("new tokens per answer: " + ", ".join(f"{t} {run.limits[t]}" for t in run.order))
    run.vlm = vlm
    if run.sharded:  # the adapter goes on before the base is sharded; a fresh one adds exactly 0 (B = 0)
        _attach(vlm, cfg, log, run.sharded)


def _share_pixel_cache(vlm: VLM, cfg: RunConfig, log) -> None:
    """``model.image_cache_mb`` is the preprocessed-image budget of one machine: its processes share it
    (8 processes of the default 2 GiB each held 16 GiB of host memory; loader workers keep none)."""
    mb, local = getattr(cfg.model.options, "image_cache_mb", None), dist.local_world()
    if mb is None or local <= 1 or not isinstance(vlm, CachesPixels):
        return
    vlm.limit_pixel_cache(mb * 2**20 // local)
    log(f"preprocessed-image cache: {mb} MiB on this machine, {mb / local:.0f} MiB for each of its {local} processes")


def _zero_shot(run: _Session) -> Path:
    """The base model's answers on every task (stage 00), unless an earlier launch finished them."""
    zero_dir = run.out / "stages" / "00-zeroshot"
    if not (zero_dir / "DONE").is_file():
        t = time.time()
        with fsdp.evaluating(run.vlm, run.sharded):
            zs = evaluate_stage(run.vlm, run.bench, run.order, zero_dir, run.cfg.eval.batch_size, run.progress,
                                run.limits)
        if dist.is_main():
            record_stage(zero_dir, time.time() - t)
            run.tracker.stage(0, {f"zeroshot/{k}": v["score"] for k, v in zs.items() if v["score"] is not None},
                              key="zero-shot")
        _mark_done(zero_dir)
    run.echo(f"zero-shot: {_fmt_scores(read_json(zero_dir / 'scores.json'), run.order)}")
    return zero_dir


def _train(run: _Session, ctx: StageContext, methods: list, stage_dir: Path, global_step: int):
    """Train stage ``ctx.stage`` and save its adapter and method state; returns its ``TrainStats``, or None
    when an earlier launch trained it (its evaluation was interrupted) and its weights were loaded."""
    j, task, cfg = ctx.stage, ctx.task, run.cfg
    if (stage_dir / "adapter" / "adapter_model.safetensors").is_file():
        _load_stage(run.vlm, methods, stage_dir)  # trained earlier; the evaluation was interrupted
        run.log(f"stage {j + 1}/{len(run.order)} {task}: trained earlier, evaluating")
        return None
    seed_everything(cfg.seed * 1000 + j)
    hooks = time.time()  # the methods' own work around the training loop counts in the stage's cost
    for m in methods:
        m.before_task(ctx)
    data = run.bench.train[task]
    for m in methods:
        data = m.train_data(ctx, data)
    method_seconds = time.time() - hooks
    stats = train_stage(ctx, data, cfg.train.for_task(task), methods, seed=cfg.seed * 1000 + j,
                        progress=run.progress, checkpoint_dir=stage_dir / "checkpoints", log=run.log,
                        on_step=_step_logger(run.tracker, stage_dir, global_step),
                        shard_optimizer=cfg.dist.shard_optimizer)
    hooks = time.time()
    for m in methods:
        m.after_task(ctx)
    method_seconds += time.time() - hooks
    fsdp.reshard(run.vlm.model)  # every process alike, before the main one alone reads the model
    if dist.is_main():
        for m in methods:
            _save_state(stage_dir / f"method-{m.name}.safetensors", m.state_dict())
        atomic_write_json(stage_dir / "train.json", {**stats.__dict__, "method_seconds": round(method_seconds, 3)})
        _save_adapter(run.vlm, stage_dir / "adapter")  # after the method state: its presence marks training done
    dist.barrier()
    return stats


def _evaluate(run: _Session, ctx: StageContext, methods: list, stage_dir: Path, identical: list[Path]) -> dict:
    """Stage ``ctx.stage``'s answers and scores on the tasks ``tasks.eval`` asks for (reusing those of an
    earlier folder with the same weights); returns the scores."""
    j = ctx.stage
    t = time.time()
    eval_tasks = run.order[: j + 1] if run.cfg.tasks.eval == "seen" else run.order
    reused = _reuse_predictions(identical[:-1], stage_dir, eval_tasks)
    if reused:
        run.log(f"stage {j + 1}/{len(run.order)} {ctx.task}: nothing trained; reusing the answers of the same "
                f"weights for {', '.join(reused)}")
    evaluator = run.vlm
    for m in methods:  # a method that routes test inputs to its adapters wraps the model (Method.eval_model)
        evaluator = m.eval_model(ctx, evaluator)
    with fsdp.evaluating(run.vlm, run.sharded):
        scores = evaluate_stage(evaluator, run.bench, eval_tasks, stage_dir, run.cfg.eval.batch_size, run.progress,
                                run.limits)
    if dist.is_main():
        record_stage(stage_dir, time.time() - t)  # cost.json: this stage's seconds and peak memory
    return scores


def write_data_sources(out: Path, cfg: RunConfig, order: list[str], root: Path) -> dict:
    """``data_sources.json``: per task and split, the file the run read and where its prompts come from
    (as released, or rewritten with coin's lines of the family; ``coin.benchmarks.layout.data_sources``)."""
    sources = data_sources(root, cfg.data, order)
    atomic_write_json(out / "data_sources.json", {"benchmark": cfg.data.benchmark, "root": str(root),
                                                  "instructions": cfg.data.instructions,
                                                  "file_set": cfg.data.file_set, "tasks": sources})
    return sources


def _await_headers(headers: HeaderPass | None) -> None:
    """Wait for the main process's header pass; every process stops alike when it found a bad image,
    with the listing ``coin data check`` prints (the files' paths, the records using them)."""
    found, error = None, None
    try:
        found = headers.problems() if headers is not None else None
    except Exception as e:  # raised after the others learn of it: none waits at a collective for this one
        error = e
    if dist.any_true(found is not None or error is not None):
        if error is not None:
            raise error
        if found is None:  # another process: the main one's log lists the images
            raise DataError("the main process found unreadable images; nothing was trained")
        raise DataError(f"{found.summary()} (read while the model loaded, data.check_images: exists); "
                        f"nothing was trained.\n{found.format()}")


def _attach(vlm: VLM, cfg: RunConfig, log, sharded: bool) -> None:
    """Attach the adapter, seeded alike whatever ran before (e.g. a pretraining); then shard the frozen base
    (``dist.strategy: fsdp``) or turn on the vision cache (a sharded tower runs only inside a forward)."""
    seed_everything(cfg.seed)
    attach_adapter(vlm, cfg.adapter)
    if sharded:
        fsdp.shard(vlm.model, dist.device(), log, from_main=weights_from_main.sending(BACKBONES.get(cfg.model.name)))
    elif cfg.eval.cache_vision and isinstance(vlm, CachesVision):  # the tower is frozen from here on
        from coin.models.vision_cache import VisionCacheRefused

        try:
            vlm.enable_vision_cache()
        except VisionCacheRefused as e:
            log(str(e))


def _steps(stage_dir: Path) -> int:
    """Optimiser steps the stage's training ran (its ``train.json``; 0 when it has none)."""
    path = stage_dir / "train.json"
    return int(read_json(path).get("steps", 0)) if path.is_file() else 0


def _step_logger(tracker: RunTracker, stage_dir: Path, offset: int):
    """``train_stage``'s ``on_step``: a line in the stage's step log and a point on the trackers' curves."""
    steplog = StepLog(stage_dir / STEP_LOG)

    def on_step(done: int, total: int, values: dict) -> None:
        steplog.append({"step": done, "of": total, "global_step": offset + done, **values})
        tracker.step(offset + done, {f"train/{k}": v for k, v in values.items()})

    return on_step


def _stage_values(stage_dirs: list[Path], order: list[str], scores: dict, stats) -> dict:
    """What the trackers get at a stage's end: its scores per task, MAA/BWT so far, step time, memory."""
    values = {f"eval/{t}": scores[t]["score"] for t in order if t in scores and scores[t]["score"] is not None}
    n = len(stage_dirs)
    rows = [read_json(d / "scores.json") if d != stage_dirs[-1] else scores for d in stage_dirs]
    matrix = [[rows[r][t]["score"] if t in rows[r] else None for t in order[:n]] for r in range(n)]
    for key, fn in (("maa", metrics.maa), ("bwt", metrics.bwt), ("acc", metrics.acc)):
        if (v := fn(matrix)) is not None:
            values[f"metrics/{key}"] = v
    if stats is not None and stats.steps > stats.resumed_from:
        values["stage/step_seconds"] = stats.seconds / (stats.steps - stats.resumed_from)
    values["stage/peak_memory_mb"] = peak_memory_mb()
    return values


def _untrained(stage_dir: Path) -> bool:
    """True when the stage ran no optimizer step (its weights are the previous stage's)."""
    path = stage_dir / "train.json"
    return path.is_file() and read_json(path).get("steps", 1) == 0


def _reuse_predictions(sources: list[Path], stage_dir: Path, tasks: list[str]) -> list[str]:
    """Copy the predictions of ``tasks`` from folders evaluated with identical weights; returns the tasks."""
    found = []
    for task in tasks:
        dst = stage_dir / "predictions" / f"{task}.jsonl"
        src = next((d / "predictions" / f"{task}.jsonl" for d in reversed(sources)
                    if (d / "predictions" / f"{task}.jsonl").is_file()), None)
        if src is None or dst.is_file():
            continue
        if dist.is_main():
            dst.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(dst, src.read_bytes())
        found.append(task)
    dist.barrier()
    return found


def _mark_done(stage_dir: Path) -> None:
    """Write the stage's DONE marker (main process) and wait until every process sees it."""
    if dist.is_main():
        atomic_write_text(stage_dir / "DONE", "")
    dist.barrier()


def _fmt_scores(scores: dict, order: list[str]) -> str:
    """``Task score`` per task; ``(N at limit)`` after a task with answers that reached its token limit."""
    return " ".join(f"{t} {'unscored' if scores[t]['score'] is None else format(scores[t]['score'], '.1f')}"
                    + (f" ({n} at limit)" if (n := scores[t].get("at_limit")) else "") for t in order if t in scores)


def _load_stage(vlm: VLM, methods, stage_dir: Path) -> None:
    load_adapter(vlm, stage_dir / "adapter")
    for m in methods:
        m.load_state_dict(_load_state(stage_dir / f"method-{m.name}.safetensors"))
        m.restore(vlm)  # e.g. LoRA updates merged into the base weights go back on the model


def _save_adapter(vlm: VLM, path: Path) -> None:
    """Save the adapter (safetensors) aside, then rename, so a kill never leaves half of it."""
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    vlm.model.save_pretrained(tmp, safe_serialization=True)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _save_state(path: Path, state: dict) -> None:
    if not state:
        return
    from safetensors.torch import save

    from coin.io import atomic_write_bytes

    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in state.items()}))


def _load_state(path: Path) -> dict:
    if not path.is_file():
        return {}
    from safetensors.torch import load_file

    return load_file(str(path))
