"""A sweep's output is a clean log when it is not a terminal: no progress-bar carriage returns (issue #33.6).

``coin sweep ... > sweep.log`` (or a batch job's log) used to fill with tqdm's ``\\r`` redraws, as
``coin sweep`` drew bars whatever its output was; now it draws them on a terminal only, as ``coin run`` does.
"""

from __future__ import annotations

import json

import yaml

from coin.cli import main


def test_a_sweep_into_a_log_has_no_carriage_returns(micro_config, tmp_path, capsys):
    micro_config["tasks"] = {"order": micro_config["tasks"]["order"][:1]}
    config = tmp_path / "micro.yaml"
    config.write_text(yaml.safe_dump(micro_config), encoding="utf-8")
    out = tmp_path / "sweep"
    assert main(["sweep", str(config), "--seeds", "0", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "\r" not in captured.out
    assert "[1/1] micro-s0" in captured.out  # the sweep still says what it does, a line at a time
    assert json.loads((out / "micro-s0" / "matrix.json").read_text())["matrix"][0][0] is not None
