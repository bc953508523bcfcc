"""Checkpoints that do not stall the processes (#30, point 7; ``coin.engine.checkpoint.AsyncCheckpointer``).

A periodic checkpoint is a copy to host memory, then a write in a background thread with the same
atomic folder and checksum; the copy does not move when training moves on; a write error is raised
on the training thread; ``train.checkpoint_minutes`` checkpoints by wall time as well as by steps.
"""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest
import torch

import coin.engine.checkpoint as ckpt
from coin.config import ConfigError
from coin.config_load import from_dict


def _state():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(4, 3))
    opt = torch.optim.AdamW([p], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)
    p.grad = torch.ones_like(p)
    opt.step()
    return {"w": p}, opt, sched


def test_the_write_runs_in_the_background_and_holds_the_state_of_its_submit(tmp_path, monkeypatch):
    named, opt, sched = _state()
    gate, started = threading.Event(), threading.Event()
    real = ckpt.atomic_write_bytes

    def slow(path, data):  # the disk is slow: the write waits until the test lets it go
        started.set()
        assert gate.wait(30)
        return real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", slow)
    writer = ckpt.AsyncCheckpointer(tmp_path / "ck")
    before = named["w"].detach().clone()
    t0 = time.time()
    writer.submit(ckpt.snapshot(1, named, opt, sched))
    assert time.time() - t0 < 5 and started.wait(10)  # submit returned while the write waits
    assert not (tmp_path / "ck" / "step-000001").exists()  # not there until complete
    with torch.no_grad():  # training goes on and changes the weights and the optimizer state
        named["w"].add_(100.0)
    named["w"].grad = torch.ones_like(named["w"])
    opt.step()
    gate.set()
    writer.wait()
    meta, tensors = ckpt.load_checkpoint(tmp_path / "ck" / "step-000001")  # checksum verified on load
    assert meta["step"] == 1 and torch.equal(tensors["param.w"], before)


def test_a_write_error_is_raised_on_the_training_thread(tmp_path, monkeypatch):
    named, opt, sched = _state()

    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full)
    writer = ckpt.AsyncCheckpointer(tmp_path / "ck")
    writer.submit(ckpt.snapshot(1, named, opt, sched))
    with pytest.raises(OSError, match="No space left"):
        writer.wait()
    assert not list((tmp_path / "ck").glob("step-*"))
    writer.wait()  # raised once


def test_two_writes_never_overlap_and_old_ones_are_pruned(tmp_path):
    named, opt, sched = _state()
    writer = ckpt.AsyncCheckpointer(tmp_path / "ck", keep=2)
    for step in (1, 2, 3):
        writer.submit(ckpt.snapshot(step, named, opt, sched))
    writer.wait()
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["step-000002", "step-000003"]


def test_a_run_checkpoints_by_wall_time_and_resumes(micro_config, tmp_path, monkeypatch):
    """``train.checkpoint_minutes``: with steps off (checkpoint_every 0) and a clock that jumps 2 minutes
    per step, every step of a 1-minute interval is checkpointed in the background; the stage ends with
    its checkpoints written (and then removed with the stage's DONE), and the matrix is the one of a run
    without checkpoints."""
    import coin.engine.train as train
    from coin.engine.run import run

    written: list[int] = []
    real_submit = ckpt.AsyncCheckpointer.submit

    def submit(self, snap):
        written.append(snap["meta"]["step"])
        return real_submit(self, snap)

    monkeypatch.setattr(ckpt.AsyncCheckpointer, "submit", submit)
    micro_config["tasks"]["order"] = ["ImageNet"]
    micro_config["eval"]["zero_shot"] = False
    plain = run(from_dict(micro_config), tmp_path / "plain", progress=False, log=lambda *a, **k: None)
    clock = itertools.count(0, 120)  # two minutes pass with every reading
    monkeypatch.setattr(train, "_now", lambda: float(next(clock)))
    micro_config["train"].update(checkpoint_every=0, checkpoint_minutes=1)
    timed = run(from_dict(micro_config), tmp_path / "timed", progress=False, log=lambda *a, **k: None)
    steps = json.loads((tmp_path / "plain" / "stages" / "01-ImageNet" / "train.json").read_text())["steps"]
    assert steps >= 3 and written == list(range(1, steps))  # every step but the last (the stage's end is none)
    assert timed["matrix"] == plain["matrix"]
    assert not (tmp_path / "timed" / "stages" / "01-ImageNet" / "checkpoints").exists()  # removed once DONE


@pytest.mark.parametrize("value", [0, -1, "ten", True])
def test_checkpoint_minutes_is_checked(micro_config, value):
    micro_config["train"]["checkpoint_minutes"] = value
    with pytest.raises(ConfigError, match="checkpoint_minutes"):
        from_dict(micro_config)
