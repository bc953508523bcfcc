"""TextVQA 0.5.1 -> CoIN TextVQA: question plus the image's OCR tokens in the prompt.

Raw files: ``TextVQA_0.5.1_{train,val}.json`` (``{"data": [{"question_id", "image_id",
"question", "answers": [10 strings], "ocr_tokens"?: [...], ...}]}``). OCR tokens come from
each record's ``ocr_tokens`` when present, else from the Rosetta OCR release
``TextVQA_Rosetta_OCR_v0.2_{split}.json`` (``{"data": [{"image_id", "ocr_tokens"}]}``)
when it is in the folder. The prompt is LLaVA's::

    <question>
    Reference OCR token: <tok1>,<tok2>,...
    Answer the question using a single word or phrase.

(the OCR line is left out when an image has no tokens). Train is the train split with the
majority answer as target; test is the val split (CoIN's 5,000) with all ten answers.
Both splits' images lie in ``train_images/``.
"""

from __future__ import annotations

from pathlib import Path

from coin.benchmarks.coin.builders.builder import (BUILDERS, Builder, Built, build_from_splits, check_answer, find_file, image_path, majority, need,
                                       prompt, read_source_json, records_of)
from coin.data.coin_json import DataError

SOURCE = "textvqa"
TASK = "TextVQA"
INPUTS = "TextVQA_0.5.1_{train,val}.json (+ optional TextVQA_Rosetta_OCR_v0.2_{train,val}.json)"
IMAGE_PREFIX = "TextVQA/train_images"


def _rosetta(raw: Path, split: str) -> dict[str, list[str]]:
    try:
        path = find_file(raw, [f"TextVQA_Rosetta_OCR_v0.2_{split}.json"], SOURCE)
    except DataError:
        return {}
    rows = records_of(read_source_json(path, SOURCE), "data", path)
    return {str(r["image_id"]): list(r.get("ocr_tokens") or []) for r in rows if isinstance(r, dict) and "image_id" in r}


def ocr_line(tokens: list[str]) -> str:
    """LLaVA's OCR reference line, or "" for an image without tokens."""
    tokens = [str(t).strip() for t in tokens if str(t).strip()]
    return "Reference OCR token: " + ",".join(tokens) if tokens else ""


def _split(raw: Path, split: str, prefix: str) -> list[tuple[str, str, str, str, list[str]]]:
    path = find_file(raw, [f"TextVQA_0.5.1_{split}.json"], SOURCE)
    ocr = _rosetta(raw, split)
    out = []
    for k, r in enumerate(records_of(read_source_json(path, SOURCE), "data", path)):
        where = f"{path} record {k}"
        need(r, ("question_id", "image_id", "question", "answers"), where)
        tokens = r["ocr_tokens"] if "ocr_tokens" in r else ocr.get(str(r["image_id"]), [])
        answers = [str(a) for a in r["answers"]]
        text = prompt(TASK, r["question"], ocr_line(tokens))
        out.append((str(r["question_id"]), image_path(prefix, f"{r['image_id']}.jpg"), text,
                    check_answer(majority(answers), where), answers))
    return out


def build(raw: Path, prefix: str = IMAGE_PREFIX, seed: int = 0, train_split: str = "train",
          test_split: str = "val") -> Built:
    """CoIN TextVQA from the 0.5.1 files."""
    return build_from_splits(_split, raw, prefix, train_split, test_split, SOURCE)


BUILDERS.register(Builder(name=SOURCE, task=TASK, build=build, inputs=INPUTS, image_prefix=IMAGE_PREFIX))
