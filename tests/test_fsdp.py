"""``dist.strategy: fsdp``: two CPU processes (gloo) with the frozen base sharded train and evaluate like one.

The trainable weights stay whole on every process and their gradients are averaged as DDP
averages them, so one process with ``batch_size 4, grad_accum 2`` and two sharded processes
with ``batch_size 4`` take the same optimiser steps, summed in another order: adapters agree to
float round-off (here they come out equal) and greedy answers are the same. Every registered
method either runs so or is refused, by name, before it trains. Launched with torchrun and with
``accelerate launch --config_file configs/accelerate/fsdp.yaml``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("fsdp_worker.py")
# small stores for the methods that sample from the data (the defaults are the paper's 100s and 1000s)
OPTIONS = {"ewc": {"samples": 8}, "lwf": {"samples": 4, "batch_size": 2}, "replay": {"samples": 4},
           "mrlora": {"router_epochs": 2}, "proglora": {"samples": 8}}
TOLERANCE = 0.10  # memory estimate vs measured peak tensor bytes (measured: within 3%)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="gloo process groups on Linux")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launcher() -> list[str]:
    """``accelerate launch`` under this interpreter (not whichever ``accelerate`` script is first on PATH),
    so the workers import the same packages as the test."""
    return [sys.executable, "-m", "accelerate.commands.launch"]


def _env() -> dict:
    env = os.environ.copy()
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    return env


def _torchrun(n: int, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n), "--master-port",
           str(_free_port()), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-5000:]
    return proc


def _variants() -> dict[str, dict]:
    from coin.methods import METHODS

    out = {name: {"method": name, "method_options": OPTIONS.get(name, {})} for name in METHODS.names()}
    # MoELoRA's gate, under the method that needs whole gradients (EWC's Fisher)
    out["ewc-moelora"] = {**out["ewc"], "adapter": {"type": "moelora", "r": 4, "alpha": 8, "experts": 2}}
    return out


def _refused(variant: dict, sharded: dict) -> bool:
    """Whether the engine refuses the variant's method under FSDP, or the method's own config check does."""
    from coin.config import ConfigError, merge
    from coin.config_load import from_dict
    from coin.engine.fsdp import refusal
    from coin.methods import METHODS

    if refusal(METHODS.get(variant["method"]), variant["method"]) is not None:
        return True
    try:
        from_dict(merge(sharded, variant))
    except ConfigError:
        return True
    return False


@pytest.fixture(scope="module")
def method_runs(tmp_path_factory, micro_factory):
    """Every variant once in one process and once sharded over two (each set in one launch)."""
    root = tmp_path_factory.mktemp("fsdp-methods")
    base = micro_factory()
    base["train"].update(batch_size=4, grad_accum=2)  # effective batch 8 in one process
    base["eval"]["batch_size"] = 4
    base["log"] = {"trackers": []}
    sharded = json.loads(json.dumps(base))
    sharded["train"]["grad_accum"] = 1  # 4 x 2 processes
    sharded["dist"] = {"strategy": "fsdp"}
    variants = _variants()
    # a method the engine refuses (or whose own check refuses fsdp) is not run alone: nothing to compare
    alone = {k: v for k, v in variants.items() if not _refused(v, sharded)}
    (root / "one.json").write_text(json.dumps({"base": base, "variants": alone}))
    (root / "two.json").write_text(json.dumps({"base": sharded, "variants": variants}))
    (root / "one").mkdir()
    (root / "two").mkdir()
    one = subprocess.run([sys.executable, str(WORKER), "runs", root / "one", root / "one.json"], capture_output=True,
                         text=True, timeout=600, env=_env())
    assert one.returncode == 0, one.stderr[-5000:]
    _torchrun(2, WORKER, "runs", root / "two", root / "two.json", timeout=600)
    return root, variants, alone


def test_every_method_runs_sharded_or_is_refused_by_name(method_runs):
    root, variants, alone = method_runs
    ran = []
    for name, variant in variants.items():
        refused = root / "two" / f"{name}.refused"
        if name not in alone:
            assert refused.is_file(), f"{name} is refused by its declaration but was not refused"
            assert f"'{variant['method']}'" in refused.read_text()
            assert not (root / "two" / name / "stages").exists(), f"{name} started before it was refused"
            continue
        assert not refused.is_file(), refused.read_text() if refused.is_file() else ""
        m1 = json.loads((root / "one" / name / "matrix.json").read_text())
        m2 = json.loads((root / "two" / name / "matrix.json").read_text())
        assert m1["matrix"] == m2["matrix"] and m1["zero_shot"] == m2["zero_shot"], name
        ran.append(name)
    assert {"sequential", "ewc", "lwf", "replay", "multitask", "zeroshot", "ewc-moelora"} <= set(ran)


def test_sharded_runs_give_the_single_process_adapters_and_answers(method_runs):
    """Same adapters to round-off, and every stage's answers the same, question by question."""
    from safetensors.torch import load_file

    root, _, alone = method_runs
    for name in alone:
        stages = sorted(p.name for p in (root / "one" / name / "stages").iterdir())
        for stage in stages:
            one, two = root / "one" / name / "stages" / stage, root / "two" / name / "stages" / stage
            for f in (one / "predictions").glob("*.jsonl"):
                a = [json.loads(x)["output"] for x in f.read_text().splitlines()]
                b = [json.loads(x)["output"] for x in (two / "predictions" / f.name).read_text().splitlines()]
                assert a == b, (name, stage, f.name)
            adapter = one / "adapter" / "adapter_model.safetensors"
            if adapter.is_file():
                a, b = load_file(str(adapter)), load_file(str(two / "adapter" / "adapter_model.safetensors"))
                assert a.keys() == b.keys() and a
                for k in a:
                    assert (a[k] - b[k]).abs().max().item() <= 1e-5 * max(1.0, a[k].abs().max().item()), (name, k)


