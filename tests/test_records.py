"""`coin data check` and the loader agree on every record: whatever the check passes the run
accepts, and whatever the check rejects the loader rejects, naming the same file and record.

Each case writes one task's CoIN files (a train and a test file) under ``tmp_path``, with
one bad record (or none), then asks both: the check (``check_task``) and the loader
(``load_train`` / ``load_test``). They used to disagree: the check looked at the first
turn pair only, so a multi-turn record with a bad later turn passed it and then stopped
the run.
"""

from __future__ import annotations

import json

import pytest

from coin.benchmarks.check import check_task
from coin.data.coin_json import DataError, load_test, load_train

PROMPT = "<image>\nWhat is it?\nAnswer the question using a single word or phrase."


def _train(i: int, image: str = "a.png", **kw) -> dict:
    rec = {"id": f"t{i}", "image": image, "conversations": [
        {"from": "human", "value": PROMPT}, {"from": "gpt", "value": "cat"}]}
    return {**rec, **kw}


def _turns(*extra: tuple[str, object]) -> list:
    """A good first pair then ``extra`` turns given as (speaker, value)."""
    return [{"from": "human", "value": PROMPT}, {"from": "gpt", "value": "cat"}] + [
        {"from": s, "value": v} for s, v in extra]


def _test(i: int, image: str = "a.png", **kw) -> dict:
    return {"question_id": f"q{i}", "image": image, "text": "What is it?\nAnswer the question using a single word or phrase.",
            "answer": "cat", **kw}


def _box(i: int, **kw) -> dict:
    return {"question_id": f"g{i}", "image": "a.png", "text": "Please provide the bounding box coordinate of the region "
            "this sentence describes: the cat", "answer": "[0.1, 0.2, 0.3, 0.4]", "answer_bbox": "[0.1, 0.2, 0.3, 0.4]",
            "size": [8, 8], **kw}


def _without(rec: dict, key: str) -> dict:
    return {k: v for k, v in rec.items() if k != key}


# (name, task, split, records, index of the bad record or None)
CASES = [
    ("train-good", "GQA", "train", [_train(0), _train(1)], None),
    ("train-multi-turn-good", "GQA", "train",
     [_train(0, conversations=_turns(("human", "And its colour?"), ("gpt", "red")))], None),
    ("train-later-turn-empty-answer", "GQA", "train",
     [_train(0), _train(1, conversations=_turns(("human", "And its colour?"), ("gpt", "  ")))], 1),
    ("train-later-turn-empty-question", "GQA", "train",
     [_train(0), _train(1, conversations=_turns(("human", "<image>"), ("gpt", "red")))], 1),
    ("train-later-turn-wrong-speaker", "GQA", "train",
     [_train(0, conversations=_turns(("gpt", "And its colour?"), ("human", "red")))], 0),
    ("train-later-turn-not-an-object", "GQA", "train",
     [_train(0, conversations=_turns(("human", "And its colour?")) + ["red"])], 0),
    ("train-odd-length", "GQA", "train", [_train(0), _train(1, conversations=_turns(("human", "dangling")))], 1),
    ("train-one-turn", "GQA", "train", [_train(0, conversations=[{"from": "gpt", "value": "a"}])], 0),
    ("train-conversations-not-a-list", "GQA", "train", [_train(0, conversations="hi")], 0),
    ("train-first-answer-empty", "GQA", "train",
     [_train(0, conversations=[{"from": "human", "value": PROMPT}, {"from": "gpt", "value": ""}])], 0),
    ("train-first-prompt-empty", "GQA", "train",
     [_train(0, conversations=[{"from": "human", "value": "<image>\n"}, {"from": "gpt", "value": "cat"}])], 0),
    ("train-missing-conversations", "GQA", "train", [_train(0), _without(_train(1), "conversations")], 1),
    ("train-text-only", "GQA", "train", [_without(_train(0), "image"), _train(1, image=None)], None),
    ("train-duplicate-id", "GQA", "train", [_train(0), _train(1), _train(0)], 2),
    ("train-escaping-image", "GQA", "train", [_train(0), _train(1, image="sub/../../a.png")], 1),
    ("train-absolute-image", "GQA", "train", [_train(0, image="/etc/passwd")], 0),
    ("train-empty-image", "GQA", "train", [_train(0, image="")], 0),
    ("train-image-not-a-string", "GQA", "train", [_train(0, image=["a.png"])], 0),
    ("train-not-an-object", "GQA", "train", [_train(0), "not an object"], 1),
    ("test-good", "GQA", "test", [_test(0), _test(1, question_id=7)], None),
    ("test-missing-answer", "GQA", "test", [_test(0), _without(_test(1), "answer")], 1),
    ("test-text-only", "GQA", "test", [_without(_test(0), "image"), _test(1, image=None)], None),
    ("test-empty-text", "GQA", "test", [_test(0, text=" ")], 0),
    ("test-empty-answer", "GQA", "test", [_test(0, answer="")], 0),
    ("test-duplicate-question-id", "GQA", "test", [_test(0), _test(1, question_id="q0")], 1),
    ("test-escaping-image", "GQA", "test", [_test(0, image="../a.png")], 0),
    ("test-not-an-object", "GQA", "test", [[1, 2]], 0),
    ("grounding-good", "Grounding", "test", [_box(0), _box(1, answer="")], None),  # a box record's answer is its box
    ("grounding-three-numbers", "Grounding", "test", [_box(0), _box(1, answer_bbox="[0.1, 0.2, 0.3]")], 1),
    ("grounding-out-of-range", "Grounding", "test", [_box(0, answer_bbox="[0.1, 0.2, 1.3, 0.4]")], 0),
    ("grounding-no-box", "Grounding", "test", [_without(_box(0), "answer_bbox")], 0),
    ("grounding-no-answer", "Grounding", "test", [_without(_box(0), "answer")], None),  # scored on answer_bbox
]


