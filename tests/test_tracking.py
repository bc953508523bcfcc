"""Telemetry: TensorBoard events read back with TensorBoard's own reader, the step log, resume without duplicates."""

from __future__ import annotations

import pytest
import yaml

from coin.config import ConfigError
from coin.config_load import from_dict
from coin.engine.run import run
from coin.tracking import TRACKERS, StepLog, TrackerKind, read_step_log, tracker_problems
from coin.methods import METHODS, Method

pytestmark = pytest.mark.slow

STEPS = 3  # the micro config: 24 training samples, batches of 8


def _scalars(logdir, tag):
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={SCALARS: 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        return []
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _fast(cfg):
    cfg["eval"].update(zero_shot=False, bootstrap=0)
    return cfg


def test_two_stages_write_every_step_and_the_stage_scores(tmp_path, micro_config):
    out = tmp_path / "run"
    result = run(from_dict(_fast(micro_config)), out, progress=False, log=lambda *a: None)
    loss = _scalars(out / "logs", "train/loss")
    assert [s for s, _ in loss] == list(range(1, 2 * STEPS + 1))  # global steps: stage 2 follows stage 1
    assert len(_scalars(out / "logs", "train/lr")) == 2 * STEPS
    assert all(v > 0 for _, v in _scalars(out / "logs", "train/grad_norm"))
    # stage scores at each stage's last step, equal to the matrix
    scores = _scalars(out / "logs", "eval/ImageNet")
    assert [s for s, _ in scores] == [STEPS, 2 * STEPS]
    assert [v for _, v in scores] == pytest.approx([result["matrix"][0][0], result["matrix"][1][0]])
    assert [s for s, _ in _scalars(out / "logs", "metrics/maa")] == [STEPS, 2 * STEPS]
    assert _scalars(out / "logs", "metrics/maa")[-1][1] == pytest.approx(result["metrics"]["maa"])
    assert _scalars(out / "logs", "metrics/acc")[-1][1] == pytest.approx(result["metrics"]["acc"])  # ACC too
    # the resolved config, stored once as the run's hyperparameters
    (stored,) = list((out / "logs").glob("*/hparams.yml"))
    hparams = yaml.safe_load(stored.read_text())
    assert hparams["train.lr"] == micro_config["train"]["lr"] and hparams["tasks.order"] == '["ImageNet", "Grounding"]'
    assert hparams["method"] == "sequential" and hparams["model.tiny.lm_width"] == 64
    # the light step log holds the same losses
    rows = read_step_log(out / "stages" / "02-Grounding" / "train_log.jsonl")
    assert [r["global_step"] for r in rows] == [4, 5, 6] and rows[0]["of"] == STEPS
    assert [r["loss"] for r in rows] == pytest.approx([v for s, v in loss if s > STEPS])


class _CrashOnce(Method):
    """Sequential, except that when armed it raises at a given micro-batch: a kill past a checkpoint."""

    name = "test-crash-once"
    armed_at: int | None = None

    def loss(self, ctx, batch, outputs, loss):
        if ctx.stage == 1 and type(self).armed_at is not None and ctx.micro == type(self).armed_at:
            type(self).armed_at = None
            raise RuntimeError("killed")
        return loss


if "test-crash-once" not in METHODS:
    METHODS.register(_CrashOnce)


def test_a_killed_and_resumed_run_has_each_step_once(tmp_path, micro_config):
    cfg = _fast(micro_config)
    cfg["method"] = "test-crash-once"
    cfg["data"]["synth"]["n_train"] = 48  # 6 steps a stage
    cfg["train"]["checkpoint_every"] = 2
    out = tmp_path / "run"
    _CrashOnce.armed_at = 4  # stage 2 stops in its 5th step: steps 1-4 are logged, checkpoints at 2 and 4
    with pytest.raises(RuntimeError, match="killed"):
        run(from_dict(cfg), out, progress=False, log=lambda *a: None)
    stage2 = out / "stages" / "02-Grounding"
    assert [r["step"] for r in read_step_log(stage2 / "train_log.jsonl")] == [1, 2, 3, 4]
    # the newest checkpoint is at step 4; make the kill land past it (as SIGKILL between checkpoints does)
    import shutil

    shutil.rmtree(stage2 / "checkpoints" / "step-000004")
    run(from_dict(cfg), out, progress=False, log=lambda *a: None)
    loss = _scalars(out / "logs", "train/loss")
    assert [s for s, _ in loss] == list(range(1, 13))  # no duplicate, none missing
    assert [r["step"] for r in read_step_log(stage2 / "train_log.jsonl")] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in _scalars(out / "logs", "eval/Grounding")] == [12]
    assert len(list((out / "logs").glob("*/hparams.yml"))) == 1  # the config is stored once, not per launch


class _Remembering:
    """A tracker that, like MLflow and W&B, keeps every value it was given (no purge_step)."""

    calls: list = []

    def start(self):
        pass

    def store_init_configuration(self, values):
        self.calls.append(("config", values))

    def log(self, values, step=None):
        self.calls.append((step, dict(values)))

    def finish(self):
        pass