def test_sharded_processes_receive_their_weights_from_the_main_one(method_runs):
    """#30.8: only the main process reads the weights; the other builds the model empty and receives just
    its shards (the sharded runs still equal the single-process ones: the tests above)."""
    root, _, _ = method_runs
    main = [json.loads(x) for x in (root / "two" / "loaded-rank0.jsonl").read_text().splitlines()]
    other = [json.loads(x) for x in (root / "two" / "loaded-rank1.jsonl").read_text().splitlines()]
    assert main and len(main) == len(other)
    assert all(m["weight_bytes"] > 0 for m in main)
    assert [o["weight_bytes"] for o in other] == [0] * len(other)


def test_sharded_processes_keep_a_share_of_the_optimizer_moments(method_runs):
    """#30.8: under FSDP each process keeps AdamW's moments for its share of the trainable weights only
    (dist.shard_optimizer): the two processes' state adds up to the single process's, each holds less, and
    the runs still give the single-process adapters (the test above)."""
    root, _, alone = method_runs

    def held(folder: str, rank: int) -> dict:
        rows = (root / folder / f"optimizer-rank{rank}.jsonl").read_text().splitlines()
        return {r["variant"]: r["state_bytes"] for r in map(json.loads, rows)}

    one, two = held("one", 0), [held("two", 0), held("two", 1)]
    checked = set()
    for name in alone:
        assert len(one[name]) == len(two[0][name]) == len(two[1][name]), name
        for stage, whole in enumerate(one[name]):
            shares = [two[0][name][stage], two[1][name][stage]]
            assert sum(shares) == whole, (name, stage, shares, whole)
            if whole:
                assert max(shares) < whole, (name, stage, shares, whole)
                checked.add(name)
    assert {"sequential", "ewc", "lwf", "replay", "ewc-moelora"} <= checked


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp-units")
    _torchrun(2, WORKER, "units", out)
    return out


def test_sharded_generation_gives_the_unsharded_answers(units):
    """Two processes with 5 and 2 questions (3 and 1 batches, different numbers of decode steps): the
    lockstep pairs their forwards, and every answer is the one the unsharded model gave in one batch."""
    for rank in (0, 1):
        r = json.loads((units / f"units-rank{rank}.json").read_text())
        assert len(set(r["reference"])) == len(r["reference"])  # distinct answers: a mix-up would show
        assert r["answers"] and all(r["reference"][int(i)] == a for i, a in r["answers"].items())


def test_sharded_qwen2_vl_generation_with_uneven_shards(units):
    """transformers' ``generate`` under FSDP (Qwen2-VL; also ``hf`` and LLaVA's ``decoding: hf``): with
    5 and 2 questions per process it must neither deadlock nor mismatch collectives (``synced_gpus``
    off, coin's lockstep pairing the forwards), and give the unsharded answers."""
    for rank, n in ((0, 5), (1, 2)):
        r = json.loads((units / f"qwen-rank{rank}.json").read_text())
        assert len(r["answers"]) == n and r["answers"] == r["reference"]