def _write(root, task: str, split: str, records: list):
    """The task's two files (``records`` in ``split``, one good record in the other) and the image."""
    folder = root / "Instructions_Original" / task
    folder.mkdir(parents=True, exist_ok=True)
    other = {"train": [_train(90)], "test": [_box(90) if task == "Grounding" else _test(90)]}
    other[split] = records
    for name, rows in other.items():
        (folder / f"{name}.json").write_text(json.dumps(rows))
    (root / "a.png").write_bytes(b"x")  # images are stat-ed, not opened (open_images=False)
    return folder / f"{split}.json"


def _load(path, root, task: str, split: str) -> None:
    if split == "train":
        load_train(path, root, task)
    else:
        load_test(path, root, task)  # the keys its protocols read, as the check asks


@pytest.mark.parametrize("name, task, split, records, bad", CASES, ids=[c[0] for c in CASES])
def test_check_and_loader_agree(tmp_path, name, task, split, records, bad):
    root = tmp_path / "coin"
    path = _write(root, task, split, records)
    manifest = check_task(root, root, "original", task, open_images=False)
    try:
        _load(path, root, task, split)
        loader_error = None
    except DataError as e:
        loader_error = str(e)
    assert manifest.ok == (loader_error is None), (manifest.malformed, manifest.missing_images, loader_error)
    if bad is None:
        return
    assert len(manifest.malformed) == 1, manifest.malformed
    (problem,) = manifest.malformed
    assert problem.startswith(f"{path} record {bad}"), problem
    assert problem in loader_error  # the same file, record, id and words


def test_every_bad_record_is_named_by_both(tmp_path):
    """The check lists every bad record (not the first), and the loader's error lists the same."""
    root = tmp_path / "coin"
    records = [_train(0), _train(0), _train(2, image="/x.png"),
               _train(3, conversations=_turns(("human", "And?"), ("gpt", ""))), _train(4)]
    path = _write(root, "GQA", "train", records)
    malformed = check_task(root, root, "original", "GQA", open_images=False).malformed
    assert [p.split(":")[0] for p in malformed] == [f"{path} record {k}" + label for k, label in
                                                    ((1, " (id t0)"), (2, " (id t2)"), (3, " (id t3)"))]
    with pytest.raises(DataError) as e:
        load_train(path, root, "GQA")
    assert all(p in str(e.value) for p in malformed), str(e.value)
