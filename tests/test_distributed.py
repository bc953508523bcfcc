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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = os.environ.copy()
    env["OMP_NUM_THREADS"] = "1"
    return env


def _launcher() -> list[str]:
    """``accelerate launch`` under this interpreter (not whichever ``accelerate`` script is first on PATH),
    so the workers import the same packages as the test."""
    return [sys.executable, "-m", "accelerate.commands.launch"]


VARIANTS = {
    "lora": {},
    # the methods that need full parameters (EWC's Fisher) or logits (LwF's teacher): every
    # process computes them over the same seeded samples, so they agree without communication
    "ewc-moelora": {"method": "ewc", "method_options": {"samples": 8},
                    "adapter": {"type": "moelora", "r": 4, "alpha": 8, "experts": 2}},
    "lwf": {"method": "lwf", "method_options": {"samples": 4, "batch_size": 2}},
}


WORKER = Path(__file__).with_name("fsdp_worker.py")  # runs several configs in one process (one start-up)
# the last step of a 24-sample task is short (steps of 16: 8 samples, all rank 0's, two micro-batches)
UNEVEN = {"tasks": {"order": ["ImageNet"]}, "data": {"synth": {"n_train": 24}}, "eval": {"zero_shot": False}}


def _split(over: dict, batch_size: int, grad_accum: int) -> dict:
    from coin.config import merge

    return merge(over, {"train": {"batch_size": batch_size, "grad_accum": grad_accum}})


@pytest.fixture(scope="module")
def launched(tmp_path_factory, micro_factory):
    """Every variant (and the uneven last step) once in one process and once in a 2-process
    ``accelerate launch``: each side in one launch, so the imports and the process group start once."""
    from coin.config import merge

    root = tmp_path_factory.mktemp("dist")
    base = micro_factory()
    base["eval"]["batch_size"] = 4
    one = {name: _split(v, 4, 2) for name, v in VARIANTS.items()}  # effective batch 8 in one process
    two = {name: _split(v, 4, 1) for name, v in VARIANTS.items()}  # effective batch 8 = 4 x 2 processes
    one["uneven"] = _split(UNEVEN, 4, 4)  # 16 per step in one process
    two["uneven"] = _split(UNEVEN, 4, 2)  # 16 per step = 4 x 2 x 2 processes
    for side, variants in (("one", one), ("two", two)):
        (root / f"{side}.json").write_text(json.dumps({"base": base, "variants": variants}))
        (root / side).mkdir()
    (root / "two-lora.yaml").write_text(yaml.safe_dump(merge(base, two["lora"])))  # for the CLI relaunch
    p1 = subprocess.run([sys.executable, str(WORKER), "runs", str(root / "one"), str(root / "one.json")],
                        capture_output=True, text=True, timeout=600, env=_env())
    assert p1.returncode == 0, p1.stderr[-3000:]
    launch = [*_launcher(), "--config_file", str(Path(__file__).parents[1] / "configs/accelerate/ddp.yaml"),
              "--num_processes", "2", "--num_machines", "1", "--main_process_port", str(_free_port()),
              str(WORKER), "runs", str(root / "two"), str(root / "two.json")]
    p2 = subprocess.run(launch, capture_output=True, text=True, timeout=600, env=_env())
    assert p2.returncode == 0, p2.stdout[-2000:] + p2.stderr[-4000:]
    assert not list(root.glob("*/*.refused")), "a variant was refused"
    return root


@pytest.fixture(params=list(VARIANTS))
def runs(request, launched):
    """The variant's two folders, as ``root/one`` and ``root/two``."""
    return launched / "one" / request.param, launched / "two" / request.param


def test_two_processes_match_one(runs):
    one, two = runs
    m1 = json.loads((one / "matrix.json").read_text())
    m2 = json.loads((two / "matrix.json").read_text())
    assert m1["tasks"] == m2["tasks"]
    # the same greedy answers, hence the same scores; a cell may differ only if round-off
    # flipped a near-tie, which would show as a mismatch in the predictions compared below
    assert m1["matrix"] == m2["matrix"]
    assert m1["zero_shot"] == m2["zero_shot"]


