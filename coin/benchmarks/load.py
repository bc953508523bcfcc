"""Resolve a config's data section into training samples and test records for each task.

Every file and every image the run will touch is checked first (``coin.benchmarks.check``, the
same check as ``coin data check``), before any model loads, and a problem stops the run
with a list. Where the files are (``data.root``, ``data.paths``, the instruction family's
folder, CoIN-Synth in the cache) and how the benchmark prepares their records (``data.benchmark``:
``coin.benchmarks``) is ``coin.benchmarks.layout``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coin.benchmarks import check as data_check
from coin.benchmarks.layout import TaskSource, config_problems, layout_of, locate
from coin.data.coin_json import DataError, as_test_records, as_train_samples, load_test, load_train
from coin.data.sample import Sample, TestItem
from coin.tasks.instructions import apply_family

if TYPE_CHECKING:
    from coin.config import DataConfig

__all__ = ["BenchmarkData", "config_problems", "load_benchmark", "locate", "sample_volume", "verify_data"]


@dataclass
class BenchmarkData:
    root: Path
    image_root: Path
    train: dict[str, list[Sample]]
    test: dict[str, list[TestItem]]
    manifest: Any = None  # coin.benchmarks.check.Manifest: counts, sizes (a run can log it)
    protocol: dict = field(default_factory=dict)  # eval.protocol: per-task scoring protocol chosen by name


def sample_volume(samples: list, volume: float, seed: int) -> list:
    """A seeded fraction of ``samples``; nested, so the 0.2 sample contains the 0.1 sample."""
    if volume >= 1.0:
        return list(samples)
    order = list(range(len(samples)))
    random.Random(f"volume-{seed}").shuffle(order)
    keep = sorted(order[: max(1, round(volume * len(samples)))])
    return [samples[i] for i in keep]


def _derive(items: list, source: TaskSource, seed: int) -> list:
    if source.derive is None:
        return items
    try:
        return apply_family(items, source.derive, seed)
    except ValueError as e:
        raise DataError(f"{source.path} {e}") from None


def verify_data(cfg: DataConfig, tasks: list[str], protocols: dict | None = None):
    """The manifest of every file and image (``data.check_images``); ``DataError`` listing every problem.

    A run calls it in the main process before joining the process group, so the other
    processes never wait at a collective (and its timeout) while it reads a large tree.
    """
    problems = config_problems(cfg)
    if problems:
        raise DataError("invalid data config:\n  - " + "\n  - ".join(problems))
    manifest = data_check.check_data(cfg, tasks, protocols=protocols)
    if not manifest.ok:
        raise DataError(f"{manifest.summary()}; nothing was run.\n{manifest.format()}")
    return manifest


def load_benchmark(cfg: DataConfig, tasks: list[str], seed: int, protocols: dict | None = None,
                   manifest: Any = None, check: bool = True) -> BenchmarkData:
    """Check every file and image first (the manifest), then load; a failed check lists every problem.

    ``protocols`` is the run's ``eval.protocol`` choice: given (even empty), a task whose
    scoring protocol needs ten answers and has none stops here, before any model loads.
    Answer files (``data.answers``) are joined into the test records by question id.
    ``manifest``: a check already done (``verify_data``); ``check=False``: none here (a
    process other than the main one, whose check came first).
    """
    from coin.data.answers import AnswerSourceError, answer_source, join_answers, read_answer_file

    if manifest is None and check:
        manifest = verify_data(cfg, tasks, protocols)
    layout = layout_of(cfg, tasks)  # the benchmark, looked up once
    root, image_root = layout.root, layout.image_root
    checked = {t.task: t for t in getattr(manifest, "tasks", [])}  # records the check validated, used as they are
    train, test = {}, {}
    for task in tasks:
        images = layout.images(task)
        kept = checked.get(task)
        src = layout.source(task, "train")
        valid = kept.records("train", src.path) if kept is not None else None
        samples = as_train_samples(valid, images, task) if valid is not None else \
            load_train(src.path, images, task, layout.rows(src.path, task, "train"))
        samples = sample_volume(layout.prepare(samples, task, "train"), cfg.volume, seed)
        train[task] = _derive(samples, src, seed)
        src = layout.source(task, "test")
        valid = kept.records("test", src.path) if kept is not None else None
        records = as_test_records(valid, images, task) if valid is not None else \
            load_test(src.path, images, task, rows=layout.rows(src.path, task, "test"))
        if kept is not None:
            kept.release()
        records = layout.prepare(records, task, "test")  # e.g. caption references joined (coin.benchmarks)
        if (answers := answer_source(root, getattr(cfg, "answers", None), task)) is not None:
            try:  # checked by check_data already; a process that skipped the check still names the file
                records, _ = join_answers(records, read_answer_file(answers))
            except AnswerSourceError as e:
                raise DataError(f"data.answers.{task}: {e}") from None
        test[task] = _derive(records[: cfg.max_test] if cfg.max_test else records, src, seed)
        for split, items in (("train", train[task]), ("test", test[task])):
            if not items:  # the check refuses an empty file; nothing else may leave a task without a number
                path = layout.source(task, split).path
                raise DataError(f"task {task}: no {split} record left after data.volume={cfg.volume} and "
                                f"data.max_test={cfg.max_test} ({path})")
    return BenchmarkData(root, image_root, train, test, manifest, dict(protocols or {}))
