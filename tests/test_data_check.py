"""The data manifest, stats, families and overrides at load time, orders and volumes."""

import json

import pytest
import raw_sources as rs
from PIL import Image

from coin.cli import main
from coin.config import DataConfig
from coin.config_load import from_dict
from coin.benchmarks.load import load_benchmark, locate, sample_volume
from coin.benchmarks.coin.builders import build_source
from coin.benchmarks.check import check_data, stats
from coin.data.coin_json import DataError
from coin.tasks.orders import mixture, order_problems, resolve_order
from coin.tasks import ORDERS


@pytest.fixture
def tree(tmp_path):
    """A CoIN tree built from GQA and VizWiz fixtures, every image present and readable."""
    root = tmp_path / "coin"
    build_source("gqa", rs.write_gqa(tmp_path / "gqa"), root)
    build_source("vizwiz", rs.write_vizwiz(tmp_path / "vizwiz"), root)
    for folder in ("GQA", "VizWiz"):
        for split in ("train", "test"):
            rs.write_images(root, json.loads((root / "Instructions_Original" / folder / f"{split}.json").read_text()))
    return root


def _cfg(root, **kw):
    return DataConfig(benchmark="coin", root=str(root), **kw)


def _edit(path, fn):
    rows = json.loads(path.read_text())
    fn(rows)
    path.write_text(json.dumps(rows))


def test_clean_tree_manifest(tree):
    m = check_data(_cfg(tree), ["GQA", "VizWiz"])
    assert m.ok, m.format()
    gqa, vizwiz = m.tasks
    assert gqa.counts == {"train": 2, "test": 1} and gqa.images == 3
    assert vizwiz.counts == {"train": 2, "test": 1}
    assert m.total_bytes > 0 and "OK" in m.format()
    assert m.to_dict()["tasks"][0]["files"]["train"].endswith("Instructions_Original/GQA/train.json")