def test_a_tracker_without_purge_gets_each_step_and_stage_once_across_a_resume(tmp_path, micro_config):
    """MLflow and W&B keep what a killed run logged; a resumed run must not log those steps again."""
    cfg = micro_config
    cfg["eval"].update(zero_shot=True, bootstrap=0)
    cfg["method"] = "test-crash-once"
    cfg["data"]["synth"]["n_train"] = 48  # 6 steps a stage
    cfg["train"]["checkpoint_every"] = 2
    cfg["log"] = {"trackers": ["remembering"]}
    out = tmp_path / "run"
    _Remembering.calls = []
    with TRACKERS.scratch():
        TRACKERS.register(TrackerKind(name="remembering", module="json", extra="-", build=lambda *a: _Remembering()))
        _CrashOnce.armed_at = 4
        with pytest.raises(RuntimeError, match="killed"):
            run(from_dict(cfg), out, progress=False, log=lambda *a: None)
        import shutil

        shutil.rmtree(out / "stages" / "02-Grounding" / "checkpoints" / "step-000004")  # steps 5 and 6 run again
        result = run(from_dict(cfg), out, progress=False, log=lambda *a: None)
    configs = [c for c in _Remembering.calls if c[0] == "config"]
    assert len(configs) == 1 and configs[0][1]["train.checkpoint_every"] == 2
    steps = [step for step, values in _Remembering.calls if step != "config" and "train/loss" in values]
    assert steps == list(range(1, 13))  # each step once, though the resumed launch ran steps 5 and 6 again
    stage_logs = [(step, values) for step, values in _Remembering.calls if step != "config" and "train/loss" not in values]
    assert [step for step, _ in stage_logs] == [0, 6, 12]  # zero-shot, stage 1, stage 2: once each
    assert stage_logs[-1][1]["metrics/acc"] == pytest.approx(result["metrics"]["acc"])


def test_step_log_drops_stale_rows_and_a_torn_line(tmp_path):
    path = tmp_path / "train_log.jsonl"
    StepLog(path).append({"step": 1, "loss": 1.0})
    log = StepLog(path)
    log.append({"step": 2, "loss": 2.0})
    log.append({"step": 3, "loss": 3.0})
    with open(path, "a") as f:
        f.write('{"step": 4, "lo')  # a kill mid-write
    assert [r["step"] for r in read_step_log(path)] == [1, 2, 3]
    StepLog(path).append({"step": 2, "loss": 9.0})  # a resume from step 1
    assert [(r["step"], r["loss"]) for r in read_step_log(path)] == [(1, 1.0), (2, 9.0)]


def test_unknown_or_missing_tracker_is_named(micro_config, monkeypatch):
    assert tracker_problems(["tensorboard"]) == []
    assert "Did you mean 'tensorboard'" in tracker_problems(["tensorbord"])[0]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a))
    micro_config["log"] = {"trackers": ["tensorboard", "wandb"]}
    with pytest.raises(ConfigError, match=r"log.trackers\[1\]: 'wandb' is not installed; pip install 'coin-cl\[wandb\]'"):
        from_dict(micro_config)


def test_a_methods_extra_loss_term_is_logged_beside_the_loss(tmp_path, micro_config):
    cfg = _fast(micro_config)
    cfg.update(method="ewc", method_options={"samples": 8, "lambda_": 1000.0})
    out = tmp_path / "run"
    run(from_dict(cfg), out, progress=False, log=lambda *a: None)
    first = read_step_log(out / "stages" / "01-ImageNet" / "train_log.jsonl")
    second = read_step_log(out / "stages" / "02-Grounding" / "train_log.jsonl")
    assert all("ewc/penalty" not in r for r in first)  # no Fisher yet: no penalty
    assert second[0]["ewc/penalty"] == 0.0 and second[-1]["ewc/penalty"] > 0  # zero at the anchor, then grows
    assert [s for s, _ in _scalars(out / "logs", "train/ewc/penalty")] == [4, 5, 6]


def test_grad_norm_without_clipping_is_clip_grad_norms_and_changes_nothing():
    import torch

    from coin.engine.train import _grad_norm

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(2))]
    for p in params[:2]:
        p.grad = torch.randn_like(p)
    before = [p.grad.clone() for p in params[:2]]
    norm = _grad_norm(params)
    assert all(torch.equal(p.grad, b) for p, b in zip(params, before))
    assert float(norm) == pytest.approx(float(torch.nn.utils.clip_grad_norm_(params, 1e9)))


def test_stage_values_reach_a_tracker_without_purge_once_per_key(tmp_path):
    """A launch killed after a stage's scores were logged but before the stage was marked done logs them
    again when it resumes; a tracker that keeps everything gets them once (RunTracker over one folder)."""
    from coin.tracking import RunTracker

    _Remembering.calls = []
    with TRACKERS.scratch():
        TRACKERS.register(TrackerKind(name="remembering", module="json", extra="-", build=lambda *a: _Remembering()))
        for _launch in range(2):
            tracker = RunTracker(["remembering"], tmp_path, "run", config={"train": {"lr": 0.1}})
            tracker.stage(6, {"eval/GQA": 50.0}, key="stage 1")
            tracker.stage(6, {"eval/GQA": 20.0}, key="stage 2")  # a stage that trained nothing: the same step
            tracker.close()
    assert _Remembering.calls == [("config", {"train.lr": 0.1}), (6, {"eval/GQA": 50.0}), (6, {"eval/GQA": 20.0})]
