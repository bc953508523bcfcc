"""GQA -> CoIN GQA: the balanced question files, one record per question.

Raw files (the official release): ``train_balanced_questions.json`` and
``testdev_balanced_questions.json``, each a mapping ``question id -> {"imageId",
"question", "answer", "fullAnswer", ...}``. The short ``answer`` is the target (CoIN's GQA
test set is testdev-balanced, 12,578 questions). Images: ``<prefix>/<imageId>.jpg``.
"""

from __future__ import annotations

from pathlib import Path

from coin.benchmarks.coin.builders.builder import (BUILDERS, Builder, Built, check_answer, find_file, image_path, need, prompt, read_source_json,
                                       test_record, train_record)
from coin.data.coin_json import DataError

SOURCE = "gqa"
TASK = "GQA"
INPUTS = "train_balanced_questions.json and testdev_balanced_questions.json"
IMAGE_PREFIX = "GQA/images"


def _questions(raw: Path, name: str, prefix: str) -> list[tuple[str, str, str, str]]:
    path = find_file(raw, [name], SOURCE)
    data = read_source_json(path, SOURCE)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping from question id to question, got {type(data).__name__}")
    out = []
    for qid, q in data.items():
        where = f"{path} question {qid}"
        need(q, ("imageId", "question", "answer"), where)
        answer = check_answer(str(q["answer"]).strip(), where)
        out.append((str(qid), image_path(prefix, f"{q['imageId']}.jpg"), str(q["question"]), answer))
    return out


def build(raw: Path, prefix: str = IMAGE_PREFIX, seed: int = 0, train_file: str = "train_balanced_questions.json",
          test_file: str = "testdev_balanced_questions.json") -> Built:
    """CoIN GQA from the balanced question files (file order kept)."""
    return Built(
        train=[train_record(q, i, prompt(TASK, t), a, SOURCE) for q, i, t, a in _questions(raw, train_file, prefix)],
        test=[test_record(q, i, prompt(TASK, t), a, SOURCE) for q, i, t, a in _questions(raw, test_file, prefix)],
    )


BUILDERS.register(Builder(name=SOURCE, task=TASK, build=build, inputs=INPUTS, image_prefix=IMAGE_PREFIX))
