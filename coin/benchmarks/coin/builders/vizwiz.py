"""VizWiz VQA -> CoIN VizWiz: one question per image, "unanswerable" where annotators said so.

Raw files (``Annotations/`` of the official release): ``train.json`` and ``val.json``, each
a list of ``{"image", "question", "answers": [{"answer", "answer_confidence"}] x10,
"answerable": 0|1, "answer_type"}``. A question with ``answerable == 0`` gets the target
"unanswerable"; otherwise the most frequent annotator answer. The public test split has no
answers, so CoIN's test set is built from val. Images: ``<prefix>/<split>/<image>``.
"""

from __future__ import annotations

from pathlib import Path

from coin.benchmarks.coin.builders.builder import (BUILDERS, Builder, Built, build_from_splits, check_answer, find_file, image_path, majority, need,
                                       prompt, read_source_json, records_of)

SOURCE = "vizwiz"
TASK = "VizWiz"
INPUTS = "train.json and val.json (VizWiz VQA annotations)"
IMAGE_PREFIX = "VizWiz"
UNANSWERABLE = "unanswerable"


def _split(raw: Path, split: str, prefix: str) -> list[tuple[str, str, str, str, list[str]]]:
    path = find_file(raw, [f"{split}.json", f"Annotations/{split}.json"], SOURCE)
    out = []
    for k, r in enumerate(records_of(read_source_json(path, SOURCE), None, path)):
        where = f"{path} record {k}"
        need(r, ("image", "question", "answers"), where)
        answers = [str(a["answer"]) if isinstance(a, dict) else str(a) for a in r["answers"]]
        answerable = int(r.get("answerable", 1))
        answer = UNANSWERABLE if not answerable else majority(answers)
        qid = Path(str(r["image"])).stem
        out.append((qid, image_path(prefix, split, str(r["image"])), prompt(TASK, r["question"]),
                    check_answer(answer, where), answers))
    return out


def build(raw: Path, prefix: str = IMAGE_PREFIX, seed: int = 0, train_split: str = "train",
          test_split: str = "val") -> Built:
    """CoIN VizWiz from the VQA annotation files."""
    return build_from_splits(_split, raw, prefix, train_split, test_split, SOURCE)


BUILDERS.register(Builder(name=SOURCE, task=TASK, build=build, inputs=INPUTS, image_prefix=IMAGE_PREFIX))
