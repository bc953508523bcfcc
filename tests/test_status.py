"""``coin status``: a running run, the same run killed, then resumed to the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from coin.cli import main
from coin.config_load import from_dict
from coin.engine.run import run
from coin.engine.status import run_status

pytestmark = pytest.mark.slow

PLUGIN = '''
import time
from pathlib import Path

from coin.methods import METHODS, Method


class Hold(Method):
    """Sequential; in stage 2, from its second step on, waits while RUN/hold exists (a run caught mid-training)."""

    name = "test-hold"

    def loss(self, ctx, batch, outputs, loss):
        while ctx.stage == 1 and ctx.micro >= 1 and (Path(ctx.run_dir) / "hold").exists():
            time.sleep(0.02)
        return loss


if "test-hold" not in METHODS:
    METHODS.register(Hold)
'''


def _wait(cond, proc, seconds=120):
    end = time.time() + seconds
    while not cond():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < end, "timed out"
        time.sleep(0.05)


def test_status_of_a_running_then_killed_then_finished_run(tmp_path, micro_config, capsys):
    (tmp_path / "hold_plugin.py").write_text(PLUGIN)
    cfg = micro_config
    cfg.update(method="test-hold", plugins=[str(tmp_path / "hold_plugin.py")])
    cfg["eval"].update(zero_shot=False, bootstrap=0)
    cfg["train"]["checkpoint_every"] = 1
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    out.mkdir()
    (out / "hold").touch()
    proc = subprocess.Popen([sys.executable, "-m", "coin.cli", "run", "--config", str(tmp_path / "run.yaml"),
                             "--out", str(out), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=os.environ.copy())
    try:
        log2 = out / "stages" / "02-Grounding" / "train_log.jsonl"
        _wait(lambda: log2.is_file() and log2.read_text().endswith("\n")
              and (out / "stages" / "02-Grounding" / "checkpoints" / "step-000001").is_dir(), proc)
        st = run_status(out)  # running: held in stage 2's second step
        assert st["running"] and st["pid"] == proc.pid and not st["finished"]
        assert [s["state"] for s in st["stages"]] == ["done", "training"]
        assert st["current"] == {"stage": 2, "task": "Grounding", "state": "training", "step": 1, "of": 3,
                                 "checkpoint": 1}
        assert len(st["matrix"]) == 1 and st["matrix"][0][0] is not None and st["matrix"][0][1] is None
        assert st["last_loss"]["stage"] == 2 and st["last_loss"]["step"] == 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    st = run_status(out)  # killed: nobody holds the lock; the stage and checkpoint are still named
    assert not st["running"] and st["pid"] is None and not st["finished"]
    assert st["current"]["step"] == 1 and st["current"]["checkpoint"] == 1
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "stopped" in text and "stage 2/2 Grounding: training, step 1 of 3, newest checkpoint at step 1" in text

    (out / "hold").unlink()
    result = run(from_dict(cfg), out, progress=False, log=lambda *a: None)
    st = run_status(out)  # finished
    assert st["finished"] and not st["running"] and st["current"] is None
    assert st["matrix"] == result["matrix"]
    assert st["last_loss"]["stage"] == 2 and st["last_loss"]["step"] == 3
    assert main(["status", str(out), "--json"]) == 0
    assert '"finished": true' in capsys.readouterr().out
    # a finished run's status leads with its result: the zero-shot row, MAA/BWT/ACC and the report's path
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    m = result["metrics"]
    assert f"MAA {m['maa']:.2f}  BWT {m['bwt']:.2f}  ACC {m['acc']:.2f}" in text
    assert "report:" not in text  # the engine's run() writes no report (the CLI does: tests/test_cli_habits.py)
    assert "zero-shot" not in text  # eval.zero_shot is off here (tests/test_cli_habits.py has the row)


def test_status_names_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "not a coin run folder" in capsys.readouterr().err


def test_quiet_prints_one_line_per_stage_and_progress_goes_to_stderr(tmp_path, micro_config, capsys):
    micro_config["eval"].update(bootstrap=0)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(micro_config))
    args = ["run", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run")]
    assert main(args + ["--quiet"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["zero-shot", "stage 1/2 ImageNet", "stage 2/2 Grounding", "report"]
    assert err == ""
    assert main(args) == 0  # again, not quiet, not on a terminal: messages on stderr, no bars
    out, err = capsys.readouterr()
    assert "run folder:" in err and "stage 1/2 ImageNet: done earlier, skipped" in err and "\r" not in err
    assert "run folder:" not in out and "MAA" in out
