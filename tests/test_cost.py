"""The run's cost line (``matrix.json``'s ``cost``) from the stages' files."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
import torch

from coin.api import run
from coin.config_load import from_dict
from coin.engine.cost import run_cost
from coin.methods import METHODS
from coin.methods.base import Method
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


class _SlowHooks(Method):
    """Sequential training, with work before and after each task (as a Fisher, a gradient pass or a router)."""

    name = "test-slow-hooks"

    def before_task(self, ctx):
        time.sleep(0.25)

    def after_task(self, ctx):
        time.sleep(0.35)


if "test-slow-hooks" not in METHODS:
    METHODS.register(_SlowHooks)


def test_the_methods_work_around_the_loop_is_counted(tmp_path, micro_config):
    """KeepLoRA's gradient passes, EWC's Fisher and MR-LoRA's router run in the method's hooks, outside the
    training loop: their time was in no column of the cost table (MR-LoRA's 40-epoch router was missing)."""
    micro_config["method"] = "test-slow-hooks"
    micro_config["eval"].update(zero_shot=False, bootstrap=0)
    out = tmp_path / "run"
    cost = run(from_dict(micro_config), out, progress=False, log=lambda *a: None)["cost"]
    stages = sorted((out / "stages").iterdir())
    for d in stages:
        row = json.loads((d / "cost.json").read_text())
        assert 0.6 <= row["method_seconds"] < 5.0, (d.name, row)  # both hooks, and only them
        assert json.loads((d / "train.json").read_text())["method_seconds"] == row["method_seconds"]
    assert cost["method_seconds"] == pytest.approx(sum(json.loads((d / "cost.json").read_text())["method_seconds"]
                                                       for d in stages), abs=0.11)


def test_a_run_older_than_the_method_column_has_none_not_zero(tmp_path):
    dirs = [_stage(tmp_path, "01-A", 5, 3.0, 1.0, 30.0), _stage(tmp_path, "02-B", 5, 4.0, 1.5, 20.0)]
    assert run_cost(_vlm(), [], dirs)["method_seconds"] is None
    (dirs[0] / "cost.json").write_text(json.dumps({"train_seconds": 3.0, "method_seconds": 1.25, "eval_seconds": 1.0}))
    (dirs[1] / "cost.json").write_text(json.dumps({"train_seconds": 4.0, "method_seconds": 0.5, "eval_seconds": 1.5}))
    assert run_cost(_vlm(), [], dirs)["method_seconds"] == 1.8
