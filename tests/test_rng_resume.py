"""Bit-exact resume: a checkpoint restores every generator a step may draw from (torch CPU and
CUDA, Python's ``random``, NumPy's global one), and the loader's workers draw the same in a
resumed stage as in an uninterrupted one."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from coin.config import TrainConfig
from coin.engine import checkpoint as ckpt
from coin.engine.loader import load_batches
from coin.engine.train import train_stage
from coin.methods import StageContext
from rng_worker import Draws, fresh, seed, weights
from tinyvlm import tiny_samples


def _draw() -> tuple:
    return (random.random(), random.gauss(0, 1), tuple(np.random.rand(3)), float(np.random.randn()),
            tuple(torch.rand(3).tolist()))


def _tiny_checkpoint(folder):
    """A checkpoint of one small layer, as ``train_stage`` writes one; returns its path."""
    layer = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    named = dict(layer.named_parameters())
    return ckpt.save_checkpoint(folder, 3, named, opt, sched, free_space_check=False), named, opt, sched


def _restore(path, named, opt, sched) -> int:
    meta, tensors = ckpt.load_checkpoint(path)
    return ckpt.restore(meta, tensors, named, opt, sched)


def test_checkpoint_round_trip_restores_random_numpy_and_torch(tmp_path):
    seed(11)
    _draw()  # its gaussians leave a cached second one in both (gauss_next, has_gauss)
    path, named, opt, sched = _tiny_checkpoint(tmp_path)
    after_save = _draw()
    meta = json.loads((path / "meta.json").read_text())  # plain JSON: nothing is unpickled on restore
    assert {"torch", "python", "numpy"} <= set(meta["rng"])
    assert meta["rng"]["python"]["gauss_next"] is not None and meta["rng"]["numpy"]["has_gauss"] == 1

    seed(99)  # a fresh process: every generator somewhere else
    _draw()
    assert _restore(path, named, opt, sched) == 3
    assert _draw() == after_save


@pytest.mark.slow
def test_interrupted_stage_whose_method_draws_resumes_to_the_sameweights(tmp_path):
    samples = tiny_samples(tmp_path, "ColourA", 12)
    cfg = TrainConfig(batch_size=2, lr=1e-3, checkpoint_every=1, num_workers=0)

    def ctx(vlm):
        return StageContext(vlm=vlm, task="ColourA", stage=0, tasks=["ColourA"])

    ref = fresh()
    seed(5)
    train_stage(ctx(ref), samples, cfg, [Draws()], seed=1, progress=False)

    vlm = fresh()
    seed(5)
    with pytest.raises(KeyboardInterrupt):
        train_stage(ctx(vlm), samples, cfg, [Draws(stop_at=5)], seed=1, progress=False, checkpoint_dir=tmp_path / "c")
    assert (tmp_path / "c" / "step-000004").is_dir()

    logs: list[str] = []
    resumed = fresh()
    seed(5)  # a restarted process seeds everything from the run's seed again
    train_stage(ctx(resumed), samples, cfg, [Draws()], seed=1, progress=False, checkpoint_dir=tmp_path / "c",
                log=logs.append)
    assert "resuming training at step 4/6" in "\n".join(logs)
    a, b = weights(ref), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed stage drew other numbers than an uninterrupted one"


class _FakeCuda:
    """Two CUDA devices' generators, recorded (no GPU needed)."""

    def __init__(self, monkeypatch, devices: int = 2) -> None:
        self.states = [torch.arange(16, dtype=torch.uint8) + 16 * d for d in range(devices)]
        self.set_calls: list[list[torch.Tensor]] = []
        self.get_calls = 0
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: devices)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", self.get)
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.set_calls.append)

    def get(self):
        self.get_calls += 1
        return [s.clone() for s in self.states]


