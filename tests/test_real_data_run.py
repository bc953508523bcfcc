"""The real-data path end to end: source fixtures -> builders -> check -> coin run with the tiny model."""

import json

import pytest
import raw_sources as rs

from coin.config_load import from_dict
from coin.benchmarks.coin.builders import build_source
from coin.benchmarks.check import check_data
from coin.engine.run import run

pytestmark = pytest.mark.slow


def test_run_on_a_built_fixture_tree(tmp_path, micro_config):
    root, images = tmp_path / "coin", tmp_path / "images"
    build_source("imagenet", rs.write_imagenet(tmp_path / "imagenet", per_class=3), root, classes=3)
    build_source("refcoco", rs.write_refcoco(tmp_path / "refcoco"), root)
    build_source("refcocog", rs.write_refcoco(tmp_path / "refcocog", "refs(umd).p", test_split="val"), root)
    for folder in ("ImageNet", "Grounding"):
        for split in ("train", "test"):
            rs.write_images(images, json.loads((root / "Instructions_Original" / folder / f"{split}.json").read_text()))
    micro_config["data"] = {"benchmark": "coin", "root": str(root), "image_root": str(images),
                            "instructions": "10type"}
    cfg = from_dict(micro_config)
    assert check_data(cfg.data, ["ImageNet", "Grounding"]).ok
    result = run(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    assert result["tasks"] == ["ImageNet", "Grounding"]
    assert result["matrix"][1][0] is not None and result["matrix"][1][1] is not None
    preds = tmp_path / "run" / "stages" / "02-Grounding" / "predictions"
    assert len((preds / "ImageNet.jsonl").read_text().splitlines()) == 3
    assert len((preds / "Grounding.jsonl").read_text().splitlines()) == 2  # refcoco testA + refcocog val
