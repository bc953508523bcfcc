"""A backbone is one file, and so is an adapter: plugins declare them, `coin data check` and `coin run` take them.

Each plugin file is the only code its entry needs. The backbone plugin builds a tiny
random-weight ``LlavaForConditionalGeneration`` of its own shape, writes it to the folder its
option names (``prepare``), loads it back through ``from_pretrained`` and wraps it in coin's
``LlavaVLM``; it declares its options, the files it reads (``weights``, checked by
``--dry-run``) and its line in the plan. The adapter plugin adds rank-stabilised LoRA with an
option of its own (``use_rslora``) passed to PEFT. The commands run in a fresh interpreter, as a
user runs them, so the plugins' registrations never reach this test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import coin

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"  # the plugins the README shows
BACKBONE_PLUGIN = (EXAMPLES / "mini_llava.py").read_text()

ADAPTER_PLUGIN = (EXAMPLES / "rslora.py").read_text()


def _coin(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(coin.__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "coin.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900)


def _config(tmp_path: Path, micro: dict, plugin_name: str, plugin: str, **sections) -> Path:
    path = tmp_path / plugin_name
    path.write_text(plugin)
    micro.update(plugins=[str(path)], **sections)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(micro))
    return cfg


def _check_matrix(out: Path, tasks: list[str]) -> dict:
    matrix = json.loads((out / "matrix.json").read_text())
    assert matrix["tasks"] == tasks
    assert all(matrix["matrix"][j][i] is not None for j in range(len(tasks)) for i in range(j + 1))
    return matrix


@pytest.mark.slow
def test_a_backbone_in_one_plugin_file_checks_plans_runs_and_resumes(tmp_path, micro_config):
    weights = tmp_path / "weights"
    cfg = _config(tmp_path, micro_config, "mini_llava.py", BACKBONE_PLUGIN,
                  model={"name": "mini-llava", "folder": str(weights), "width": 24})
    tasks = micro_config["tasks"]["order"]

    check = _coin("data", "check", "--config", str(cfg))
    assert check.returncode == 0, check.stdout + check.stderr

    out = tmp_path / "run"
    done = _coin("run", "--config", str(cfg), "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    matrix = _check_matrix(out, tasks)
    assert matrix["cost"]["trainable_params"] > 0
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["plugins"] == [str(tmp_path / "mini_llava.py")]
    assert stored["model"] == {**stored["model"], "name": "mini-llava", "folder": str(weights), "width": 24, "seed": 0}
    assert (weights / "config.json").is_file()

    again = _coin("run", "--config", str(cfg), "--out", str(out))  # the stored config, plugin keys and all, matches
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"stage {len(tasks)}/{len(tasks)} {tasks[-1]}: done earlier, skipped" in again.stdout + again.stderr

    plan = _coin("run", "--config", str(cfg), "--out", str(tmp_path / "plan"), "--dry-run")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "model: mini-llava (width 24, seed 0)" in plan.stdout  # the entry's summary
    assert f"model.folder:         {weights}  (present)" in plan.stdout  # the entry's weights, checked

    typo = _coin("data", "check", "--config", str(cfg), "--set", "model.widht=32")
    assert typo.returncode != 0 and "unknown key 'model.widht' (did you mean 'model.width'?)" in typo.stderr


@pytest.mark.slow
def test_an_adapter_option_from_a_plugin_file_reaches_peft(tmp_path, micro_config):
    cfg = _config(tmp_path, micro_config, "rslora.py", ADAPTER_PLUGIN,
                  adapter={"type": "lora-rslora", "r": 4, "alpha": 8, "use_rslora": True})
    tasks = micro_config["tasks"]["order"]

    out = tmp_path / "run"
    done = _coin("run", "--config", str(cfg), "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    _check_matrix(out, tasks)
    assert yaml.safe_load((out / "config.yaml").read_text())["adapter"]["use_rslora"] is True
    saved = json.loads((out / "stages" / f"01-{tasks[0]}" / "adapter" / "adapter_config.json").read_text())
    assert saved["use_rslora"] is True and saved["r"] == 4
    assert "lora-rslora r=4 alpha=8 use_rslora=True" in (out / "report.md").read_text()

    typo = _coin("data", "check", "--config", str(cfg), "--set", "adapter.use_rslra=false")
    assert typo.returncode != 0
    assert "unknown key 'adapter.use_rslra' (did you mean 'adapter.use_rslora'?)" in typo.stderr