def test_every_cuda_device_state_is_saved_and_restored(tmp_path, monkeypatch):
    cuda = _FakeCuda(monkeypatch)
    path, named, opt, sched = _tiny_checkpoint(tmp_path)
    assert cuda.get_calls == 1
    meta = json.loads((path / "meta.json").read_text())
    assert meta["rng"]["cuda"] == [s.tolist() for s in cuda.states]

    _restore(path, named, opt, sched)
    assert len(cuda.set_calls) == 1
    restored = cuda.set_calls[0]
    assert len(restored) == 2
    assert all(r.dtype == torch.uint8 and torch.equal(r, s) for r, s in zip(restored, cuda.states))

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # fewer devices now: the ones there are
    _restore(path, named, opt, sched)
    assert len(cuda.set_calls[1]) == 1 and torch.equal(cuda.set_calls[1][0], cuda.states[0])

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # restored on a CPU: the CUDA states are unused
    _restore(path, named, opt, sched)
    assert len(cuda.set_calls) == 2


def test_checkpoint_without_the_new_generators_still_loads(tmp_path):
    seed(7)
    path, named, opt, sched = _tiny_checkpoint(tmp_path)
    torch_after_save = torch.rand(3)
    meta = json.loads((path / "meta.json").read_text())
    meta["rng"] = {"torch": meta["rng"]["torch"]}  # what checkpoints held before: torch's CPU state only
    (path / "meta.json").write_text(json.dumps(meta))

    seed(8)
    py, npy = random.getstate(), np.random.get_state()
    assert _restore(path, named, opt, sched) == 3
    assert torch.equal(torch.rand(3), torch_after_save)
    assert random.getstate() == py  # left as they were
    now = np.random.get_state()
    assert now[0] == npy[0] and np.array_equal(now[1], npy[1]) and now[2:] == npy[2:]


def _draws_in_worker(part: list) -> dict:
    return {"part": torch.tensor(part), "python": torch.tensor([random.random()], dtype=torch.float64),
            "numpy": torch.from_numpy(np.random.rand(2)), "torch": torch.rand(2)}


def test_loader_workers_draw_the_same_when_the_stream_starts_part_way():
    """A resumed stage's loader starts at the checkpoint's micro-batch: each micro-batch's draws in a
    worker depend on the seed and its place in the stage only, not on which worker builds it."""
    parts = [[k] for k in range(6)]
    whole = list(load_batches(parts, _draws_in_worker, num_workers=2, prefetch=1, seed="1/0"))
    tail = list(load_batches(parts[2:], _draws_in_worker, num_workers=1, prefetch=1, seed="1/0", keys=range(2, 6)))
    for a, b in zip(whole[2:], tail):
        assert all(torch.equal(a[k], b[k]) for k in a)
    other = list(load_batches(parts, _draws_in_worker, num_workers=2, prefetch=1, seed="1/1"))  # another stage
    assert not torch.equal(whole[0]["torch"], other[0]["torch"])
    assert len({float(b["python"]) for b in whole}) == 6  # no two micro-batches draw alike


@pytest.mark.slow
def test_every_process_resumes_with_its_own_generators(tmp_path):
    """Several processes: each draws its own numbers (dropout on its own rows, a method's hooks), so a
    checkpoint keeps every process's generators and each restores its own. Restoring the main process's
    on every one gave the others another stream after a resume, and other weights."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
           str(Path(__file__).with_name("rng_worker.py")), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-5000:]
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert any("resuming training at step 2/4" in line for line in got["log"]) or rank > 0, got["log"]
        assert got["equal"], f"process {rank} resumed to other weights (max difference {got['max_diff']:g})"


def test_a_process_takes_its_own_generators_only_from_a_checkpoint_of_as_many_processes():
    main, other = {"torch": [1]}, {"torch": [2]}
    rng = ckpt.with_processes([main, other])
    assert rng["torch"] == [1] and rng["processes"] == [main, other]  # one process's reader finds the main's
    assert ckpt.of_process(rng, 1, 2) == other and ckpt.of_process(rng, 0, 2) == main
    assert ckpt.of_process(rng, 1, 3)["torch"] == [1]  # relaunched on 3 processes: the main's, as before
    assert ckpt.with_processes([main]) == main and ckpt.of_process(main, 0, 1) == main  # one process: unchanged
