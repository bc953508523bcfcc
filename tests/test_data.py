"""Loading CoIN JSON: malformed records and bad image paths are errors naming file and record."""

import json

import pytest

from coin.config import DataConfig
from coin.benchmarks.load import load_benchmark, sample_volume
from coin.data.coin_json import DataError, load_test, load_train, resolve_image


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _train(i, image="a.png", answer="cat"):
    return {"id": f"t{i}", "image": image, "conversations": [
        {"from": "human", "value": "<image>\nWhat is it?\nAnswer the question using a single word or phrase."},
        {"from": "gpt", "value": answer}]}


def test_train_records_load(tmp_path):
    f = _write(tmp_path / "train.json", [_train(0), _train(1)])
    samples = load_train(f, tmp_path, "GQA")
    assert [s.id for s in samples] == ["t0", "t1"]
    assert samples[0].prompt.startswith("What is it?") and samples[0].answer == "cat"
    assert samples[0].image == str((tmp_path / "a.png").resolve())


@pytest.mark.parametrize("bad, message", [
    ({"id": "x", "image": "a.png"}, "record 1 (id x): missing key 'conversations'"),
    (_train(0), "record 1 (id t0): duplicate id 't0'"),
    (_train(5, answer=""), "record 1 (id t5): empty answer"),
    (_train(6, image="../outside.png"), "escapes the image root"),
    (_train(7, image="/etc/passwd"), "is absolute"),
])
def test_malformed_train_record_is_named(tmp_path, bad, message):
    f = _write(tmp_path / "train.json", [_train(0), bad])
    with pytest.raises(DataError) as e:
        load_train(f, tmp_path / "img", "GQA")
    assert str(f) in str(e.value) and message in str(e.value)


def test_test_records_and_boxes(tmp_path):
    good = {"question_id": 1, "image": "a.png", "text": "Please provide ...: the cat", "answer": "[0.10, 0.20, 0.30, 0.40]",
            "answer_bbox": "[0.10, 0.20, 0.30, 0.40]", "size": [64, 64]}
    f = _write(tmp_path / "test.json", [good])
    assert load_test(f, tmp_path, "Grounding")[0].question_id == "1"
    bad = dict(good, question_id=2, answer_bbox="[0.1, 0.2, 1.3, 0.4]")
    f = _write(tmp_path / "test2.json", [good, bad])
    with pytest.raises(DataError, match=r"record 1 \(question_id 2\): answer_bbox .* not four numbers in \[0, 1\]"):
        load_test(f, tmp_path, "Grounding")
    f = _write(tmp_path / "test3.json", [good, dict(good)])
    with pytest.raises(DataError, match="duplicate question_id '1'"):
        load_test(f, tmp_path, "Grounding")


def test_not_a_list_and_not_json(tmp_path):
    f = _write(tmp_path / "x.json", {"a": 1})
    with pytest.raises(DataError, match="expected a JSON list"):
        load_test(f, tmp_path, "GQA")
    g = tmp_path / "y.json"
    g.write_text("[{")
    with pytest.raises(ValueError, match=f"{g}: not valid JSON"):
        load_train(g, tmp_path, "GQA")


def test_resolve_image_stays_inside(tmp_path):
    assert resolve_image(tmp_path, "sub/a.png", "w") == (tmp_path / "sub" / "a.png").resolve()
    with pytest.raises(DataError):
        resolve_image(tmp_path, "sub/../../a.png", "w")


def test_volume_is_seeded_and_nested():
    xs = list(range(100))
    a, b = sample_volume(xs, 0.1, 0), sample_volume(xs, 0.2, 0)
    assert len(a) == 10 and len(b) == 20 and set(a) <= set(b)
    assert sample_volume(xs, 0.1, 0) == a and sample_volume(xs, 0.1, 1) != a


def test_missing_image_is_listed_before_anything_runs(tmp_path):
    root = tmp_path / "coin"
    _write(root / "Instructions_Original" / "GQA" / "train.json", [_train(0, image="here.png"), _train(1, image="gone.png")])
    _write(root / "Instructions_Original" / "GQA" / "test.json",
           [{"question_id": "q", "image": "here.png", "text": "Q?\nAnswer.", "answer": "a"}])
    (root / "here.png").write_bytes(b"")
    with pytest.raises(DataError) as e:
        load_benchmark(DataConfig(benchmark="coin", root=str(root)), ["GQA"], seed=0)
    assert "1 image(s) missing" in str(e.value) and "GQA train t1" in str(e.value) and "gone.png" in str(e.value)
    with pytest.raises(DataError, match="test file not found"):
        load_benchmark(DataConfig(benchmark="coin", root=str(root)), ["GQA", "VizWiz"], seed=0)


def test_multi_turn_conversations_keep_every_turn(tmp_path):
    rec = _train(0)
    rec["conversations"] += [{"from": "human", "value": "And its colour?"}, {"from": "gpt", "value": "red"}]
    s = load_train(_write(tmp_path / "train.json", [rec]), tmp_path, "GQA")[0]
    assert s.answer == "cat" and s.turns == (("And its colour?", "red"),)
    rec["conversations"].append({"from": "human", "value": "dangling"})
    with pytest.raises(DataError, match="human/gpt turn pairs"):
        load_train(_write(tmp_path / "t2.json", [rec]), tmp_path, "GQA")


def test_a_file_with_many_bad_records_names_each(tmp_path):
    """The loader reads the whole file and lists every bad record (capped), not the first only."""
    f = _write(tmp_path / "train.json", [_train(0)] + [_train(i, answer="") for i in range(1, 26)])
    with pytest.raises(DataError) as e:
        load_train(f, tmp_path, "GQA")
    lines = str(e.value).splitlines()
    assert lines[0] == f"{f}: 25 bad records" and lines[-1] == "  ... and 5 more"
    assert lines[1] == f"  {f} record 1 (id t1): empty answer in turn 0" and len(lines) == 22


def test_cache_dir_is_coin_cache_else_home(monkeypatch, tmp_path):
    from coin.io import cache_dir

    monkeypatch.setenv("COIN_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("COIN_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "coin"


def test_publishing_a_cache_folder_keeps_a_complete_one(tmp_path):
    """Two processes building the same cache entry: the second keeps the first's folder (a reader
    of it never sees it vanish); an incomplete folder is replaced."""
    from coin.io import publish_dir

    out = tmp_path / "entry"
    first, second = tmp_path / "a.partial", tmp_path / "b.partial"
    for d, tag in ((first, "a"), (second, "b")):
        d.mkdir()
        (d / "MANIFEST.json").write_text(tag)
    publish_dir(first, out, "MANIFEST.json")
    inode = (out / "MANIFEST.json").stat().st_ino
    publish_dir(second, out, "MANIFEST.json")
    assert (out / "MANIFEST.json").read_text() == "a" and (out / "MANIFEST.json").stat().st_ino == inode
    assert not second.exists()
    (out / "MANIFEST.json").unlink()  # now incomplete: replaced
    third = tmp_path / "c.partial"
    third.mkdir()
    (third / "MANIFEST.json").write_text("c")
    publish_dir(third, out, "MANIFEST.json")
    assert (out / "MANIFEST.json").read_text() == "c"
