"""A task is one file: a plugin declares it, and `coin data check` and `coin run` take it end to end.

The plugin file is the only code the task needs: its spec (folder, answer form, scorer,
Original instruction line, one protocol, abbreviation). It gives no Diverse line, so the
run (``data.instructions: diverse``) falls back to its Original line and the report says
so. The commands run in a fresh interpreter, as a user runs them, so the plugin's
registrations never reach this test process.
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
from coin.tasks import ORDERS, TASKS, TaskSpec, get_task, order_name

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"  # the plugins the README shows
PLUGIN = (EXAMPLES / "colours_task.py").read_text()

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "white": (240, 240, 240)}
LINE = "Answer with the colour's name."


def _fixture(root: Path, n_train: int = 16, n_test: int = 8) -> Path:
    """A CoIN-format data root: Instructions_Original/ColourFolder/{train,test}.json and PNG images."""
    from PIL import Image

    names = sorted(COLOURS)
    (root / "images" / "colours").mkdir(parents=True)
    for name, rgb in COLOURS.items():
        Image.new("RGB", (64, 64), rgb).save(root / "images" / "colours" / f"{name}.png")
    folder = root / "Instructions_Original" / "ColourFolder"
    folder.mkdir(parents=True)
    train = [{"id": f"c-train-{k}", "image": f"colours/{names[k % 4]}.png", "conversations": [
        {"from": "human", "value": f"<image>\nWhat colour is the picture?\n{LINE}"},
        {"from": "gpt", "value": names[k % 4]}]} for k in range(n_train)]
    test = [{"question_id": f"c-test-{k}", "image": f"colours/{names[k % 4]}.png",
             "text": f"What colour is the picture?\n{LINE}", "answer": names[k % 4]} for k in range(n_test)]
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "test.json").write_text(json.dumps(test))
    return root


def _coin(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(coin.__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "coin.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900)


@pytest.mark.slow
def test_a_task_in_one_plugin_file_checks_and_runs_end_to_end(tmp_path, micro_config):
    plugin = tmp_path / "colours_task.py"
    plugin.write_text(PLUGIN)
    root = _fixture(tmp_path / "data")
    micro_config.update(plugins=[str(plugin)], tasks={"order": ["Colours"]})
    micro_config["data"] = {"benchmark": "coin", "root": str(root), "image_root": str(root / "images"),
                            "instructions": "diverse"}
    cfg = tmp_path / "colours.yaml"
    cfg.write_text(yaml.safe_dump(micro_config))

    check = _coin("data", "check", "--config", str(cfg), "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    manifest = json.loads(check.stdout)
    assert [t["task"] for t in manifest["tasks"]] == ["Colours"]

    out = tmp_path / "run"
    done = _coin("run", "--config", str(cfg), "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    matrix = json.loads((out / "matrix.json").read_text())
    assert matrix["tasks"] == ["Colours"] and len(matrix["matrix"]) == 1 and matrix["matrix"][0][0] is not None
    assert matrix["protocol_card"]["Colours"]["paper"]["rule"] == "the colour's name, case-insensitive"
    report = (out / "report.md").read_text()
    assert "Colours: no diverse line of its own; falls back to its Original line" in report
    assert LINE in report
    assert "the colour's name, case-insensitive" in report  # the plugin's protocol, on the card

    typo = _coin("data", "check", "--config", str(cfg), "--set", "tasks.order=[Colour]")
    assert typo.returncode != 0 and "Did you mean 'Colours'" in typo.stderr


# ------------------------------------------------------------------ what a task file declares, checked at once


@pytest.fixture
def scratch_tasks():
    """Tasks registered in a test are gone after it."""
    with TASKS.scratch():
        yield


def test_a_bad_spec_stops_at_registration_listing_every_problem(scratch_tasks):
    bad = TaskSpec(name="Sketch", folder="Sketch", answer_form="drawing", scorer="exakt", instruction="Circle it: {}",
                   max_new_tokens=0, instructions={"original": ["x"], "10type": ["No slot here."], "diverse": []})
    with pytest.raises(ValueError) as e:
        TASKS.register(bad)
    msg = str(e.value)
    for part in ("task 'Sketch':", "answer_form must be one of letter, phrase, class, box, got 'drawing'",
                 "scorer: unknown scorer 'exakt'. Did you mean 'exact'?", "max_new_tokens must be an int >= 1, got 0",
                 "instructions.original: the Original line is `instruction`",
                 "instructions.10type: 'No slot here.' must be one trimmed line with 1 '{}'",
                 "instructions.diverse: no lines"):
        assert part in msg
    assert "Sketch" not in TASKS


def test_built_in_specs_carry_their_abbreviations_and_plots_read_them(scratch_tasks):
    from coin.report.plots import abbreviate

    assert {t: get_task(t).abbreviation for t in ORDERS["paper"]} == {
        "ScienceQA": "SQA", "TextVQA": "TVQA", "ImageNet": "INet", "GQA": "GQA", "VizWiz": "VizWiz",
        "Grounding": "Grnd", "VQAv2": "VQAv2", "OCR-VQA": "OCR"}
    assert [abbreviate(t) for t in ORDERS["paper"]] == ["SQA", "TVQA", "INet", "GQA", "VizWiz", "Grnd", "VQAv2", "OCR"]
    TASKS.register(TaskSpec(name="Colours", folder="Colours", answer_form="phrase", scorer="exact", instruction=LINE,
                            max_new_tokens=8, abbreviation="Col"))
    TASKS.register(TaskSpec(name="Shadows", folder="Shadows", answer_form="phrase", scorer="exact", instruction=LINE,
                            max_new_tokens=8))
    assert abbreviate("Colours") == "Col"  # a plugin's own short name, no table to edit
    assert abbreviate("Shadows") == "Shadow" and abbreviate("NotRegistered", 3) == "Not"  # first letters


def test_orders_live_in_one_place_and_have_names_for_reports():
    import importlib

    import coin.tasks.orders as orders

    assert ORDERS is orders.ORDERS and set(ORDERS) == {"paper", "alphabet"}
    assert order_name(list(ORDERS["paper"])) == "paper" and order_name(ORDERS["alphabet"]) == "alphabet"
    assert order_name(["GQA", "VizWiz"]) is None and order_name(list(reversed(ORDERS["paper"]))) is None
    assert "did you mean 'paper'" in orders.order_problems("papr")[0]
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("coin.data.orders")
