"""A run survives being killed: SIGKILL anywhere, corrupt checkpoints, NaN losses, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from coin.config import TrainConfig
from coin.config_load import from_dict
from coin.engine import checkpoint as ckpt
from coin.engine.run import run
from coin.engine.train import Interrupted, NonFiniteLossError, train_stage
from coin.methods import Method, StageContext

pytestmark = pytest.mark.slow


def _micro(micro_config):
    micro_config["train"]["checkpoint_every"] = 1  # a checkpoint after every step: kills land mid-checkpoint too
    micro_config["eval"]["batch_size"] = 2  # many small batches: kills land mid-evaluation too
    micro_config["data"]["synth"]["n_train"] = 48
    return micro_config


def test_sigkill_anywhere_then_resume_gives_the_same_matrix(tmp_path, micro_config):
    cfg = _micro(micro_config)
    reference = run(from_dict(cfg), tmp_path / "reference", progress=False, log=lambda *a: None)
    cfg_file = tmp_path / "micro.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "coin.cli", "run", "--config", str(cfg_file), "--out", str(out), "--quiet"]
    stages = out / "stages"
    triggers = [  # kill points, each reached by polling the run folder
        ("mid zero-shot evaluation", lambda: any((stages / "00-zeroshot" / "predictions").glob("*.partial.jsonl"))),
        ("mid training", lambda: (stages / "01-ImageNet" / "checkpoints" / "step-000002").is_dir()),
        ("mid checkpoint write", lambda: any((stages / "02-Grounding" / "checkpoints").glob(".step-*.partial"))),
        ("mid evaluation", lambda: (stages / "02-Grounding" / "predictions" / "ImageNet.jsonl").is_file()),
    ]
    killed = []
    for name, trigger in triggers:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
        while proc.poll() is None and not trigger():
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed.append(name)
    proc = subprocess.run(cmd, capture_output=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(killed) >= 3, f"only killed at {killed}"
    resumed = json.loads((out / "matrix.json").read_text())
    assert resumed["matrix"] == reference["matrix"]
    assert resumed["zero_shot"] == reference["zero_shot"]
    for stage in ("01-ImageNet", "02-Grounding"):
        a = (tmp_path / "reference" / "stages" / stage / "predictions" / "ImageNet.jsonl").read_text()
        b = (out / "stages" / stage / "predictions" / "ImageNet.jsonl").read_text()
        assert a == b
        assert not (out / "stages" / stage / "checkpoints").exists()


# ----------------------------------------------------------------------------- in-process stage tests


class _StopAt(Method):
    """Raises at a given step, as a kill would (the loss hook runs once per micro-batch)."""

    name = "stop-at"

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.calls = at, 0

    def loss(self, ctx, batch, outputs, loss):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return loss


@pytest.fixture(scope="module")
def stage_setup(tmp_path_factory):
    from coin.adapters import attach_adapter
    from coin.config import AdapterConfig
    from coin.benchmarks.synth.generator import generate
    from coin.models.tiny.model import TinyConfig, build_model, build_processor, train_tokenizer
    from coin.data.sample import Sample
    from coin.models.llava.wrapper import LlavaVLM

    root = generate(tmp_path_factory.mktemp("st") / "s", seed=2, n_train=24, n_test=0, n_pretrain=24, tasks=["GQA"])
    rows = json.loads((root / "Instructions_Original" / "GQA" / "train.json").read_text())
    samples = [Sample(r["id"], "GQA", str(root / "images" / r["image"]), r["conversations"][0]["value"][8:],
                      r["conversations"][1]["value"]) for r in rows]
    tok = train_tokenizer([s.prompt + " " + s.answer for s in samples] + ["USER: ASSISTANT:"], 400)
    tiny = TinyConfig(vocab_size=400, vision_width=32, vision_layers=1, vision_heads=2, lm_width=64, lm_layers=2,
                      lm_heads=2, lm_ffn=128)

    def fresh():
        vlm = LlavaVLM(build_model(tiny, tok, seed=0), build_processor(tok, tiny))
        torch.manual_seed(0)
        attach_adapter(vlm, AdapterConfig(r=4, alpha=8))
        return vlm

    return fresh, samples


def _weights(vlm):
    return {n: p.detach().clone() for n, p in vlm.model.named_parameters() if p.requires_grad}


def _ctx(vlm):
    return StageContext(vlm=vlm, task="GQA", stage=0, tasks=["GQA"])


def test_truncated_checkpoint_falls_back_to_the_previous_one(stage_setup, tmp_path):
    fresh, samples = stage_setup
    cfg = TrainConfig(batch_size=4, lr=1e-3, checkpoint_every=1)
    ref = fresh()
    torch.manual_seed(5)
    train_stage(_ctx(ref), samples, cfg, [], seed=1, progress=False)

    vlm = fresh()
    torch.manual_seed(5)
    with pytest.raises(KeyboardInterrupt):
        train_stage(_ctx(vlm), samples, cfg, [_StopAt(5)], seed=1, progress=False, checkpoint_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.glob("step-*"))
    assert names == ["step-000003", "step-000004"]  # two kept: the newest and its fallback
    newest = tmp_path / "step-000004" / "state.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])

    logs: list[str] = []
    vlm2 = fresh()
    train_stage(_ctx(vlm2), samples, cfg, [], seed=1, progress=False, checkpoint_dir=tmp_path, log=logs.append)
    text = "\n".join(logs)
    assert "step-000004: checksum mismatch (truncated or corrupt file); falling back to the previous checkpoint" in text
    assert "resuming training at step 3/6" in text
    a, b = _weights(ref), _weights(vlm2)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_nonfinite_loss_names_step_and_ids(stage_setup):
    fresh, samples = stage_setup
    vlm = fresh()
    from coin.engine.train import batches

    plan = batches(len(samples), 4, 1.0, seed=1)  # the data plan tells which step holds samples[0]
    step = next(k for k, idx in enumerate(plan) if 0 in idx)
    cfg = TrainConfig(batch_size=4, lr=1e-3, checkpoint_every=0)

    class NaNAtStep(Method):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def loss(self, ctx, batch, outputs, loss):
            self.calls += 1
            return loss * float("nan") if self.calls == step + 1 else loss

    with pytest.raises(NonFiniteLossError) as e:
        train_stage(_ctx(vlm), samples, cfg, [NaNAtStep()], seed=1, progress=False)
    msg = str(e.value)
    assert f"at step {step}" in msg and samples[0].id in msg
    for i in plan[step]:
        assert samples[i].id in msg
    # option: skip the batch and count it
    vlm = fresh()
    stats = train_stage(_ctx(vlm), samples, TrainConfig(batch_size=4, lr=1e-3, checkpoint_every=0, on_nonfinite="skip"),
                        [NaNAtStep()], seed=1, progress=False, log=lambda *a: None)
    assert stats.skipped_batches == 1 and stats.steps == len(plan)


def test_sigterm_writes_a_checkpoint_and_says_so(stage_setup, tmp_path):
    fresh, samples = stage_setup
    vlm = fresh()

    class Term(Method):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def loss(self, ctx, batch, outputs, loss):
            self.calls += 1
            if self.calls == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return loss

    with pytest.raises(Interrupted, match="at step 2 of stage 1"):
        train_stage(_ctx(vlm), samples, TrainConfig(batch_size=4, checkpoint_every=0), [Term()], seed=1,
                    progress=False, checkpoint_dir=tmp_path)
    assert (tmp_path / "step-000002" / "meta.json").is_file()
    meta, _ = ckpt.load_checkpoint(tmp_path / "step-000002")
    assert meta["step"] == 2
