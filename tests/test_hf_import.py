"""A task read from a Hugging Face ``datasets`` dataset (issue #33.2): a saved folder or parquet files become
CoIN's records and images, which ``coin data check`` and a one-file task then read like CoIN's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coin.cli import main
from coin.errors import DataError

datasets = pytest.importorskip("datasets", reason="the hf extra: pip install -e '.[test]' installs datasets")
REPO = Path(__file__).resolve().parents[1]

PLUGIN = '''
from coin.scoring.protocol import Protocol
from coin.tasks import TASKS, TaskSpec

TASKS.register(TaskSpec(name="HFShapes", folder="HFShapes", answer_form="phrase", scorer="exact",
                        instruction="Answer with one word.", max_new_tokens=8, abbreviation="HFS",
                        doc="shapes from a datasets dataset",
                        protocols=(Protocol(name="paper", scorer="exact", normalizer="lower", answers="one",
                                            rule="the word"),)))
'''


def _dataset():
    from PIL import Image

    def split(n: int, offset: int):
        shapes = ["circle", "square"]
        return datasets.Dataset.from_dict(
            {"prompt": [f"What shape is number {k}?" for k in range(n)],
             "label": [shapes[(k + offset) % 2] for k in range(n)],
             "picture": [Image.new("RGB", (32, 24), (40 * k % 255, 90, 160)) for k in range(n)]},
            features=datasets.Features({"prompt": datasets.Value("string"), "label": datasets.Value("string"),
                                        "picture": datasets.Image()}))

    return datasets.DatasetDict({"train": split(6, 0), "validation": split(4, 1)})


@pytest.mark.parametrize("form", ["saved", "parquet"])
def test_a_datasets_dataset_becomes_a_task_coin_reads(form, tmp_path):
    ds = _dataset()
    if form == "saved":
        source = tmp_path / "saved"
        ds.save_to_disk(str(source))
    else:
        source = tmp_path / "parquet"
        source.mkdir()
        for name, part in ds.items():
            part.to_parquet(str(source / f"{name}-00000.parquet"))
    root = tmp_path / "data"
    assert main(["data", "import-hf", str(source), "--task-folder", "HFShapes", "--out", str(root),
                 "--question", "prompt", "--answer", "label", "--image", "picture",
                 "--instruction", "Answer with one word.", "--test-split", "validation"]) == 0
    folder = root / "Instructions_Original" / "HFShapes"
    train = json.loads((folder / "train.json").read_text())
    test = json.loads((folder / "test.json").read_text())
    assert len(train) == 6 and len(test) == 4
    assert train[1]["conversations"] == [{"from": "human", "value": "<image>\nWhat shape is number 1?\nAnswer with one word."},
                                         {"from": "gpt", "value": "square"}]
    assert test[0] == {"question_id": "HFShapes-test-0", "text": "What shape is number 0?\nAnswer with one word.",
                       "answer": "square", "image": "HFShapes/test-0.png"}
    assert (root / "images" / "HFShapes" / "train-5.png").is_file()

    (tmp_path / "hf_task.py").write_text(PLUGIN, encoding="utf-8")
    (tmp_path / "run.yaml").write_text(
        "plugins: [hf_task.py]\ndata: {benchmark: coin, root: data, image_root: data/images}\n"
        "tasks: {order: [HFShapes]}\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "coin.cli", "data", "check", "--config", str(tmp_path / "run.yaml"),
                           "--json"], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["ok"] and [t["task"] for t in manifest["tasks"]] == ["HFShapes"]


def test_a_missing_column_or_split_is_named(tmp_path, capsys):
    source = tmp_path / "saved"
    _dataset().save_to_disk(str(source))
    with pytest.raises(DataError, match=r"no column 'question'.*columns: label, picture, prompt"):
        from coin.data.hf_import import import_hf

        import_hf(str(source), tmp_path / "out", "X", splits={"train": "train", "test": "validation"})
    assert main(["data", "import-hf", str(source), "--task-folder", "X", "--out", str(tmp_path / "out"),
                 "--question", "prompt", "--answer", "label"]) == 2  # the dataset has no split "test"
    assert "no split 'test' (it has: train, validation)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written
    assert main(["data", "import-hf", str(tmp_path / "nope"), "--task-folder", "X", "--out", str(tmp_path / "out")]) == 2
    assert "nope: no such file or folder" in capsys.readouterr().err
