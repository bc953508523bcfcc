"""A stop signal that reaches one process stops every process at the same step (#30: runs on 8 GPUs).

``SIGTERM`` to one worker only (a node's agent, a user's ``kill``): that worker used to write nothing,
raise at the end of its step and leave the others to the next step's collectives alone (gloo:
"Connection reset by peer"; NCCL: a hang). Every process now asks the others after each step; all
stop there and the main process writes the checkpoint. (A process may still abort while the process
group tears down after the message, "terminate called without an active exception": the exit codes are
not asserted here.)
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

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="gloo process groups on Linux")

PLUGIN = '''
import os
import signal

from coin.methods import METHODS, Method


class SignalRankOne(Method):
    """Sequential; in stage 1, process 1 alone receives SIGTERM during its second step."""

    name = "test-signal-rank-one"

    def loss(self, ctx, batch, outputs, loss):
        if ctx.stage == 0 and ctx.micro == 3 and os.environ.get("RANK") == "1":
            os.kill(os.getpid(), signal.SIGTERM)
        return loss


if "test-signal-rank-one" not in METHODS:
    METHODS.register(SignalRankOne)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_signal_to_one_process_stops_all_at_one_step_with_a_checkpoint(tmp_path, micro_config):
    (tmp_path / "plugin.py").write_text(PLUGIN)
    cfg = micro_config
    cfg.update(method="test-signal-rank-one", plugins=[str(tmp_path / "plugin.py")])
    cfg["train"].update(batch_size=4, checkpoint_every=0)  # 24 samples, 8 per step: 3 steps per stage
    cfg["eval"].update(zero_shot=False, batch_size=4)
    cfg["log"] = {"trackers": []}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "coin.cli", "run", "--config", str(tmp_path / "run.yaml"), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    text = proc.stdout + proc.stderr
    # both processes stopped at the end of step 2, one because of the signal, the other because it was told
    assert text.count("interrupted by signal 15 at step 2 of stage 1 (ImageNet)") == 2, text[-4000:]
    assert "Connection reset" not in text, text[-4000:]
    stage = out / "stages" / "01-ImageNet"
    checkpoints = sorted((stage / "checkpoints").glob("step-*"))
    assert [c.name for c in checkpoints] == ["step-000002"], text[-3000:]  # both stopped after step 2 of 3
    assert json.loads((checkpoints[0] / "meta.json").read_text())["step"] == 2
    assert not (stage / "DONE").exists()
