"""Reading CoIN's released JSON formats, with validation that names the file and record.

Training files: a list of ``{"id", "image", "conversations": [{"from": "human", "value":
"<image>\\n..."}, {"from": "gpt", "value": ...}]}``. Test files: a list of
``{"question_id", "image", "text", "answer"}``; grounding adds ``answer_bbox`` and ``size``.
Image paths are relative to one image root and must stay inside it.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from coin.io import read_json
from coin.models.vlm import Sample


class DataError(ValueError):
    """A malformed data file or record; the message names the file and the record index."""


def _image_path(root: str, rel: object, where: str) -> str:
    """``root/rel`` as a string for an already resolved ``root``; refuses absolute and ``..`` paths.

    The check is lexical, so a dataset folder symlinked into the image root (a common way
    to lay out COCO, GQA, ...) is accepted, and a million records cost no ``realpath`` each.
    """
    if not isinstance(rel, str) or not rel:
        raise DataError(f"{where}: 'image' must be a non-empty string")
    if rel.startswith(("/", "\\")) or os.path.isabs(rel):
        raise DataError(f"{where}: image path {rel!r} is absolute; it must be relative to the image root")
    norm = posixpath.normpath(rel)
    if norm == ".." or norm.startswith("../"):
        raise DataError(f"{where}: image path {rel!r} escapes the image root {root}")
    return os.path.join(root, norm)


def resolve_image(image_root: Path, rel: str, where: str) -> Path:
    """``image_root / rel``, refusing absolute paths and paths that escape the root."""
    return Path(_image_path(str(Path(image_root).resolve()), rel, where))


def _list(path: Path) -> list:
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def load_train(path: str | Path, image_root: str | Path, task: str) -> list[Sample]:
    """Training samples from a LLaVA-conversation file (every human/gpt turn pair of each record)."""
    path, root = Path(path), str(Path(image_root).resolve())
    out, seen = [], set()
    for k, rec in enumerate(_list(path)):
        where = f"{path} record {k}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected an object, got {type(rec).__name__}")
        for key in ("id", "image", "conversations"):
            if key not in rec:
                raise DataError(f"{where}: missing key {key!r}")
        rid = str(rec["id"])
        if rid in seen:
            raise DataError(f"{where}: duplicate id {rid!r}")
        seen.add(rid)
        conv = rec["conversations"]
        if not isinstance(conv, list) or len(conv) < 2:
            raise DataError(f"{where} (id {rid}): 'conversations' needs a human turn and a gpt turn")
        pairs = _turns(conv, f"{where} (id {rid})")
        (prompt, answer), rest = pairs[0], tuple(pairs[1:])
        image = _image_path(root, rec["image"], f"{where} (id {rid})")
        out.append(Sample(id=rid, task=task, image=image, prompt=prompt, answer=answer, turns=rest))
    return out


def _turns(conv: object, where: str) -> list[tuple[str, str]]:
    """(question, answer) pairs of a LLaVA conversation: human/gpt alternating, none empty.

    Released CoIN files group several questions about one image into one multi-turn
    conversation; every turn is kept and trained on (labels on every answer).
    """
    if not isinstance(conv, list) or len(conv) < 2 or len(conv) % 2:
        raise DataError(f"{where}: 'conversations' needs human/gpt turn pairs")
    pairs = []
    for t in range(0, len(conv), 2):
        human, gpt = conv[t], conv[t + 1]
        if not isinstance(human, dict) or human.get("from") != "human" or not isinstance(gpt, dict) or gpt.get("from") != "gpt":
            raise DataError(f"{where}: conversation turn {t // 2} must be a 'human' turn then a 'gpt' turn")
        q = str(human.get("value", "")).replace("<image>\n", "").replace("<image>", "").strip()
        a = str(gpt.get("value", "")).strip()
        if not q or not a:
            raise DataError(f"{where}: empty {'prompt' if not q else 'answer'} in turn {t // 2}")
        pairs.append((q, a))
    return pairs


def _check_box(value: object, where: str) -> None:
    import re

    nums = re.findall(r"-?\d+(?:\.\d+)?", str(value))
    if len(nums) != 4 or not all(0.0 <= float(n) <= 1.0 for n in nums):
        raise DataError(f"{where}: answer_bbox {value!r} is not four numbers in [0, 1]")


def load_test(path: str | Path, image_root: str | Path, task: str, answer_form: str | None = None) -> list[dict]:
    """Test records, validated; each gets ``image_path`` (absolute) and ``task`` added."""
    path, root = Path(path), str(Path(image_root).resolve())
    out, seen = [], set()
    for k, rec in enumerate(_list(path)):
        where = f"{path} record {k}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected an object, got {type(rec).__name__}")
        for key in ("question_id", "image", "text", "answer"):
            if key not in rec:
                raise DataError(f"{where}: missing key {key!r}")
        qid = str(rec["question_id"])
        if qid in seen:
            raise DataError(f"{where}: duplicate question_id {qid!r}")
        seen.add(qid)
        if not str(rec["text"]).strip():
            raise DataError(f"{where} (question_id {qid}): empty 'text'")
        if answer_form == "box":
            if "answer_bbox" not in rec:
                raise DataError(f"{where} (question_id {qid}): grounding record without 'answer_bbox'")
            _check_box(rec["answer_bbox"], f"{where} (question_id {qid})")
        elif not str(rec["answer"]).strip():
            raise DataError(f"{where} (question_id {qid}): empty 'answer'")
        image = _image_path(root, rec["image"], f"{where} (question_id {qid})")
        out.append({**rec, "question_id": qid, "task": task, "image_path": image})
    return out


def eval_samples(records: list[dict]) -> list[Sample]:
    """Model inputs for test records (the prompt is the record's full ``text``)."""
    return [Sample(id=r["question_id"], task=r["task"], image=r["image_path"], prompt=str(r["text"]).replace("<image>\n", "").strip())
            for r in records]


def missing_images(samples: list[Sample]) -> list[str]:
    """Sample ids and paths whose image file does not exist."""
    return [f"{s.id}: {s.image}" for s in samples if not Path(s.image).is_file()]
