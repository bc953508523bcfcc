"""Two processes under ``accelerate launch`` (gloo on the CPU) train and evaluate like one.

The same effective batch is split differently: one process runs micro-batches of 4 with
``grad_accum 2``; two processes run one micro-batch of 4 each. Each micro-batch's loss is
weighted by its share of the step's samples and DDP averages over processes, so the
gradients are the same sums taken in another order: the adapters agree to float
round-off, and greedy answers (an argmax over the same logits up to that round-off) agree.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None
                                and shutil.which("accelerate") is None, reason="accelerate launcher not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = os.environ.copy()
    env["OMP_NUM_THREADS"] = "1"
    return env


def _launcher() -> str:
    local = Path(sys.executable).parent / "accelerate"
    return str(local) if local.is_file() else shutil.which("accelerate")


VARIANTS = {
    "lora": {},
    # the methods that need full parameters (EWC's Fisher) or logits (LwF's teacher): every
    # process computes them over the same seeded samples, so they agree without communication
    "ewc-moelora": {"method": "ewc", "method_options": {"samples": 8},
                    "adapter": {"type": "moelora", "r": 4, "alpha": 8, "experts": 2}},
    "lwf": {"method": "lwf", "method_options": {"samples": 4, "batch_size": 2}},
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def runs(request, tmp_path_factory, micro_factory):
    root = tmp_path_factory.mktemp(f"dist-{request.param}")
    one, two = micro_factory(), micro_factory()
    for cfg in (one, two):
        cfg.update(VARIANTS[request.param])
    one["train"].update(batch_size=4, grad_accum=2)  # effective batch 8 in one process
    two["train"].update(batch_size=4, grad_accum=1)  # effective batch 8 = 4 x 2 processes
    for name, cfg in (("one", one), ("two", two)):
        cfg["eval"]["batch_size"] = 4
        (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    base = [sys.executable, "-m", "coin.cli", "run", "--quiet"]
    p1 = subprocess.run(base + ["--config", str(root / "one.yaml"), "--out", str(root / "one")],
                        capture_output=True, text=True, timeout=300, env=_env())
    assert p1.returncode == 0, p1.stderr[-3000:]
    launch = [_launcher(), "launch", "--config_file", str(Path(__file__).parents[1] / "configs/accelerate/ddp.yaml"),
              "--num_processes", "2", "--num_machines", "1", "--main_process_port", str(_free_port()),
              "-m", "coin.cli", "run", "--quiet", "--config", str(root / "two.yaml"), "--out", str(root / "two")]
    p2 = subprocess.run(launch, capture_output=True, text=True, timeout=300, env=_env())
    assert p2.returncode == 0, p2.stdout[-2000:] + p2.stderr[-4000:]
    return root, p2


def test_two_processes_match_one(runs):
    root, _ = runs
    m1 = json.loads((root / "one" / "matrix.json").read_text())
    m2 = json.loads((root / "two" / "matrix.json").read_text())
    assert m1["tasks"] == m2["tasks"]
    # the same greedy answers, hence the same scores; a cell may differ only if round-off
    # flipped a near-tie, which would show as a mismatch in the predictions compared below
    assert m1["matrix"] == m2["matrix"]
    assert m1["zero_shot"] == m2["zero_shot"]


def test_adapters_agree_to_round_off(runs):
    from safetensors.torch import load_file

    root, _ = runs
    for stage in sorted(p.name for p in (root / "one" / "stages").iterdir() if p.name != "00-zeroshot"):
        a = load_file(str(root / "one" / "stages" / stage / "adapter" / "adapter_model.safetensors"))
        b = load_file(str(root / "two" / "stages" / stage / "adapter" / "adapter_model.safetensors"))
        assert a.keys() == b.keys() and a
        for k in a:
            diff = (a[k] - b[k]).abs().max().item()
            assert diff <= 1e-5 * max(1.0, a[k].abs().max().item()), (stage, k, diff)


def test_two_processes_write_one_set_of_files(runs):
    root, proc = runs
    two = root / "two"
    for stage in (two / "stages").iterdir():
        preds = stage / "predictions"
        assert not list(preds.glob("*.partial.jsonl")), f"shards left in {preds}"
        for f in preds.glob("*.jsonl"):
            ids = [json.loads(line)["question_id"] for line in f.read_text().splitlines()]
            assert len(ids) == len(set(ids)) == 8, f  # every test question once, from both shards
    assert (two / "report.md").is_file() and (two / "env.json").is_file()
    assert len((two / "env-history.jsonl").read_text().splitlines()) == 1  # written by the main process only
    assert proc.stdout.count("report:") == 1  # one process speaks


def test_two_processes_resume_a_lost_stage(runs, request):
    """Stage 2 lost its evaluation (a kill between its training and its DONE): a relaunch with
    two processes skips stage 1, reloads stage 2's adapter and gives the same files."""
    root, _ = runs
    if not request.node.name.endswith("[lora]"):
        pytest.skip("one variant is enough for the resume path")
    two = root / "two"
    stage = two / "stages" / "02-Grounding"
    before = json.loads((two / "matrix.json").read_text())
    preds = {p.name: p.read_bytes() for p in (stage / "predictions").glob("*.jsonl")}
    for name in ("DONE", "scores.json"):
        (stage / name).unlink()
    shutil.rmtree(stage / "predictions")
    launch = [_launcher(), "launch", "--config_file", str(Path(__file__).parents[1] / "configs/accelerate/ddp.yaml"),
              "--num_processes", "2", "--num_machines", "1", "--main_process_port", str(_free_port()),
              "-m", "coin.cli", "run", "--config", str(root / "two.yaml"), "--out", str(two)]
    proc = subprocess.run(launch, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "stage 1/2 ImageNet: done earlier, skipped" in proc.stderr  # progress messages go to stderr
    assert "stage 2/2 Grounding: trained earlier, evaluating" in proc.stderr
    assert json.loads((two / "matrix.json").read_text())["matrix"] == before["matrix"]
    assert {p.name: p.read_bytes() for p in (stage / "predictions").glob("*.jsonl")} == preds


def test_sharded_launches_are_refused_with_a_message():
    from accelerate.utils import DistributedType

    from coin.engine.dist import UnsupportedLaunch, check_supported

    for ok in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
        check_supported(ok)
    for bad in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        with pytest.raises(UnsupportedLaunch, match="ddp.yaml"):
            check_supported(bad)


def test_grad_accum_with_an_uneven_last_step_matches_one_process(tmp_path, micro_factory):
    """Two processes with grad_accum 2 on a train set whose last step is short (24 samples, steps
    of 16: the last step's 8 samples are all rank 0's, two micro-batches, and rank 1 has none).
    Every process must run as many micro-batches (and collectives) per step, or gloo aborts and
    NCCL hangs; the result equals one process with the same effective batch."""
    one, two = micro_factory(), micro_factory()
    for cfg in (one, two):
        cfg["tasks"]["order"] = ["ImageNet"]
        cfg["data"]["synth"]["n_train"] = 24
        cfg["eval"].update(batch_size=4, zero_shot=False)
    one["train"].update(batch_size=4, grad_accum=4)  # 16 per step in one process
    two["train"].update(batch_size=4, grad_accum=2)  # 16 per step = 4 x 2 x 2 processes
    for name, cfg in (("one", one), ("two", two)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    p1 = subprocess.run([sys.executable, "-m", "coin.cli", "run", "--quiet", "--config", str(tmp_path / "one.yaml"),
                         "--out", str(tmp_path / "one")], capture_output=True, text=True, timeout=300, env=_env())
    assert p1.returncode == 0, p1.stderr[-3000:]
    launch = [_launcher(), "launch", "--config_file", str(Path(__file__).parents[1] / "configs/accelerate/ddp.yaml"),
              "--num_processes", "2", "--num_machines", "1", "--main_process_port", str(_free_port()),
              "-m", "coin.cli", "run", "--quiet", "--config", str(tmp_path / "two.yaml"), "--out", str(tmp_path / "two")]
    p2 = subprocess.run(launch, capture_output=True, text=True, timeout=300, env=_env())
    assert p2.returncode == 0, p2.stdout[-2000:] + p2.stderr[-4000:]
    from safetensors.torch import load_file

    stage = "stages/01-ImageNet"
    assert json.loads((tmp_path / "one" / stage / "train.json").read_text())["steps"] == 2
    a = load_file(str(tmp_path / "one" / stage / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "two" / stage / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and a
    for k in a:
        assert (a[k] - b[k]).abs().max().item() <= 1e-5 * max(1.0, a[k].abs().max().item()), k
    m1 = json.loads((tmp_path / "one" / "matrix.json").read_text())
    m2 = json.loads((tmp_path / "two" / "matrix.json").read_text())
    assert m1["matrix"] == m2["matrix"]


def test_every_process_runs_as_many_micro_batches_per_step():
    from coin.engine.loader import micro_batches

    chunk = list(range(40))  # the short last step of the issue: 40 samples, 16 per process's share
    for world, per_rank in ((2, 32), (4, 32), (3, 16)):
        plans = [micro_batches(chunk, r, per_rank, 16) for r in range(world)]
        assert len({len(p) for p in plans}) == 1, [len(p) for p in plans]
        real = [s for p in plans for part, w in p if w for s in part]
        assert real == chunk  # every sample once, in order, weighted one; padding weighted zero
        assert all(part == chunk[:1] for p in plans for part, w in p if not w)
