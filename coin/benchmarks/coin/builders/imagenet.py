"""ImageNet -> CoIN ImageNet: a seeded 100-class subset, answered with readable class names.

Raw folder (the ILSVRC-2012 layout): ``train/<wnid>/*.JPEG``; ``val/`` either sorted into
``val/<wnid>/`` or flat with ``LOC_val_solution.csv`` (``ImageId,PredictionString``, the
wnid first); class names from ``LOC_synset_mapping.txt`` or ``synset_words.txt``
(``<wnid> <name>, <synonym>, ...``) or ``classnames.json`` (``{wnid: name}``).

The subset is ``random.Random(seed).sample`` of the sorted wnids that have training
images, so a seed names the subset. A class's answer is its first name; when two chosen
classes share it (ImageNet has two "crane"s) the later one takes its next synonym.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from coin.benchmarks.coin.builders.builder import BUILDERS, Builder, Built, image_path, prompt, test_record, train_record
from coin.data.coin_json import DataError

SOURCE = "imagenet"
TASK = "ImageNet"
INPUTS = "train/<wnid>/*.JPEG, val/ (by class or with LOC_val_solution.csv), LOC_synset_mapping.txt"
IMAGE_PREFIX = "ImageNet"
QUESTION = "What is the object in the image?"
IMAGE_EXTS = {".jpeg", ".jpg", ".png"}


def read_synsets(raw: Path) -> dict[str, list[str]]:
    """wnid -> its names, from whichever class-name file the folder holds."""
    for name in ("LOC_synset_mapping.txt", "synset_words.txt"):
        path = raw / name
        if path.is_file():
            out = {}
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    wnid, _, names = line.strip().partition(" ")
                    if not names:
                        raise DataError(f"{path} line {n}: expected '<wnid> <name>, ...', got {line!r}")
                    out[wnid] = [s.strip() for s in names.split(",") if s.strip()]
            return out
    path = raw / "classnames.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        return {w: [n] if isinstance(n, str) else list(n) for w, n in data.items()}
    raise DataError(f"{SOURCE}: no LOC_synset_mapping.txt, synset_words.txt or classnames.json in {raw}")


def class_names(wnids: list[str], synsets: dict[str, list[str]]) -> dict[str, str]:
    """Readable, distinct names for ``wnids`` (first synonym, the next one on a clash)."""
    out, used = {}, set()
    for w in wnids:
        if w not in synsets:
            raise DataError(f"{SOURCE}: class {w} has no name in the class-name file")
        name = next((n for n in synsets[w] if n.lower() not in used), f"{synsets[w][0]} ({w})")
        used.add(name.lower())
        out[w] = name
    return out


def _images(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)


def _val(raw: Path, chosen: set[str]) -> list[tuple[str, str]]:
    """(wnid, path relative to the raw folder) of the validation images of the chosen classes."""
    val = raw / "val"
    if not val.is_dir():
        raise DataError(f"{SOURCE}: no val/ folder in {raw}")
    if any((val / w).is_dir() for w in chosen):
        return [(w, f"val/{w}/{f}") for w in sorted(chosen) if (val / w).is_dir() for f in _images(val / w)]
    sol = raw / "LOC_val_solution.csv"
    if not sol.is_file():
        raise DataError(f"{SOURCE}: val/ is not sorted into class folders and {sol} is missing")
    rows = []
    with open(sol, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            if "ImageId" not in row or not (row.get("PredictionString") or "").split():
                raise DataError(f"{sol} line {n}: expected ImageId,PredictionString")
            wnid = row["PredictionString"].split()[0]
            if wnid in chosen:
                rows.append((wnid, f"val/{row['ImageId']}.JPEG"))
    return sorted(rows, key=lambda r: (r[0], r[1]))


def build(raw: Path, prefix: str = IMAGE_PREFIX, seed: int = 0, classes: int = 100) -> Built:
    """CoIN ImageNet: ``classes`` seeded classes, all their train images, their val images as test."""
    train_dir = raw / "train"
    if not train_dir.is_dir():
        raise DataError(f"{SOURCE}: no train/ folder in {raw}")
    available = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if len(available) < classes:
        raise DataError(f"{SOURCE}: asked for {classes} classes but {train_dir} has {len(available)}")
    chosen = sorted(random.Random(seed).sample(available, classes))
    names = class_names(chosen, read_synsets(raw))
    text = prompt(TASK, QUESTION)
    built = Built()
    for w in chosen:
        for f in _images(train_dir / w):
            built.train.append(train_record(Path(f).stem, image_path(prefix, "train", w, f), text, names[w], SOURCE))
    for w, rel in _val(raw, set(chosen)):
        built.test.append(test_record(Path(rel).stem, image_path(prefix, rel), text, names[w], SOURCE))
    return built


BUILDERS.register(Builder(name=SOURCE, task=TASK, build=build, inputs=INPUTS, image_prefix=IMAGE_PREFIX))
