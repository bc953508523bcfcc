"""The run's cost line (``matrix.json``'s ``cost``) from the stages' files."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch

from coin.engine.cost import run_cost
from coin.methods.zeroshot import ZeroShot


def _stage(root, name: str, steps: int | None, train_s: float, eval_s: float, peak: float):
    d = root / name
    d.mkdir()
    if steps is not None:
        (d / "train.json").write_text(json.dumps({"steps": steps, "seconds": train_s}))
    (d / "cost.json").write_text(json.dumps({"train_seconds": train_s, "eval_seconds": eval_s, "peak_memory_mb": peak}))
    return d


def _vlm():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].requires_grad_(False)  # 15 frozen, 8 trainable
    return SimpleNamespace(model=model)


def test_cost_sums_the_stages_and_counts_trainable_weights(tmp_path):
    dirs = [_stage(tmp_path, "00-zeroshot", None, 0.0, 2.0, 10.0), _stage(tmp_path, "01-A", 5, 3.0, 1.0, 30.0),
            _stage(tmp_path, "02-B", 5, 4.0, 1.5, 20.0)]
    cost = run_cost(_vlm(), [], dirs)
    assert cost["trainable_params"] == 8
    assert (cost["train_seconds"], cost["eval_seconds"]) == (7.0, 4.5)
    assert cost["peak_memory_mb"] >= 30.0


def test_a_run_that_never_took_a_step_trains_no_weights(tmp_path):
    # The zero-shot method keeps an adapter (its B = 0) that no stage updates: the cost line said
    # 770,560 trainable parameters for it on CoIN-Synth.
    dirs = [_stage(tmp_path, "00-zeroshot", None, 0.0, 2.0, 10.0), _stage(tmp_path, "01-A", 0, 0.2, 1.0, 10.0),
            _stage(tmp_path, "02-B", 0, 0.2, 1.0, 10.0)]
    assert run_cost(_vlm(), [ZeroShot()], dirs)["trainable_params"] == 0