def test_adapters_agree_to_round_off(runs):
    from safetensors.torch import load_file

    one, two = runs
    for stage in sorted(p.name for p in (one / "stages").iterdir() if p.name != "00-zeroshot"):
        a = load_file(str(one / "stages" / stage / "adapter" / "adapter_model.safetensors"))
        b = load_file(str(two / "stages" / stage / "adapter" / "adapter_model.safetensors"))
        assert a.keys() == b.keys() and a
        for k in a:
            diff = (a[k] - b[k]).abs().max().item()
            assert diff <= 1e-5 * max(1.0, a[k].abs().max().item()), (stage, k, diff)


def test_only_the_main_process_reads_the_weights(launched):
    """#30.8: the other process builds the model empty and receives the weights (no second copy in host
    memory); its adapters and answers still equal one process's (the tests above)."""
    main = [json.loads(x) for x in (launched / "two" / "loaded-rank0.jsonl").read_text().splitlines()]
    other = [json.loads(x) for x in (launched / "two" / "loaded-rank1.jsonl").read_text().splitlines()]
    assert len(main) == len(other) == len(VARIANTS) + 1  # one load per run
    assert all(m["weight_bytes"] > 0 for m in main)
    assert [o["weight_bytes"] for o in other] == [0] * len(other)
    assert [o["params"] for o in other] == [m["params"] for m in main]


def test_two_processes_write_one_set_of_files(runs):
    _, two = runs
    for stage in (two / "stages").iterdir():
        preds = stage / "predictions"
        assert not list(preds.glob("*.partial.jsonl")), f"shards left in {preds}"
        for f in preds.glob("*.jsonl"):
            ids = [json.loads(line)["question_id"] for line in f.read_text().splitlines()]
            assert len(ids) == len(set(ids)) == 8, f  # every test question once, from both shards
    assert (two / "report.md").is_file() and (two / "env.json").is_file()
    assert len((two / "env-history.jsonl").read_text().splitlines()) == 1  # written by the main process only


def test_two_processes_resume_a_lost_stage(launched, tmp_path):
    """Stage 2 lost its evaluation (a kill between its training and its DONE): a relaunch of the
    CLI with two processes skips stage 1, reloads stage 2's adapter, gives the same files, and
    only one process speaks."""
    two = tmp_path / "two"
    shutil.copytree(launched / "two" / "lora", two)
    stage = two / "stages" / "02-Grounding"
    before = json.loads((two / "matrix.json").read_text())
    preds = {p.name: p.read_bytes() for p in (stage / "predictions").glob("*.jsonl")}
    for name in ("DONE", "scores.json"):
        (stage / name).unlink()
    shutil.rmtree(stage / "predictions")
    launch = [*_launcher(), "--config_file", str(Path(__file__).parents[1] / "configs/accelerate/ddp.yaml"),
              "--num_processes", "2", "--num_machines", "1", "--main_process_port", str(_free_port()),
              "-m", "coin.cli", "run", "--config", str(launched / "two-lora.yaml"), "--out", str(two)]
    proc = subprocess.run(launch, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "stage 1/2 ImageNet: done earlier, skipped" in proc.stderr  # progress messages go to stderr
    assert "stage 2/2 Grounding: trained earlier, evaluating" in proc.stderr
    assert proc.stdout.count("report:") == 1  # one process speaks
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


def test_grad_accum_with_an_uneven_last_step_matches_one_process(launched):
    """Two processes with grad_accum 2 on a train set whose last step is short (24 samples, steps
    of 16: the last step's 8 samples are all rank 0's, two micro-batches, and rank 1 has none).
    Every process must run as many micro-batches (and collectives) per step, or gloo aborts and
    NCCL hangs; the result equals one process with the same effective batch."""
    from safetensors.torch import load_file

    one, two = launched / "one" / "uneven", launched / "two" / "uneven"
    stage = "stages/01-ImageNet"
    assert json.loads((one / stage / "train.json").read_text())["steps"] == 2
    a = load_file(str(one / stage / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(two / stage / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and a
    for k in a:
        assert (a[k] - b[k]).abs().max().item() <= 1e-5 * max(1.0, a[k].abs().max().item()), k
    m1 = json.loads((one / "matrix.json").read_text())
    m2 = json.loads((two / "matrix.json").read_text())
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
