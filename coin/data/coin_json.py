"""Reading CoIN's released JSON formats into samples and test records.

Training files: a list of ``{"id", "image", "conversations": [{"from": "human", "value":
"<image>\\n..."}, {"from": "gpt", "value": ...}]}``. Test files: a list of
``{"question_id", "image", "text", "answer"}``; grounding adds ``answer_bbox`` and ``size``.
Image paths are relative to one image root and must stay inside it. Every record is
validated by ``coin.data.records``, the validator ``coin data check`` uses too; a file with
bad records raises ``DataError`` listing each (file, record index and id).
"""

from __future__ import annotations

import os
from pathlib import Path

from coin.data.records import Checked, RecordError, check_records, image_path, problems_message
from coin.data.sample import Sample
from coin.io import read_json


class DataError(ValueError):
    """A malformed data file or record; the message names the file and the record index."""


def resolve_image(image_root: Path, rel: str, where: str) -> Path:
    """``image_root / rel``, refusing absolute paths and paths that escape the root."""
    try:
        return Path(image_root).resolve() / image_path(rel)
    except RecordError as e:
        raise DataError(f"{where}: {e}") from None


def read_records(path: str | Path) -> list:
    """A data file's JSON list of records (``DataError`` when the file holds something else)."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _valid(path: Path, split: str, box: bool = False, rows: list | None = None) -> list[Checked]:
    """Every record of ``path`` (or its ``rows`` as already read) checked; ``DataError`` naming every bad one."""
    checked = list(check_records(read_records(path) if rows is None else rows, split, str(path), box))
    problems = [c.message for c in checked if c.problem is not None]
    if problems:
        raise DataError(problems_message(problems, str(path)))
    return checked


def load_train(path: str | Path, image_root: str | Path, task: str, rows: list | None = None) -> list[Sample]:
    """Training samples from a LLaVA-conversation file (every human/gpt turn pair of each record).

    ``rows``: the file's records as a benchmark prepared them (``coin.data.layout.read_rows``)."""
    path, root = Path(path), str(Path(image_root).resolve())
    out = []
    for c in _valid(path, "train", rows=rows):
        rec = c.record
        (prompt, answer), rest = rec.turns[0], rec.turns[1:]
        out.append(Sample(id=rec.id, task=task, image=os.path.join(root, rec.image), prompt=prompt, answer=answer,
                          turns=rest))
    return out


def load_test(path: str | Path, image_root: str | Path, task: str, answer_form: str | None = None,
              rows: list | None = None) -> list[dict]:
    """Test records, validated; each gets ``image_path`` (absolute) and ``task`` added (``rows``: as for ``load_train``)."""
    path, root = Path(path), str(Path(image_root).resolve())
    return [{**c.raw, "question_id": c.record.question_id, "task": task, "image_path": os.path.join(root, c.record.image)}
            for c in _valid(path, "test", box=answer_form == "box", rows=rows)]


def eval_samples(records: list[dict]) -> list[Sample]:
    """Model inputs for test records (the prompt is the record's full ``text``)."""
    return [Sample(id=r["question_id"], task=r["task"], image=r["image_path"], prompt=str(r["text"]).replace("<image>\n", "").strip())
            for r in records]


def missing_images(samples: list[Sample]) -> list[str]:
    """Sample ids and paths whose image file does not exist."""
    return [f"{s.id}: {s.image}" for s in samples if not Path(s.image).is_file()]
