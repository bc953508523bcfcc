"""OCR-VQA -> CoIN OCR-VQA: book covers, one record per (image, question).

Raw file (the official release): ``dataset.json``, a mapping ``asin -> {"imageURL",
"questions": [...], "answers": [...], "title", "authorName", "genre", "split": 1|2|3}``
with split 1 = train, 2 = val, 3 = test. The download script names each image after its
ASIN with the URL's extension; ``<prefix>/<asin><ext>`` here. Ids are ``<asin>_<k>``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from coin.benchmarks.coin.builders.builder import (BUILDERS, Builder, Built, check_answer, find_file, image_path, need, prompt, read_source_json,
                                       test_record, train_record)
from coin.data.coin_json import DataError

SOURCE = "ocrvqa"
TASK = "OCR-VQA"
INPUTS = "dataset.json"
IMAGE_PREFIX = "OCR-VQA/images"
SPLITS = {"train": 1, "val": 2, "test": 3}


def _image_name(asin: str, url: object) -> str:
    ext = PurePosixPath(str(url or "").split("?")[0]).suffix.lower()
    return f"{asin}{ext if ext in ('.jpg', '.jpeg', '.png', '.gif') else '.jpg'}"


def _rows(data: dict, splits: tuple[int, ...], prefix: str, path: Path) -> list[tuple[str, str, str, str]]:
    out = []
    for asin, r in data.items():
        where = f"{path} entry {asin}"
        need(r, ("questions", "answers", "split"), where)
        if int(r["split"]) not in splits:
            continue
        questions, answers = r["questions"], r["answers"]
        if len(questions) != len(answers):
            raise DataError(f"{where}: {len(questions)} questions but {len(answers)} answers")
        image = image_path(prefix, _image_name(asin, r.get("imageURL")))
        for k, (q, a) in enumerate(zip(questions, answers)):
            out.append((f"{asin}_{k}", image, prompt(TASK, q), check_answer(str(a).strip(), f"{where} question {k}")))
    return out


def build(raw: Path, prefix: str = IMAGE_PREFIX, seed: int = 0, train_splits: str = "train",
          test_splits: str = "test") -> Built:
    """CoIN OCR-VQA from dataset.json; ``*_splits`` are comma-separated names (train, val, test)."""
    path = find_file(raw, ["dataset.json"], SOURCE)
    data = read_source_json(path, SOURCE)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping from ASIN to entry, got {type(data).__name__}")

    def codes(names: str) -> tuple[int, ...]:
        try:
            return tuple(SPLITS[n.strip()] for n in names.split(","))
        except KeyError as e:
            raise DataError(f"{SOURCE}: unknown split {e.args[0]!r}; choices: {', '.join(SPLITS)}") from None

    return Built(
        train=[train_record(*r, SOURCE) for r in _rows(data, codes(train_splits), prefix, path)],
        test=[test_record(*r, SOURCE) for r in _rows(data, codes(test_splits), prefix, path)],
    )


BUILDERS.register(Builder(name=SOURCE, task=TASK, build=build, inputs=INPUTS, image_prefix=IMAGE_PREFIX))