def test_sharded_fisher_equals_the_unsharded_one(units):
    r = json.loads((units / "units-rank0.json").read_text())
    assert r["fisher_max"] > 0 and r["fisher_diff"] <= 1e-6 * r["fisher_max"]


def test_memory_estimate_matches_measured_peak(units):
    """The dry run's formula (coin.engine.memory) against the peak of live tensor bytes of a training step,
    per process, under DDP and FSDP, with and without activation checkpointing, within ``TOLERANCE``."""
    from coin.engine.memory import arch_from_config, estimate

    m = json.loads((units / "memory-rank0.json").read_text())
    arch = arch_from_config(m["config"])
    for name in ("ddp", "fsdp", "fsdp-checkpointing"):
        e = estimate(arch, r=8, batch=m["batch"], tokens=m["tokens"], weight_bytes=4, act_bytes=4, processes=2,
                     checkpointing=name.endswith("checkpointing"))[name.split("-")[0]]["total"]
        assert abs(e - m[name]) <= TOLERANCE * m[name], (name, e, m[name])
    assert m["fsdp-checkpointing"] < 0.75 * m["fsdp"]  # checkpointing shows in the measurement, as estimated


def test_dry_run_prints_the_memory_plan(capsys):
    from coin.cli import main

    assert main(["run", "--dry-run", "--set", "adapter.r=8", "--set", "dist.strategy=fsdp"]) == 0
    out = capsys.readouterr().out
    assert "memory per GPU (estimate" in out and "FSDP" in out and "DDP" in out
    assert "2 GPUs, checkpointing on" in out and "8 GPUs, checkpointing off" in out


def test_thirteen_b_lora_128_fits_four_24_gb_gpus_only_sharded():
    """The issue's question, from LLaVA-1.5-13B's config sizes: with LoRA r 128, bf16, checkpointing and 4 per
    GPU, FSDP over 4 GPUs fits 24 GB (with 1 GiB of CUDA context) and DDP does not."""
    from coin.engine.memory import GIB, Arch, estimate

    arch = Arch(hidden=5120, ffn=13824, layers=40, heads=40, kv_heads=40, vocab=32064, vision_width=1024,
                vision_ffn=4096, vision_layers=24, image_size=336, patch=14)
    e = estimate(arch, r=128, batch=4, tokens=680, weight_bytes=2, act_bytes=2, processes=4, checkpointing=True)
    assert 12.5e9 < e["params"]["frozen"] < 13.8e9 and 4.5e8 < e["params"]["trainable"] < 5.5e8
    assert e["fsdp"]["total"] + GIB < 24e9 < e["ddp"]["total"]


def test_sharded_launch_refuses_accelerates_plugin_and_deepspeed():
    from accelerate.utils import DistributedType

    from coin.engine.dist import UnsupportedLaunch, check_supported

    with pytest.raises(UnsupportedLaunch, match="dist.strategy: fsdp"):
        check_supported(DistributedType.FSDP)
    with pytest.raises(UnsupportedLaunch, match="DeepSpeed.*dist.strategy: fsdp"):
        check_supported(DistributedType.DEEPSPEED)


