"""The release's exact layout, end to end: ``coin data check`` passes and ``coin run`` finishes.

The tree (``test_release_layout.release_tree``) has all eight tasks as CoIN's release and the
original scripts lay them out, with what a first real run met: ScienceQA records without
``image`` (text-only questions, in training and test), TextVQA/VizWiz/VQAv2 tests in
``val.json``, Grounding test records with ``answer_bbox`` and no ``answer``, an
``Instructions_Diverse/`` folder, and TextVQA's official ten-answer file joined by question id
for the paper protocol. It runs with the tiny built-in model and with a tiny random-weight
llava-hf model loaded from a folder (the path LLaVA-1.5-7B takes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tinyhf
from test_release_layout import release_tree

from coin.cli import main
from coin.config_load import from_dict
from coin.engine.run import run
from coin.tasks import ORDERS

pytestmark = pytest.mark.slow

PAPER = list(ORDERS["paper"])


def the_release(tmp: Path) -> tuple[Path, Path]:
    """The release tree with the first-contact cases added (see the module docstring)."""
    root, images = release_tree(tmp, diverse=("GQA",))
    sqa = root / "Instructions_Original" / "ScienceQA"
    for split in ("train", "test"):
        rows = json.loads((sqa / f"{split}.json").read_text())
        for r in rows[::2]:  # every other question has no image, as about half of ScienceQA's
            del r["image"]
            if split == "train":
                r["conversations"][0]["value"] = r["conversations"][0]["value"].replace("<image>\n", "")
        (sqa / f"{split}.json").write_text(json.dumps(rows))
    grounding = root / "Instructions_Original" / "Grounding" / "test.json"
    rows = json.loads(grounding.read_text())
    for r in rows:
        del r["answer"]  # scored on answer_bbox alone
    grounding.write_text(json.dumps(rows))
    val = json.loads((root / "Instructions_Original" / "TextVQA" / "val.json").read_text())
    (root / "TextVQA_0.5.1_val.json").write_text(json.dumps({
        "dataset_name": "textvqa", "dataset_version": "0.5.1",
        "data": [{"question_id": r["question_id"], "answers": [r["answer"]] * 9 + ["other"]} for r in val]}))
    return root, images


def _data(root: Path, images: Path) -> dict:
    return {"benchmark": "coin", "root": str(root), "image_root": str(images), "instructions": "diverse",
            "answers": {"TextVQA": "TextVQA_0.5.1_val.json"}}


def test_the_release_passes_coin_data_check(tmp_path, capsys):
    root, images = the_release(tmp_path)
    cfg = tmp_path / "check.yaml"
    cfg.write_text(json.dumps({"data": _data(root, images)}))
    assert main(["data", "check", "--config", str(cfg), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    tasks = {t["task"]: t for t in manifest["tasks"]}
    assert tasks["ScienceQA"]["no_image"] == {"train": 2, "test": 1}
    assert all(tasks[t]["no_image"] == {"train": 0, "test": 0} for t in PAPER if t != "ScienceQA")
    assert tasks["TextVQA"]["files"]["test"].endswith("Instructions_Original/TextVQA/val.json")


@pytest.mark.parametrize("model", ["tiny", "llava-hf"])
def test_the_release_runs_end_to_end(tmp_path, micro_config, model):
    root, images = the_release(tmp_path)
    micro_config["data"] = _data(root, images)
    micro_config["tasks"] = {"order": PAPER}
    micro_config["eval"]["bootstrap"] = 0
    if model == "llava-hf":
        micro_config["model"] = {"name": "llava", "path": str(tinyhf.build_llava(tmp_path / "llava"))}
    logs: list[str] = []
    out = tmp_path / "run"
    result = run(from_dict(micro_config), out, progress=False, log=logs.append)
    assert result["tasks"] == PAPER
    assert all(v is not None for v in result["matrix"][-1]), result["matrix"]
    preds = out / "stages" / f"{len(PAPER):02d}-{PAPER[-1]}" / "predictions"
    assert {t: len((preds / f"{t}.jsonl").read_text().splitlines()) for t in PAPER} == dict.fromkeys(PAPER, 2)
    text = "\n".join(logs)
    assert "Instructions_Original/TextVQA/val.json" in text
    assert "Instructions_Diverse/GQA/train.json (as released" in text
    sources = json.loads((out / "data_sources.json").read_text())
    assert sources["tasks"]["VQAv2"]["test"]["path"].endswith("Instructions_Original/VQAv2/val.json")
