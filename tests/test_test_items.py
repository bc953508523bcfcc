"""The loaded test record is a type (``TestItem``), as a training sample is (``Sample``)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from coin.data.sample import TestItem
from coin.data.answers import AnswerTable, join_answers

ROW = {"question_id": 7, "image": "GQA/images/1.jpg", "text": "What colour?\nAnswer briefly.", "answer": "red",
       "answer_type": "colour", "references": ["a red cube"], "size": [64, 64], "origin_answer_bbox": "[0, 0, 1, 1]"}


def test_from_row_and_to_row_round_trip_keeps_every_key_in_order():
    item = TestItem.from_row(ROW)
    assert item.question_id == "7" and item.text == ROW["text"] and item.answer == "red" and item.size == [64, 64]
    row = item.to_row()
    assert list(row) == list(ROW)
    assert row == {**ROW, "question_id": "7"}
    assert json.dumps(TestItem.from_row(row).to_row()) == json.dumps(row)  # what a writer writes, byte for byte


def test_unknown_keys_go_to_extra_read_only():
    item = TestItem.from_row(ROW)
    assert dict(item.extra) == {"image": "GQA/images/1.jpg", "answer_type": "colour", "references": ["a red cube"],
                                "origin_answer_bbox": "[0, 0, 1, 1]"}
    assert item.answers is None and item.answer_bbox is None and item.image_path is None
    with pytest.raises(TypeError):
        item.extra["image"] = "x"  # type: ignore[index]


def test_the_type_is_frozen_and_replace_appends_a_new_key():
    item = TestItem.from_row(ROW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.text = "other"  # type: ignore[misc]
    added = dataclasses.replace(item, answers=["red"] * 10)
    assert list(added.to_row())[-1] == "answers" and item.answers is None
    assert not item.has("answers") and added.has("answers")


def test_joined_answers_go_last_as_the_dict_join_put_them():
    rows = [{"question_id": "1", "answers": ["old"], "text": "q", "answer": "a"}, {"question_id": "2", "text": "q"}]
    table = AnswerTable(path=None, answers={"1": ["a"] * 10})  # type: ignore[arg-type]
    items, report = join_answers([TestItem.from_row(r) for r in rows], table)
    plain, plain_report = join_answers(rows, table)
    assert [i.to_row() for i in items] == plain and report == plain_report
    assert [list(i.to_row()) for i in items] == [list(r) for r in plain]
    assert not items[1].has("answers") and report.without_answers == ["2"]


def test_a_loaded_coin_synth_config_gives_test_items(micro_config, tmp_path):
    from coin.benchmarks.load import load_benchmark
    from coin.config_load import from_dict

    cfg = from_dict(micro_config)
    bench = load_benchmark(cfg.data, cfg.tasks.order, cfg.seed)
    assert bench.test and all(bench.test.values())
    for task, records in bench.test.items():
        assert all(isinstance(r, TestItem) for r in records), task
        assert all(r.task == task and isinstance(r.question_id, str) for r in records)
        row = records[0].to_row()
        assert list(row)[-2:] == ["task", "image_path"] and TestItem.from_row(row) == records[0]