def test_missing_image_and_malformed_record_are_both_named(tree, capsys):
    (tree / "GQA" / "images" / "2375429.jpg").unlink()
    _edit(tree / "Instructions_Original" / "VizWiz" / "test.json", lambda rows: rows[0].pop("answer"))
    m = check_data(_cfg(tree), ["GQA", "VizWiz"])
    assert not m.ok
    assert m.tasks[0].missing_images == ["GQA train 07333408: GQA/images/2375429.jpg"]
    assert m.tasks[1].malformed == [f"{tree}/Instructions_Original/VizWiz/test.json record 0 "
                                    "(question_id VizWiz_val_00000000): missing key 'answer'"]
    rc = main(["data", "check", "--root", str(tree), "--tasks", "GQA", "VizWiz"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "GQA/images/2375429.jpg" in out and "missing key 'answer'" in out and "PROBLEMS FOUND" in out
    assert "GQA: 1 missing image(s)" in out and "VizWiz: 1 malformed record(s)" in out


def test_every_bad_record_is_collected(tree):
    path = tree / "Instructions_Original" / "GQA" / "train.json"

    def spoil(rows):
        rows.append(dict(rows[0]))  # duplicate id
        rows.append(dict(rows[1], id="x1", image="../outside.jpg"))
        rows.append(dict(rows[1], id="x2", conversations=[{"from": "gpt", "value": "a"}]))
        rows.append(dict(rows[1], id="x3", conversations=[rows[1]["conversations"][0], {"from": "gpt", "value": " "}]))
        rows.append("not an object")

    _edit(path, spoil)
    (tree / "GQA" / "images" / "n288870.jpg").write_bytes(b"not an image")
    m = check_data(_cfg(tree, check_images="open"), ["GQA"])
    problems = m.tasks[0].malformed
    assert len(problems) == 5
    assert "record 2 (id 02930152): duplicate id '02930152'" in problems[0]
    assert "record 3 (id x1): image path '../outside.jpg' escapes the image root" in problems[1]
    assert "needs a human turn and a gpt turn" in problems[2] and "empty answer" in problems[3]
    assert "record 6: expected an object, got str" in problems[4]
    assert m.tasks[0].unreadable_images[0].startswith("GQA test 20968379: GQA/images/n288870.jpg (UnidentifiedImageError")
    assert check_data(_cfg(tree), ["GQA"], open_images=False).tasks[0].unreadable_images == []


def test_grounding_boxes_and_missing_files(tmp_path):
    root = tmp_path / "coin"
    build_source("refcoco", rs.write_refcoco(tmp_path / "ref"), root)
    _edit(root / "Instructions_Original" / "Grounding" / "test.json",
          lambda rows: rows[0].update(answer_bbox="[0.1, 0.2, 1.4]"))
    m = check_data(_cfg(root), ["Grounding", "OCR-VQA"])
    ground, ocr = m.tasks
    assert "answer_bbox '[0.1, 0.2, 1.4]' is not four numbers in [0, 1]" in ground.malformed[0]
    assert len(ground.missing_images) == 2  # the malformed record's image is not looked at
    assert len(ocr.missing_files) == 2 and "task OCR-VQA: train file not found" in ocr.missing_files[0]


def test_derived_family_checks_the_instruction_line(tree):
    _edit(tree / "Instructions_Original" / "GQA" / "test.json", lambda rows: rows[0].update(text="Who?\nExplain."))
    assert check_data(_cfg(tree), ["GQA"]).ok  # Original is used as it is
    m = check_data(_cfg(tree, instructions="10type"), ["GQA"])
    assert "cannot apply the 10type family" in m.tasks[0].malformed[0]
    assert check_data(_cfg(tree, instructions="bogus"), ["GQA"]).problems[0].startswith("data.instructions: unknown")


def test_derived_family_checks_every_turn_of_a_multi_turn_record(tree):
    """The family rewrites every human turn, so the check must look at each (else it passes
    a file the loader then rejects)."""
    def add_turn(rows):
        rows[0]["conversations"] += [{"from": "human", "value": "And the floor?\nExplain."},
                                     {"from": "gpt", "value": "wood"}]

    _edit(tree / "Instructions_Original" / "GQA" / "train.json", add_turn)
    assert check_data(_cfg(tree), ["GQA"]).ok  # Original is used as it is
    m = check_data(_cfg(tree, instructions="diverse"), ["GQA"])
    assert len(m.tasks[0].malformed) == 1 and "turn 1: last line 'Explain.'" in m.tasks[0].malformed[0]
    with pytest.raises(DataError, match="turn 1"):
        load_benchmark(_cfg(tree, instructions="diverse"), ["GQA"], seed=0)


def test_stats(tree, capsys):
    (gqa,) = stats(_cfg(tree), ["GQA"])
    assert gqa["train"]["n"] == 2 and gqa["train"]["distinct_answers"] == 2
    assert gqa["train"]["answer_words"] == {"mean": 1.0, "median": 1.0, "p90": 1, "max": 1}
    assert main(["data", "stats", "--root", str(tree), "--tasks", "GQA,VizWiz", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [r["task"] for r in table] == ["GQA", "VizWiz"] and table[1]["train"]["answer_words"]["max"] == 2


def test_load_benchmark_applies_families_and_overrides(tree, tmp_path):
    bench = load_benchmark(_cfg(tree, instructions="diverse"), ["GQA", "VizWiz"], seed=0)
    assert bench.train["GQA"][0].prompt == "Is the sky dark?\nRespond to the question briefly, using only one word or a phrase."
    assert bench.test["VizWiz"][0].text.endswith("\nProvide a succinct response with a single word or phrase.")
    # a released Type2 folder is used as it is
    t2 = tree / "Instruction_Type2" / "GQA"
    t2.mkdir(parents=True)
    for split in ("train", "test"):
        (t2 / f"{split}.json").write_text((tree / "Instructions_Original" / "GQA" / f"{split}.json").read_text())
    assert locate(tree, "type2", "GQA", "train").derive is None
    assert load_benchmark(_cfg(tree, instructions="diverse"), ["GQA"], 0).train["GQA"][0].prompt.endswith(
        "a single word or phrase.")
    # per-task overrides: files and image root elsewhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "vw.json").write_text((tree / "Instructions_Original" / "VizWiz" / "test.json").read_text())
    (tree / "VizWiz").rename(elsewhere / "VizWiz")
    cfg = _cfg(tree, paths={"VizWiz": {"test": str(elsewhere / "vw.json")}})
    with pytest.raises(DataError, match="3 image"):  # the images moved
        load_benchmark(cfg, ["VizWiz"], 0)
    cfg.paths["VizWiz"].update(image_root=str(elsewhere), train="Instructions_Original/VizWiz/train.json")
    bench = load_benchmark(cfg, ["VizWiz"], 0)
    assert bench.test["VizWiz"][0].image_path == str((elsewhere / "VizWiz/val/VizWiz_val_00000000.jpg").resolve())


def test_bad_paths_config_and_all_missing_files_listed(tree):
    with pytest.raises(DataError) as e:
        load_benchmark(_cfg(tree, paths={"GQAA": {}, "GQA": {"tran": "x"}}), ["GQA"], 0)
    assert "Did you mean 'GQA'" in str(e.value) and "unknown key 'data.paths.GQA.tran'" in str(e.value)
    with pytest.raises(DataError) as e:
        load_benchmark(_cfg(tree), ["GQA", "TextVQA", "OCR-VQA"], 0)
    assert "4 data file(s) missing" in str(e.value) and "task OCR-VQA: test file not found" in str(e.value)
    assert from_dict({"data": {"paths": {"GQA": {"train": "a.json"}}}}).data.paths == {"GQA": {"train": "a.json"}}


def test_volumes_nested_on_built_data(tree):
    samples = load_benchmark(_cfg(tree), ["GQA"], 0).train["GQA"] * 50  # 100 samples
    small, big = sample_volume(samples, 0.1, 3), sample_volume(samples, 0.2, 3)
    assert len(small) == 10 and len(big) == 20 and all(s in big for s in small)


def test_orders_and_mixture():
    assert resolve_order("paper") == list(ORDERS["paper"]) and resolve_order(["GQA", "VizWiz"]) == ["GQA", "VizWiz"]
    a = resolve_order("shuffle:3")
    assert sorted(a) == sorted(ORDERS["paper"]) and a == resolve_order("shuffle:3") and a != resolve_order("shuffle:4")
    assert order_problems("shuffle:x")[0].startswith("tasks.order: 'shuffle:x' needs an integer seed")
    assert "Did you mean 'GQA'" in order_problems(["GQAA"])[0]
    assert order_problems(["GQA", "GQA"]) == ["tasks.order lists GQA more than once"]
    with pytest.raises(ValueError, match="unknown order 'papr'"):
        resolve_order("papr")
    train = {"A": list(range(5)), "B": list(range(100, 103))}
    mix = mixture(train, seed=0)
    assert sorted(mix) == sorted(train["A"] + train["B"]) and mix == mixture(train, 0) and mix != mixture(train, 1)


def test_check_cli_with_a_config(tree, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{benchmark: coin, root: {tree}}}\ntasks: {{order: [GQA]}}\n")
    assert main(["data", "check", "--config", str(cfg), "--quick"]) == 0
    out = capsys.readouterr().out
    assert "GQA" in out and "VizWiz" not in out and out.strip().endswith("OK")
    Image.new("RGB", (4, 4)).save(tree / "GQA" / "images" / "2354786.jpg")  # still fine
    assert main(["data", "check", "--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
