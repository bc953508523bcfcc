"""ScienceQA -> CoIN ScienceQA: every question of a split, options lettered A, B, C, ...

Raw files (the official release): ``problems.json`` (``pid -> {"question", "choices",
"answer": index, "hint", "image": "image.png" | null, "split", ...}``) and
``pid_splits.json`` (``{"train": [pid, ...], "val": [...], "test": [...], ...}``).
Every problem of the split is kept, as the paper's 12,726 train and 4,241 test questions
are ScienceQA's full splits: about half have no image and become text-only records (no
``image`` key, no ``<image>`` line), as LLaVA's ScienceQA files have them. The prompt is::

    Context: <hint>            (left out when the hint is empty)
    <question>
    A. <choice 0>
    B. <choice 1>
    Answer with the option's letter from the given choices directly.

and the target is the letter of ``answer``. Images: ``<prefix>/<split>/<pid>/<image>``.
"""

from __future__ import annotations

import string
from pathlib import Path

from coin.benchmarks.coin.builders.builder import (BUILDERS, Builder, Built, find_file, image_path, need, prompt, read_source_json,
                                       test_record, train_record)
from coin.data.coin_json import DataError

SOURCE = "scienceqa"
TASK = "ScienceQA"
INPUTS = "problems.json and pid_splits.json"
IMAGE_PREFIX = "ScienceQA"
LETTERS = string.ascii_uppercase


def options_block(choices: list[str]) -> list[str]:
    """``["A. first", "B. second", ...]``."""
    return [f"{LETTERS[i]}. {str(c).strip()}" for i, c in enumerate(choices)]


def _problems(raw: Path) -> tuple[dict, dict, Path]:
    ppath = find_file(raw, ["problems.json"], SOURCE)
    spath = find_file(raw, ["pid_splits.json"], SOURCE)
    problems, splits = read_source_json(ppath, SOURCE), read_source_json(spath, SOURCE)
    if not isinstance(problems, dict) or not isinstance(splits, dict):
        raise DataError(f"{SOURCE}: {ppath} and {spath} must both hold a JSON object")
    return problems, splits, ppath


def _split(problems: dict, splits: dict, split: str, prefix: str,
           ppath: Path) -> list[tuple[str, str | None, str, str]]:
    """(pid, image path or None, prompt, letter) of every problem of ``split``."""
    if split not in splits:
        raise DataError(f"{SOURCE}: pid_splits.json has no split {split!r}; it has {', '.join(splits)}")
    out = []
    for pid in splits[split]:
        where = f"{ppath} problem {pid}"
        if str(pid) not in problems:
            raise DataError(f"{where}: listed in pid_splits.json but missing from problems.json")
        p = problems[str(pid)]
        need(p, ("question", "choices", "answer"), where)
        choices, answer = p["choices"], p["answer"]
        if not isinstance(answer, int) or not 0 <= answer < len(choices) or len(choices) > len(LETTERS):
            raise DataError(f"{where}: answer {answer!r} is not an index into its {len(choices)} choices")
        hint = str(p.get("hint") or "").strip()
        text = prompt(TASK, f"Context: {hint}" if hint else "", p["question"], *options_block(choices))
        image = image_path(prefix, split, str(pid), str(p["image"])) if p.get("image") else None
        out.append((str(pid), image, text, LETTERS[answer]))
    return out


def build(raw: Path, prefix: str = IMAGE_PREFIX, seed: int = 0, train_split: str = "train",
          test_split: str = "test") -> Built:
    """CoIN ScienceQA from problems.json and pid_splits.json."""
    problems, splits, ppath = _problems(raw)
    return Built(
        train=[train_record(*r, SOURCE) for r in _split(problems, splits, train_split, prefix, ppath)],
        test=[test_record(*r, SOURCE) for r in _split(problems, splits, test_split, prefix, ppath)],
    )


BUILDERS.register(Builder(name=SOURCE, task=TASK, build=build, inputs=INPUTS, image_prefix=IMAGE_PREFIX))
