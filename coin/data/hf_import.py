"""A task's data from a Hugging Face ``datasets`` dataset, written once in CoIN's two record formats.

``coin data import-hf SOURCE --task-folder NAME --out ROOT`` reads SOURCE, which is

- a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (``datasets.load_from_disk``),
- parquet files, or a folder of them, whose names start with the split (``train-00000.parquet``,
  ``test.parquet``; ``datasets.load_dataset("parquet", ...)``),
- or a hub id (``datasets.load_dataset``; only where the network reaches the hub),

and writes ``ROOT/Instructions_Original/NAME/{train,test}.json`` (LLaVA's conversation records for
training, question/answer records for testing, ``coin.data.coin_json``'s formats) and the images under
``ROOT/images/NAME/``, so a one-file task (``docs/own-data.md``) and ``data.benchmark: coin`` read it
as they read CoIN's own files. A column holds the question, one the answer and one the image (a
``datasets.Image`` feature, PIL image, bytes or a path; none: a text-only task). The instruction line
is appended to every question, as CoIN's files carry theirs. Nothing is written until every row of
every split has been read; the files are then written atomically. Needs ``pip install 'coin-cl[hf]'``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from coin.errors import DataError
from coin.io import atomic_write_json

SPLITS = ("train", "test")


def _load(source: str, splits: dict[str, str]) -> dict[str, Any]:
    """``{our split: rows}`` from a saved dataset folder, parquet files or a hub id."""
    try:
        import datasets
    except ImportError:
        from coin import install_hint

        raise DataError(f"reading a Hugging Face dataset needs the datasets package: {install_hint('hf')}") from None
    path = Path(source).expanduser()
    if path.is_dir() and any((path / f).is_file() for f in ("dataset_dict.json", "dataset_info.json", "state.json")):
        loaded = datasets.load_from_disk(str(path))
    elif path.exists():
        files = sorted(path.glob("**/*.parquet")) if path.is_dir() else [path]
        by_split = {ours: [str(f) for f in files if f.name.startswith(theirs)] for ours, theirs in splits.items()}
        missing = [theirs for ours, theirs in splits.items() if not by_split[ours]]
        if missing:
            raise DataError(f"{source}: no parquet file whose name starts with {', '.join(map(repr, missing))} "
                            f"(found: {', '.join(f.name for f in files) or 'none'})")
        loaded = datasets.load_dataset("parquet", data_files=by_split)
        splits = {ours: ours for ours in splits}
    elif source.startswith((".", "/", "~")) or path.suffix:
        raise DataError(f"{source}: no such file or folder (a save_to_disk folder, parquet files or a hub id)")
    else:  # a hub id: needs the network
        try:
            loaded = datasets.load_dataset(source)
        except Exception as e:  # offline, unknown id, gated: one line naming the source
            raise DataError(f"{source}: not a local dataset and the hub could not give it "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(loaded, datasets.Dataset):
        raise DataError(f"{source}: one split only; save a DatasetDict with the splits {', '.join(splits.values())}")
    absent = [theirs for theirs in splits.values() if theirs not in loaded]
    if absent:
        raise DataError(f"{source}: no split {', '.join(map(repr, absent))} (it has: {', '.join(loaded)})")
    return {ours: loaded[theirs] for ours, theirs in splits.items()}


def _save_image(value: Any, target: Path, where: str) -> None:
    from PIL import Image

    try:
        if isinstance(value, dict):  # an undecoded datasets.Image: {"bytes": ..., "path": ...}
            value = value.get("bytes") or value.get("path")
        if isinstance(value, (bytes, bytearray)):
            value = Image.open(io.BytesIO(value))
        elif isinstance(value, (str, Path)):
            value = Image.open(value)
        if not isinstance(value, Image.Image):
            raise DataError(f"{where}: the image column holds {type(value).__name__}, not an image")
        target.parent.mkdir(parents=True, exist_ok=True)
        value.convert("RGB").save(target)
    except OSError as e:
        raise DataError(f"{where}: unreadable image ({e})") from None


def import_hf(source: str, out: str | Path, task_folder: str, *, question: str = "question", answer: str = "answer",
              image: str | None = "image", instruction: str = "", splits: dict[str, str] | None = None) -> dict[str, int]:
    """Write ``source``'s splits as CoIN records under ``out`` (see the module doc); returns the rows per split."""
    out = Path(out)
    splits = dict(splits or {s: s for s in SPLITS})
    data = _load(source, splits)
    line = f"\n{instruction}" if instruction else ""
    records: dict[str, list[dict]] = {}
    for split, rows in data.items():
        columns = set(rows.column_names)
        need = [c for c in (question, answer) if c not in columns]
        if need:
            raise DataError(f"{source} [{split}]: no column {', '.join(map(repr, need))} "
                            f"(columns: {', '.join(sorted(columns))}); name them with --question/--answer")
        with_image = image is not None and image in columns
        records[split] = []
        for k, row in enumerate(rows):
            qid = f"{task_folder}-{split}-{k}"
            where = f"{source} [{split}] row {k}"
            q, a = str(row[question]).strip(), row[answer]
            if a is None or not str(a).strip():
                raise DataError(f"{where}: empty answer in column {answer!r}")
            rel = None
            if with_image and row[image] is not None:
                rel = f"{task_folder}/{split}-{k}.png"
                _save_image(row[image], out / "images" / rel, where)
            if split == "train":
                human = ("<image>\n" if rel else "") + q + line
                rec = {"id": qid, "conversations": [{"from": "human", "value": human},
                                                     {"from": "gpt", "value": str(a).strip()}]}
            else:
                rec = {"question_id": qid, "text": q + line, "answer": str(a).strip()}
            if rel:
                rec["image"] = rel
            records[split].append(rec)
    folder = out / "Instructions_Original" / task_folder
    for split, rows in records.items():
        atomic_write_json(folder / f"{split}.json", rows)
    return {split: len(rows) for split, rows in records.items()}
