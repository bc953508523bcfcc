"""Reading CoIN's released JSON formats into samples and test records.

Training files: a list of ``{"id", "image", "conversations": [{"from": "human", "value":
"<image>\\n..."}, {"from": "gpt", "value": ...}]}``. Test files: a list of
``{"question_id", "image", "text", "answer"}``; grounding adds ``answer_bbox`` and ``size``
(and needs no ``answer``: a test record holds what its task's protocols read). A record
without ``image`` is text-only: its sample's ``image`` is None. Image paths are relative to
one image root and must stay inside it. A loaded test record is a ``coin.data.sample.TestItem``
(``TestItem.to_row`` gives its JSON back). Every record is validated by ``coin.data.records``,
the validator ``coin data check`` uses too; a file with bad records raises ``DataError``
listing each (file, record index and id).
"""

from __future__ import annotations

import os
from pathlib import Path

from coin.data.records import ANSWER_KEYS, Checked, RecordError, check_records, image_path, problems_message
from coin.data.sample import Sample, TestItem
from coin.errors import DataError
from coin.tasks.protocol_sets import answer_keys as task_answer_keys
from coin.io import read_json


def resolve_image(image_root: Path, rel: str, where: str) -> Path:
    """``image_root / rel``, refusing absolute paths and paths that escape the root."""
    try:
        return Path(image_root).resolve() / image_path(rel)
    except RecordError as e:
        raise DataError(f"{where}: {e}") from None


def read_records(path: str | Path) -> list:
    """A data file's JSON list of records (``DataError`` when the file holds something else).

    A UTF-8 BOM is read; another encoding, bad JSON or JSON nested too deeply is a ``DataError``
    naming the file (``coin.io.read_json``'s ``FileFormatError``, one line).
    """
    try:
        data = read_json(path)
    except ValueError as e:  # coin.io.FileFormatError: the message already names the file
        raise DataError(str(e)) from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _valid(path: Path, split: str, answer_keys: tuple[str, ...] = ANSWER_KEYS,
           rows: list | None = None) -> list[Checked]:
    """Every record of ``path`` (or its ``rows`` as already read) checked; ``DataError`` naming every bad one."""
    checked = list(check_records(read_records(path) if rows is None else rows, split, str(path), answer_keys))
    problems = [c.message for c in checked if c.problem is not None]
    if problems:
        raise DataError(problems_message(problems, str(path)))
    return checked


def _under(root: str, rel: str | None) -> str | None:
    """The absolute path of an image under ``root`` (None for a text-only record)."""
    return None if rel is None else os.path.join(root, rel)


def load_train(path: str | Path, image_root: str | Path, task: str, rows: list | None = None) -> list[Sample]:
    """Training samples from a LLaVA-conversation file (every human/gpt turn pair of each record).

    ``rows``: the file's records as a benchmark prepared them (``coin.benchmarks.layout.read_rows``)."""
    return as_train_samples(_valid(Path(path), "train", rows=rows), image_root, task)


def as_train_samples(checked: list[Checked], image_root: str | Path, task: str) -> list[Sample]:
    """Training samples from records already validated (``check_records``: the data check keeps them)."""
    root = str(Path(image_root).resolve())
    out = []
    for c in checked:
        rec = c.record
        (prompt, answer), rest = rec.turns[0], rec.turns[1:]
        out.append(Sample(id=rec.id, task=task, image=_under(root, rec.image), prompt=prompt, answer=answer,
                          turns=rest))
    return out


def load_test(path: str | Path, image_root: str | Path, task: str, answer_keys: tuple[str, ...] | None = None,
              rows: list | None = None) -> list[TestItem]:
    """Test records (``TestItem``), validated; each gets ``image_path`` (absolute; None: text-only) and ``task`` added.

    ``answer_keys``: the keys each record must hold besides question_id and text (default: what
    ``task``'s protocols read, ``coin.tasks.protocol_sets.answer_keys``, the check's own rule);
    ``rows``: as for ``load_train``."""
    if isinstance(answer_keys, str):  # the answer form ("box") this argument once was
        raise TypeError(f"answer_keys must be a tuple of record keys such as ('answer_bbox',), got {answer_keys!r}")
    keys = task_answer_keys(task) if answer_keys is None else tuple(answer_keys)
    return as_test_records(_valid(Path(path), "test", keys, rows=rows), image_root, task)


def as_test_records(checked: list[Checked], image_root: str | Path, task: str) -> list[TestItem]:
    """Test records from records already validated (``check_records``: the data check keeps them).

    Each is the released record with ``question_id`` (a string), ``task`` and ``image_path`` set,
    in that key order (``TestItem.to_row`` writes it back so)."""
    root = str(Path(image_root).resolve())
    return [TestItem.from_row({**c.raw, "question_id": c.record.question_id, "task": task,
                               "image_path": _under(root, c.record.image)})
            for c in checked]


def eval_samples(records: list[TestItem]) -> list[Sample]:
    """Model inputs for test records (the prompt is the record's full ``text``)."""
    return [Sample(id=r.question_id, task=r.task, image=r.image_path, prompt=r.text.replace("<image>\n", "").strip())
            for r in records]


def missing_images(samples: list[Sample]) -> list[str]:
    """Sample ids and paths whose image file does not exist (text-only samples have none to miss)."""
    return [f"{s.id}: {s.image}" for s in samples if s.image is not None and not Path(s.image).is_file()]
