"""Defects a hostile probe found (issue: nothing lost, no one let in); one test per defect.

Each test here failed on the code before its fix: ``--fresh`` deleting a live run's or a
stranger's folder, a resume under another effective batch, a run folder's plugins executed
by ``coin report``/``coin judge``, an empty task found after training, image content found
hours in, values that validate but cannot run, bare tracebacks on unreadable input, secrets
echoed by a judge server stored, workers outliving their launcher.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from coin.cli import main
from coin.config import ConfigError
from coin.config_load import from_dict
from coin.engine.run import run
from coin.engine.run_folder import FolderLock, RunFolderError

pytestmark = pytest.mark.slow


def _quiet(*a, **k) -> None:
    return None


@pytest.fixture(scope="module")
def finished(tmp_path_factory, micro_factory):
    """A finished micro run folder and the config file it ran from."""
    root = tmp_path_factory.mktemp("hostile")
    cfg = micro_factory()
    cfg_file = root / "micro.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    out = root / "run"
    run(from_dict(cfg), out, progress=False, log=_quiet)
    return cfg_file, out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / ".lock").unlink(missing_ok=True)
    return dst


# ----------------------------------------------------------------------------- 1. --fresh


def test_fresh_on_a_live_run_is_refused_and_deletes_nothing(finished, tmp_path, capsys):
    cfg_file, src = finished
    live = _copy(src, tmp_path / "live")
    lock = FolderLock()
    lock.acquire(live)  # a run working there
    before = sorted(p.relative_to(live) for p in live.rglob("*"))
    try:
        code = main(["run", "--config", str(cfg_file), "--out", str(live), "--fresh", "--quiet"])
    finally:
        lock.release()
    assert code == 2
    assert "in use by another coin process" in capsys.readouterr().err
    assert sorted(p.relative_to(live) for p in live.rglob("*")) == before


def test_fresh_refuses_a_folder_that_is_not_a_run_folder(finished, tmp_path, capsys):
    cfg_file, _ = finished
    stranger = tmp_path / "thesis"
    stranger.mkdir()
    (stranger / "chapter1.tex").write_text("years of work")
    code = main(["run", "--config", str(cfg_file), "--out", str(stranger), "--fresh", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "not a coin run folder" in err and "chapter1.tex" in err
    assert (stranger / "chapter1.tex").read_text() == "years of work"
    assert sorted(p.name for p in stranger.iterdir()) == ["chapter1.tex"]  # not even a lock file


def test_fresh_empties_a_run_folder_it_holds(finished, tmp_path):
    cfg_file, src = finished
    out = _copy(src, tmp_path / "again")
    (out / "stages" / "01-ImageNet" / "DONE").unlink()  # would be skipped, were the folder kept
    (out / "marker").write_text("old")
    assert main(["run", "--config", str(cfg_file), "--out", str(out), "--fresh", "--quiet"]) == 0
    assert not (out / "marker").exists()
    assert json.loads((out / "matrix.json").read_text())["matrix"] == json.loads((src / "matrix.json").read_text())["matrix"]


@pytest.mark.parametrize("name", ["../victim", "/tmp/victim", "a/b", "..", ".", "x\\y", ""])
def test_a_run_name_is_a_plain_folder_name(micro_config, name):
    micro_config["name"] = name
    with pytest.raises(ConfigError, match="name must be a plain folder name"):
        from_dict(micro_config)


# ----------------------------------------------------------------------------- 2. resume under another batch


def _as_if_launched_with(out: Path, processes: int) -> None:
    history = out / "env-history.jsonl"
    lines = history.read_text().splitlines()
    last = json.loads(lines[-1])
    last["processes"] = processes
    history.write_text("\n".join(lines[:-1] + [json.dumps(last)]) + "\n")


def test_resume_under_another_process_count_is_refused(finished, tmp_path, micro_factory):
    _, src = finished
    out = _copy(src, tmp_path / "killed")
    shutil.rmtree(out / "stages" / "02-Grounding")  # killed while training stage 2
    (out / "matrix.json").unlink()
    _as_if_launched_with(out, 2)  # ... by a 2-process launch; resumed here by one process
    with pytest.raises(RunFolderError, match=r"2 process\(es\) x batch 8 x grad_accum 1 = 16.*train.grad_accum=2"):
        run(from_dict(micro_factory()), out, progress=False, log=_quiet)
    cfg = micro_factory()
    cfg["train"]["grad_accum"] = 2  # the same 16 samples per step on one process: continues
    result = run(from_dict(cfg), out, progress=False, log=_quiet)
    assert len(result["matrix"]) == 2


def test_evaluation_left_continues_under_another_process_count(finished, tmp_path, micro_factory):
    _, src = finished
    out = _copy(src, tmp_path / "evaluating")
    stage = out / "stages" / "02-Grounding"
    (stage / "DONE").unlink()  # every stage trained; killed while evaluating the last one
    shutil.rmtree(stage / "predictions")
    (out / "matrix.json").unlink()
    _as_if_launched_with(out, 2)
    result = run(from_dict(micro_factory()), out, progress=False, log=_quiet)
    assert result["matrix"] == json.loads((src / "matrix.json").read_text())["matrix"]


def test_a_checkpoint_of_another_plan_is_refused(tmp_path):
    import torch

    from coin.engine import checkpoint as ckpt

    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([w])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ckpt.save_checkpoint(tmp_path, 7, {"w": w}, opt, sched, plan={"steps": 20, "samples_per_step": 16})
    meta, tensors = ckpt.latest_good(tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="samples_per_step 16 -> 8, steps 20 -> 40"):
        ckpt.restore(meta, tensors, {"w": w}, opt, sched, plan={"steps": 40, "samples_per_step": 8})
    assert ckpt.restore(meta, tensors, {"w": w}, opt, sched, plan={"steps": 20, "samples_per_step": 16}) == 7


# ----------------------------------------------------------------------------- 3. a run folder's code


def _planted(src: Path, dst: Path, stem: str) -> tuple[Path, Path]:
    out = _copy(src, dst / "downloaded-run")
    marker = dst / "pwned"
    evil = dst / f"{stem}.py"  # one module name per test: a module imported once is not imported again
    evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = yaml.safe_load((out / "config.yaml").read_text())
    config["plugins"] = [str(evil)]
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    return out, marker


def test_report_runs_no_plugin_of_the_run_folder(finished, tmp_path):
    _, src = finished
    out, marker = _planted(src, tmp_path, "evil_report")
    assert main(["report", str(out)]) == 0
    assert not marker.exists()
    assert main(["report", str(out), str(src), "--out", str(tmp_path / "cmp")]) == 0
    assert not marker.exists()
    assert main(["report", str(out), "--trust-plugins"]) == 0  # the user asked
    assert marker.read_text() == "ran"


def test_judge_reads_test_records_without_running_the_plugins(finished, tmp_path):
    from coin.config_load import UntrustedPlugins
    from coin.engine.judging import _test_records

    _, src = finished
    out, marker = _planted(src, tmp_path, "evil_judge")
    with pytest.raises(UntrustedPlugins, match=r"evil_judge\.py.*--trust-plugins"):
        _test_records(out, ["ImageNet"])
    assert not marker.exists()
    records = _test_records(out, ["ImageNet"], trust_plugins=True)
    assert marker.read_text() == "ran" and len(records["ImageNet"]) == 8
