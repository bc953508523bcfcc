"""What a run costs, recorded per stage so that a resumed run reports the whole run, not its last process.

Each finished stage (the zero-shot one included) writes ``cost.json``: its training seconds (from
``train.json``), the seconds of the methods' own work around the training loop (``before_task``,
``train_data`` and ``after_task``: a Fisher, gradient passes, a router's training; ``train.json``'s
``method_seconds``), its evaluation seconds and the process's peak memory so far. ``run_cost`` sums
and maxes them into ``matrix.json``'s ``cost``, beside what only the model and the methods know:
trainable parameters (0 when no stage took a training step: the zero-shot method has an adapter
that never trains), parameters added per task (``Method.params_added_per_task``: 0 for methods
that reuse one adapter) and the size on disk of the methods' saved state (Fisher, subspaces,
merged factors...), summed over the stages.

A stage resumed part-way counts the seconds of the process that finished it (training resumed
from an in-stage checkpoint counts from there, as ``train.json`` does). Peak memory is the main
process's: ``torch.cuda.max_memory_allocated`` on a GPU, the resident set's maximum on a CPU.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Iterable

import torch

from coin.io import atomic_write_json, read_json

COST_FILE = "cost.json"

__all__ = ["COST_FILE", "peak_memory_mb", "record_stage", "run_cost"]


def peak_memory_mb() -> float:
    """This process's peak memory so far, in MiB (GPU memory allocated by torch on a GPU)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def record_stage(stage_dir: Path, eval_seconds: float) -> None:
    """Write the stage's ``cost.json`` (call on the main process, when the stage's evaluation is done)."""
    train = read_json(stage_dir / "train.json") if (stage_dir / "train.json").is_file() else {}
    row = {"train_seconds": round(float(train.get("seconds", 0.0)), 3)}
    if "method_seconds" in train:  # a stage trained before coin recorded it has none (not a zero)
        row["method_seconds"] = round(float(train["method_seconds"]), 3)
    atomic_write_json(stage_dir / COST_FILE, {**row, "eval_seconds": round(eval_seconds, 3),
                                              "peak_memory_mb": round(peak_memory_mb(), 1)})


def run_cost(vlm, methods: list, stage_dirs: Iterable[Path]) -> dict:
    """``matrix.json``'s ``cost``: parameters from the model and methods, seconds and memory from the stages."""
    from coin.adapters import trainable_parameters

    dirs = [d for d in stage_dirs if d is not None]
    rows = [read_json(d / COST_FILE) for d in dirs if (d / COST_FILE).is_file()]
    state = sum(p.stat().st_size for d in dirs for p in d.glob("method-*.safetensors"))
    steps = [int(read_json(d / "train.json").get("steps", 0)) for d in dirs if (d / "train.json").is_file()]
    trained = not steps or any(s > 0 for s in steps)  # no train.json at all: nothing says it did not train
    return {
        "trainable_params": trainable_parameters(vlm.model) if trained else 0,
        "params_added_per_task": sum(int(m.params_added_per_task(vlm)) for m in methods),
        "train_seconds": round(sum(r.get("train_seconds", 0.0) for r in rows), 1),
        # the methods' hooks around the loop (Fisher, gradient passes, a router's training...); None when a
        # stage that trained has no record of it (made before coin kept it)
        "method_seconds": (round(sum(r.get("method_seconds", 0.0) for r in rows), 1)
                           if all("method_seconds" in r for r in rows if r.get("train_seconds", 0.0) > 0) else None),
        "eval_seconds": round(sum(r.get("eval_seconds", 0.0) for r in rows), 1),
        "peak_memory_mb": round(max([r.get("peak_memory_mb", 0.0) for r in rows] + [peak_memory_mb()]), 1),
        "method_state_mb": round(state / 2**20, 3),
    }
