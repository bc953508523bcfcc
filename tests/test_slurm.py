"""``coin sweep --launcher slurm``: each run a submitit job (here submitit's local executor), resumable."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest
import torch
import yaml

from coin.api import sweep
from coin.config import ConfigError
from coin.engine import slurm
from coin.engine.slurm import SlurmOptions, parse_slurm_args, run_command


@pytest.fixture
def configs(tmp_path, micro_config):
    micro_config.pop("seed")
    a = tmp_path / "lora.yaml"
    a.write_text(yaml.safe_dump(micro_config))
    return [a]


def test_run_command_is_coin_run_or_accelerate_launch():
    assert run_command("c.yaml", "runs/a") == [sys.executable, "-m", "coin.cli", "run", "--config", "c.yaml",
                                                "--out", "runs/a", "--quiet"]
    cmd = run_command("c.yaml", "runs/a", gpus=4, threads=8)
    assert cmd[:5] == [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "4"]
    assert cmd[5:] == ["-m", "coin.cli", "run", "--config", "c.yaml", "--out", "runs/a", "--quiet", "--threads", "8"]
    multi = run_command("c.yaml", "r", gpus=8, nodes=2, machine_rank=1, main_ip="node7", main_port=29500)
    assert multi[3:15] == ["--num_processes", "8", "--num_machines", "2", "--machine_rank", "1",
                           "--main_process_ip", "node7", "--main_process_port", "29500", "-m", "coin.cli"]


def test_options_are_checked_with_the_flag_named():
    assert parse_slurm_args(["qos=high", "constraint=a100&ib"]) == {"qos": "high", "constraint": "a100&ib"}
    with pytest.raises(ConfigError, match="--slurm-arg expects KEY=VALUE"):
        parse_slurm_args(["qos"])
    for opts, flag in ((SlurmOptions(gpus_per_run=-1), "--gpus-per-run"), (SlurmOptions(nodes=0), "--nodes"),
                       (SlurmOptions(gpus_per_run=3, nodes=2), "--gpus-per-run"), (SlurmOptions(time=0), "--time"),
                       (SlurmOptions(partition="a b"), "--partition"), (SlurmOptions(account=""), "--account")):
        with pytest.raises(ConfigError, match=flag):
            opts.validate()
    SlurmOptions(partition="gpu", gpus_per_run=8, nodes=2, time=60, slurm_args={"qos": "high"}).validate()


def test_options_become_sbatch_lines(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"  # submitit's Slurm executor wants srun on PATH; its script is only written here
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    opts = SlurmOptions(partition="gpu", gpus_per_run=4, nodes=2, time=90, account="acc", slurm_args={"qos": "high"})
    ex = slurm.make_executor(opts, tmp_path / "submitit", "slurm")
    text = ex._executor._make_submission_file_text("CMD", "uid")
    for line in ("--partition=gpu", "--gpus-per-node=2", "--nodes=2", "--ntasks-per-node=1", "--time=90",
                 "--account=acc", "--qos=high", f"--output={tmp_path / 'submitit'}/%j_0_log.out"):
        assert f"#SBATCH {line}\n" in text


def test_cli_flags_need_the_slurm_launcher(configs, tmp_path, capsys):
    from coin.cli import main

    assert main(["sweep", str(configs[0]), "--out", str(tmp_path / "sw"), "--partition", "gpu"]) != 0
    assert "--partition needs --launcher slurm" in capsys.readouterr().err
    assert main(["sweep", str(configs[0]), "--out", str(tmp_path / "sw"), "--launcher", "slurm", "--nodes", "0"]) != 0
    assert "--nodes must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "sw").exists()


def test_missing_submitit_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(Exception, match=r"pip install 'submitit>=1\.5'"):
        slurm.require_submitit()


def _wait_dead(pid: int, timeout: float = 30.0) -> None:
    from coin.engine.status import pid_alive

    end = time.time() + timeout
    while pid_alive(pid) and time.time() < end:
        time.sleep(0.1)
    assert not pid_alive(pid)


@pytest.mark.slow
def test_slurm_sweep_resubmits_a_killed_job_and_matches_a_local_sweep(configs, tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")
    monkeypatch.setattr(slurm, "POLL_S", 0.5)
    out = tmp_path / "sw"
    kw = dict(progress=False, threads=1, launcher="slurm", cluster="local")
    logs: list[str] = []
    assert sweep([str(configs[0])], [0, 1, 2], out, log=logs.append,
                 slurm=SlurmOptions(time=30, wait=False), **kw) is None
    jobs = json.loads((out / "jobs.json").read_text())
    assert sorted(jobs) == ["lora-s0", "lora-s1", "lora-s2"]
    assert all(e["attempts"] == 1 and e["job_id"].isdigit() for e in jobs.values())
    killed = jobs["lora-s1"]["job_id"]
    os.kill(int(killed), signal.SIGINT)  # what LocalJob.cancel does: the job and its coin run end at once
    _wait_dead(int(killed))
    assert not (out / "lora-s1" / "matrix.json").exists()  # killed before it finished

    # the same command again, without waiting: the killed one goes again, the running ones are left alone
    again: list[str] = []
    sweep([str(configs[0])], [0, 1, 2], out, log=again.append, slurm=SlurmOptions(time=30, wait=False), **kw)
    jobs = json.loads((out / "jobs.json").read_text())
    assert jobs["lora-s1"]["attempts"] == 2 and jobs["lora-s1"]["previous_job_ids"] == [killed]
    assert jobs["lora-s1"]["job_id"] != killed
    assert any(m.startswith(f"job {killed} of lora-s1 ended FAILED: submitting it again") for m in again)
    assert sum(m.startswith("submitted") for m in again) == 1
    for name in ("lora-s0", "lora-s2"):
        assert jobs[name]["attempts"] == 1
        assert any(m.startswith(f"in flight {name}") or m.startswith(f"finished {name}") for m in again)

    # `coin status SWEEP` while (some) jobs run
    from coin.cli import main

    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"lora-s1  job {jobs['lora-s1']['job_id']} (attempt 2)" in text

    # and again, waiting: the report once all have finished
    report = sweep([str(configs[0])], [0, 1, 2], out, log=lambda *a: None, slurm=SlurmOptions(time=30), **kw)
    assert report is not None and report.is_file()
    jobs = json.loads((out / "jobs.json").read_text())
    assert {n: (e["state"], e["attempts"]) for n, e in jobs.items()} == {
        "lora-s0": ("COMPLETED", 1), "lora-s1": ("COMPLETED", 2), "lora-s2": ("COMPLETED", 1)}

    # once more: everything finished, nothing submitted
    last: list[str] = []
    sweep([str(configs[0])], [0, 1, 2], out, log=last.append, slurm=SlurmOptions(time=30), **kw)
    assert [m for m in last if "submit" in m] == [] and sum("(skipped)" in m for m in last) == 3
    assert main(["status", str(out)]) == 0
    assert "3 of 3 runs finished" in capsys.readouterr().out

    # the same configs swept on this machine: the same matrices, the same comparison
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the jobs ran coin run --threads 1
    try:
        ref = sweep([str(configs[0])], [0, 1, 2], tmp_path / "ref", progress=False, log=lambda *a: None)
    finally:
        torch.set_num_threads(old)
    for seed in (0, 1, 2):
        got = json.loads((out / f"lora-s{seed}" / "matrix.json").read_text())
        want = json.loads((tmp_path / "ref" / f"lora-s{seed}" / "matrix.json").read_text())
        assert got["matrix"] == want["matrix"] and got["seed"] == seed
    assert _comparison_table(report) == _comparison_table(ref) and "| 0, 1, 2 | 3 |" in "".join(_comparison_table(ref))


def _comparison_table(report) -> list[str]:
    """The report's comparison table (its cost table holds times and memory, which differ between launches)."""
    lines = report.read_text().splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("| run | method"))
    end = next((k for k in range(start, len(lines)) if not lines[k].startswith("|")), len(lines))
    return lines[start:end]
