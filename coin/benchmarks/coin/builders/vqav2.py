"""VQAv2 -> CoIN VQAv2: one record per question, images from COCO 2014.

Raw files (the official release): ``v2_OpenEnded_mscoco_{train,val}2014_questions.json``
(``{"data_subtype", "questions": [{"image_id", "question", "question_id"}]}``) and
``v2_mscoco_{train,val}2014_annotations.json`` (``{"annotations": [{"question_id",
"multiple_choice_answer", "answers": [{"answer", ...}] x10, ...}]}``).

Training uses train2014 with ``multiple_choice_answer`` as the target. The test set is
val2014, since test2015 has no public answers; its records keep the ten annotator answers
for the VQA soft accuracy.
"""

from __future__ import annotations

from pathlib import Path

from coin.benchmarks.coin.builders.builder import (BUILDERS, Builder, Built, check_answer, find_file, image_path, need, prompt, read_source_json,
                                       records_of, test_record, train_record)
from coin.data.coin_json import DataError

SOURCE = "vqav2"
TASK = "VQAv2"
INPUTS = "v2_OpenEnded_mscoco_{train,val}2014_questions.json and v2_mscoco_{train,val}2014_annotations.json"
IMAGE_PREFIX = "COCO2014"


def _split(raw: Path, subtype: str, prefix: str) -> list[tuple[str, str, str, str, list[str]]]:
    qpath = find_file(raw, [f"v2_OpenEnded_mscoco_{subtype}_questions.json"], SOURCE)
    apath = find_file(raw, [f"v2_mscoco_{subtype}_annotations.json"], SOURCE)
    answers = {}
    for k, a in enumerate(records_of(read_source_json(apath, SOURCE), "annotations", apath)):
        need(a, ("question_id", "multiple_choice_answer", "answers"), f"{apath} annotation {k}")
        answers[a["question_id"]] = (str(a["multiple_choice_answer"]).strip(), [str(x["answer"]) for x in a["answers"]])
    out = []
    for k, q in enumerate(records_of(read_source_json(qpath, SOURCE), "questions", qpath)):
        where = f"{qpath} question {k}"
        need(q, ("image_id", "question", "question_id"), where)
        if q["question_id"] not in answers:
            raise DataError(f"{where}: question_id {q['question_id']} has no annotation in {apath}")
        best, ten = answers[q["question_id"]]
        image = image_path(prefix, subtype, f"COCO_{subtype}_{int(q['image_id']):012d}.jpg")
        out.append((str(q["question_id"]), image, str(q["question"]), check_answer(best, where), ten))
    return out


def build(raw: Path, prefix: str = IMAGE_PREFIX, seed: int = 0, train_split: str = "train2014",
          test_split: str = "val2014") -> Built:
    """CoIN VQAv2 from the official question and annotation files."""
    built = Built()
    for qid, image, question, answer, _ in _split(raw, train_split, prefix):
        built.train.append(train_record(qid, image, prompt(TASK, question), answer, SOURCE))
    for qid, image, question, answer, ten in _split(raw, test_split, prefix):
        built.test.append(test_record(qid, image, prompt(TASK, question), answer, SOURCE, answers=ten))
    return built


BUILDERS.register(Builder(name=SOURCE, task=TASK, build=build, inputs=INPUTS, image_prefix=IMAGE_PREFIX))
