"""#31.2: a benchmark is addable from outside, from one plugin file (examples/shapes_benchmark.py).

The plugin registers two tasks and a benchmark; ``coin data check`` checks its generated files
and ``coin run`` trains and scores it with the tiny model, report included.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from coin.cli import main

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "shapes_benchmark.py"

pytestmark = pytest.mark.slow


def _config(micro: dict, root: Path) -> dict:
    cfg = {**micro, "plugins": [str(PLUGIN)], "data": {"benchmark": "shapes", "root": str(root)},
           "tasks": {"order": "paper"}}
    return cfg


def test_the_example_config_names_the_plugin_and_its_benchmark():
    cfg = yaml.safe_load((ROOT / "examples" / "shapes.yaml").read_text())
    assert cfg["plugins"] == ["shapes_benchmark.py"] and cfg["data"]["benchmark"] == "shapes"  # beside the config


def test_coin_data_check_checks_the_plugin_benchmark(micro_config, tmp_path, capsys):
    path = tmp_path / "shapes.yaml"
    path.write_text(yaml.safe_dump(_config(micro_config, tmp_path / "data")))
    assert main(["data", "check", "--config", str(path), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["ok"] and [t["task"] for t in manifest["tasks"]] == ["Shape", "Colour"]
    assert all(t["counts"] == {"train": 24, "test": 8} and t["images"] == 32 for t in manifest["tasks"])


def test_a_broken_generated_file_is_named_by_the_check(micro_config, tmp_path, capsys):
    path = tmp_path / "shapes.yaml"
    path.write_text(yaml.safe_dump(_config(micro_config, tmp_path / "data")))
    assert main(["data", "check", "--config", str(path)]) == 0
    test_file = tmp_path / "data" / "Colour" / "test.json"
    rows = json.loads(test_file.read_text())
    del rows[3]["answer"]
    test_file.write_text(json.dumps(rows))
    capsys.readouterr()
    assert main(["data", "check", "--config", str(path)]) == 1
    assert "Colour-test-3" in capsys.readouterr().out


def test_coin_run_trains_and_scores_the_plugin_benchmark(micro_config, tmp_path):
    from coin.api import run
    from coin.config_load import from_dict

    out = tmp_path / "run"
    result = run(from_dict(_config(micro_config, tmp_path / "data")), out, progress=False, log=lambda m: None)
    assert result["tasks"] == ["Shape", "Colour"]
    assert len(result["matrix"]) == 2 and all(len(row) == 2 for row in result["matrix"])
    assert all(isinstance(v, (int, float)) for v in result["matrix"][-1])  # after the last stage: both tasks scored
    assert (out / "report.md").is_file()
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["data"]["benchmark"] == "shapes" and stored["tasks"]["order"] == ["Shape", "Colour"]
