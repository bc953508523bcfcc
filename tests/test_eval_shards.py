"""An evaluation killed under one process count resumes under another (#29, point 10).

Each process appends answers to ``<task>.rank<r>.partial.jsonl``. A launch with another process
count must neither ask the model again for questions answered in an earlier launch's shard
files, nor stop at the merge because two files hold the same question, and it removes every
shard file it merged. The ranks of a launch are played one after another in this process
(``barrier`` is a no-op outside ``torch.distributed``), which is the order the barriers enforce.
"""

from __future__ import annotations

import json

import pytest

import coin.engine.evaluate as ev
from coin.data.sample import TestItem


class CountingVLM:
    """Answers every question with its id's last character; counts the questions it is asked."""

    def __init__(self):
        self.asked: list[str] = []

    def tokenizer(self, prompts, add_special_tokens=False):
        return {"input_ids": [[1] * len(p) for p in prompts]}

    def generate(self, chunk, max_new_tokens):
        self.asked += [s.id for s in chunk]
        return [f"answer {s.id}" for s in chunk]


RECORDS = [TestItem.from_row({"question_id": f"q{k}", "task": "ImageNet", "image_path": None,
                              "text": f"What is object {k}?" + "?" * k, "answer": f"answer q{k}"}) for k in range(10)]


def _partial(pred_dir, rank, ids):
    path = pred_dir / f"ImageNet.rank{rank}.partial.jsonl"
    path.write_text("".join(json.dumps({"question_id": i, "output": f"answer {i}"}) + "\n" for i in ids))


def _as_rank(monkeypatch, rank, world):
    monkeypatch.setattr(ev, "_rank", lambda: rank)
    monkeypatch.setattr(ev, "_world", lambda: world)


def _evaluate(vlm, pred_dir):
    return ev.evaluate_task(vlm, "ImageNet", RECORDS, 8, 3, pred_dir, progress=False)


def _final(pred_dir):
    rows = [json.loads(line) for line in (pred_dir / "ImageNet.jsonl").read_text().splitlines()]
    return {r["question_id"]: r["output"] for r in rows}


def test_one_process_killed_before_the_merge_resumes_on_two(tmp_path, monkeypatch):
    pred = tmp_path / "predictions"
    pred.mkdir()
    _partial(pred, 0, [r.question_id for r in RECORDS])  # a 1-process launch answered all, then was killed
    vlm = CountingVLM()
    _as_rank(monkeypatch, 1, 2)
    assert _evaluate(vlm, pred) is None  # rank 1 of the 2-process relaunch
    _as_rank(monkeypatch, 0, 2)
    scores = _evaluate(vlm, pred)
    assert vlm.asked == []  # nothing asked twice
    assert scores["paper"].score == 100.0
    assert _final(pred) == {r.question_id: f"answer {r.question_id}" for r in RECORDS}
    assert not list(pred.glob("*.partial.jsonl"))


def test_two_processes_killed_midway_resume_on_one(tmp_path, monkeypatch):
    pred = tmp_path / "predictions"
    pred.mkdir()
    ids = [r.question_id for r in RECORDS]
    _partial(pred, 0, ids[0::2][:3])  # each rank of a 2-process launch answered part of its shard
    _partial(pred, 1, ids[1::2][:4])
    with open(pred / "ImageNet.rank1.partial.jsonl", "a") as f:
        f.write('{"question_id": "q9", "out')  # torn by the kill
    vlm = CountingVLM()
    _as_rank(monkeypatch, 0, 1)
    scores = _evaluate(vlm, pred)
    assert sorted(vlm.asked) == sorted(set(ids) - set(ids[0::2][:3]) - set(ids[1::2][:4]))
    assert scores["paper"].score == 100.0 and len(_final(pred)) == len(RECORDS)
    assert not list(pred.glob("*.partial.jsonl"))  # rank 1's file of the earlier launch is merged and removed


def test_a_question_in_two_shard_files_is_refused(tmp_path, monkeypatch):
    pred = tmp_path / "predictions"
    pred.mkdir()
    _partial(pred, 0, ["q0", "q1"])
    _partial(pred, 3, ["q1"])  # cannot happen through coin: a folder edited or mixed by hand
    _as_rank(monkeypatch, 0, 1)
    with pytest.raises(RuntimeError, match="answered by two shards"):
        _evaluate(CountingVLM(), pred)