@pytest.mark.slow
def test_sigkill_mid_stage_then_relaunch_with_three_processes(tmp_path, micro_factory):
    """A sharded run killed mid-stage (SIGKILL to every process) continues from its checkpoint under three
    processes (grad_accum 3 -> 2 keeps the effective batch, 12) and finishes with the single-process run's
    matrix and adapters. (The checkpoint holds the replicated adapter only, as under DDP: a relaunch on
    the same two processes reads it the same way, and tests/test_resume.py kills and resumes that path.)"""
    from safetensors.torch import load_file

    from coin.config_load import from_dict
    from coin.engine.run import run

    cfg = micro_factory()
    cfg["data"]["synth"]["n_train"] = 48  # 4 steps of 12 per stage
    cfg["train"].update(batch_size=2, checkpoint_every=1)
    cfg["eval"]["batch_size"] = 4
    cfg["log"] = {"trackers": []}
    single = json.loads(json.dumps(cfg))
    single["train"]["grad_accum"] = 6
    reference = run(from_dict(single), tmp_path / "reference", progress=False, log=lambda m: None)
    cfg["train"]["grad_accum"] = 3
    cfg["dist"] = {"strategy": "fsdp"}
    (tmp_path / "fsdp.yaml").write_text(yaml.safe_dump(cfg))
    killed = tmp_path / "killed"
    launch = [*_launcher(), "--config_file", str(ROOT / "configs/accelerate/fsdp.yaml"), "--num_processes",
              "2", "--num_machines", "1", "--main_process_port", str(_free_port()), "-m", "coin.cli", "run",
              "--config", str(tmp_path / "fsdp.yaml")]
    proc = subprocess.Popen(launch + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env(), start_new_session=True)
    mark = killed / "stages" / "01-ImageNet" / "checkpoints" / "step-000002"
    deadline = time.time() + 300
    while proc.poll() is None and not mark.is_dir() and time.time() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed mid-stage"
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both of its processes
    proc.wait()
    shutil.copytree(killed, tmp_path / "three")
    three = _torchrun(3, "-m", "coin.cli", "run", "--config", tmp_path / "fsdp.yaml", "--out", tmp_path / "three",
                      "--set", "train.grad_accum=2")
    for proc, name in ((three, "three"),):
        assert "stage 1 (ImageNet): resuming training at step" in proc.stderr, name
        out = tmp_path / name
        assert json.loads((out / "matrix.json").read_text())["matrix"] == reference["matrix"], name
        for stage in ("01-ImageNet", "02-Grounding"):
            a = load_file(str(tmp_path / "reference" / "stages" / stage / "adapter" / "adapter_model.safetensors"))
            b = load_file(str(out / "stages" / stage / "adapter" / "adapter_model.safetensors"))
            for k in a:
                assert (a[k] - b[k]).abs().max().item() <= 1e-5 * max(1.0, a[k].abs().max().item()), (name, k)
    assert "grad_accum: 2" in (tmp_path / "three" / "config.yaml").read_text()  # the folder records the new split


@pytest.mark.slow
def test_bench_fsdp_case_runs_on_two_cpu_processes():
    """``bench_gpu.py --fsdp`` (LLaVA-1.5-13B, LoRA r 128; here ``--small``) builds on the meta device, shards,
    trains and generates in lockstep, and prints each process's figures beside the estimate."""
    proc = _torchrun(2, ROOT / "bench" / "bench_gpu.py", "--fsdp", "--small", "--device", "cpu", "--steps", "1",
                     "--new-tokens", "2")
    assert "dist.strategy fsdp over 2 processes" in proc.stdout
    for rank in (0, 1):
        line = next(x for x in proc.stdout.splitlines() if x.startswith(f"rank {rank}:"))
        for column in ("steps/s", "tokens/s", "peak GiB", "estimate GiB", "DDP would need", "generation s/batch"):
            assert column in line, (rank, column)


def test_a_folder_continues_on_another_process_count_only_with_the_same_effective_batch(tmp_path, monkeypatch):
    """grad_accum may change with the process count when batch x accumulation x processes stays what the
    folder's last launch had (its env-history.jsonl records the count): the seeded plan of steps is the same."""
    from coin.config_load import from_dict
    from coin.engine.run_folder import RunFolderError, prepare_run_dir

    def cfg(accum: int):
        return from_dict({"train": {"batch_size": 2, "grad_accum": accum}})

    monkeypatch.setenv("WORLD_SIZE", "2")
    prepare_run_dir(tmp_path, cfg(3))
    (tmp_path / "env-history.jsonl").write_text(json.dumps({"processes": 2}) + "\n")
    with pytest.raises(RunFolderError, match="grad_accum"):
        prepare_run_dir(tmp_path, cfg(2))  # 2 x 2 x 2 = 8, not 12
    monkeypatch.setenv("WORLD_SIZE", "3")
    prepare_run_dir(tmp_path, cfg(2))  # 2 x 2 x 3 = 12
    assert "grad_accum: 2" in (tmp_path / "config.yaml").read_text()
    (tmp_path / "env-history.jsonl").write_text(json.dumps({"threads": 1}) + "\n")  # an older coin: no count
    with pytest.raises(RunFolderError):
        prepare_run_dir(tmp_path, cfg(4))
