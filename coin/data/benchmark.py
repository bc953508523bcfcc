"""Resolve a config's data section into training samples and test records for each task.

CoIN-Synth is generated into the cache on first use (keyed by its sizes and seed); real
CoIN data is read from ``data.root``. Either way every file and every image the run will
touch is checked here, before any model loads, and a problem stops the run with a list.

Where a task's files are: ``data.paths.<Task>.{train,test,image_root}`` when set (used as
they are), else ``<root>/Instructions_<Family>/<Task>/<split>.json`` in either released
spelling. A family with no folder of its own (``10type``, or ``diverse`` when only the
Original files are there) is derived from the Original files by replacing each prompt's
format-instruction line (``coin.tasks.instructions``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coin.config import DataConfig
from coin.data.coin_json import DataError, load_test, load_train
from coin.data.synth import fingerprint, generate
from coin.models.vlm import Sample
from coin.tasks import TASKS, get_task
from coin.tasks.instructions import apply_family, get_family

FAMILY_DIRS = {
    "original": ("Instructions_Original", "Instruction_Original"),
    "diverse": ("Instructions_Type2", "Instruction_Type2"),
    "10type": ("Instructions_10Type", "Instruction_10Type"),
}
PATH_KEYS = ("train", "test", "image_root")
CHECK_IMAGES = ("open", "exists")


@dataclass
class Benchmark:
    root: Path
    image_root: Path
    train: dict[str, list[Sample]]
    test: dict[str, list[dict]]
    manifest: Any = None  # coin.data.check.Manifest: counts, sizes (a run can log it)
    protocol: dict = field(default_factory=dict)  # eval.protocol: per-task scoring protocol chosen by name


@dataclass(frozen=True)
class TaskSource:
    """A task split's file, and the family still to apply to it (None: use it as it is)."""

    path: Path
    derive: str | None = None


def synth_root(cfg: DataConfig, tasks: list[str]) -> Path:
    """The cached CoIN-Synth folder for these sizes, generated when missing."""
    from coin.models.pretrain import cache_dir

    s = cfg.synth
    root = cache_dir() / "synth" / fingerprint(s.seed, s.n_train, s.n_test, 0, sorted(tasks))
    if not (root / "MANIFEST.json").is_file():
        generate(root, seed=s.seed, n_train=s.n_train, n_test=s.n_test, n_pretrain=0, tasks=sorted(tasks))
    return root


def config_problems(cfg: DataConfig) -> list[str]:
    """Problems with ``data.instructions`` and ``data.paths``, each naming its key."""
    problems = []
    try:
        get_family(cfg.instructions)
    except KeyError as e:
        problems.append(f"data.instructions: {e}")
    for task, entry in (getattr(cfg, "paths", None) or {}).items():
        if task not in TASKS:
            problems.append(f"data.paths: {TASKS.unknown_message(task)}")
        elif not isinstance(entry, dict):
            problems.append(f"data.paths.{task} must be a mapping with keys {', '.join(PATH_KEYS)}, got {entry!r}")
        else:
            for key, value in entry.items():
                if key not in PATH_KEYS:
                    problems.append(f"unknown key 'data.paths.{task}.{key}' (choices: {', '.join(PATH_KEYS)})")
                elif not isinstance(value, str) or not value:
                    problems.append(f"data.paths.{task}.{key} must be a path, got {value!r}")
    if getattr(cfg, "check_images", "exists") not in CHECK_IMAGES:
        problems.append(f"data.check_images must be one of {', '.join(CHECK_IMAGES)}, got {cfg.check_images!r}")
    answers = getattr(cfg, "answers", None) or {}
    if not isinstance(answers, dict):
        problems.append(f"data.answers must be a mapping of task names to answer files, got {answers!r}")
        answers = {}
    for task, value in answers.items():
        if task not in TASKS:
            problems.append(f"data.answers: {TASKS.unknown_message(task)}")
        elif not isinstance(value, str) or not value:
            problems.append(f"data.answers.{task} must be a path to an answer file, got {value!r}")
    return problems


def _override(root: Path, cfg: DataConfig | None, task: str, key: str) -> Path | None:
    value = ((getattr(cfg, "paths", None) or {}).get(task) or {}).get(key) if cfg is not None else None
    if not value:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


def locate(root: Path, family: str, task: str, split: str, cfg: DataConfig | None = None) -> TaskSource:
    """Where ``task``'s ``split`` comes from: an override, the family's folder, or Original + derive."""
    try:
        fam = get_family(family).name
    except KeyError as e:
        raise DataError(f"data.instructions: {e}") from None
    if (p := _override(root, cfg, task, split)) is not None:
        if not p.is_file():
            raise DataError(f"task {task}: data.paths.{task}.{split} {p} does not exist")
        return TaskSource(p)
    spec = get_task(task)
    folders = dict.fromkeys((spec.folder, spec.name))
    looked = []
    for fam_try, derive in ((fam, None), ("original", fam if fam != "original" else None)):
        for d in FAMILY_DIRS[fam_try]:
            for folder in folders:
                c = root / d / folder / f"{split}.json"
                if c.is_file():
                    return TaskSource(c, derive)
                looked.append(str(c))
        if fam == "original":
            break
    raise DataError(f"task {task}: {split} file not found; looked for {', '.join(dict.fromkeys(looked))}")


def task_file(root: Path, family: str, task: str, split: str) -> Path:
    """The file ``task``'s ``split`` is read from (see ``locate``)."""
    return locate(root, family, task, split).path


def data_roots(cfg: DataConfig, tasks: list[str]) -> tuple[Path, Path]:
    """(data root, image root) of a config; generates CoIN-Synth when that is the benchmark."""
    if cfg.benchmark == "synth":
        root = synth_root(cfg, tasks)
        return root, root / "images"
    root = Path(cfg.root or ".").expanduser()
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a folder")
    return root, Path(cfg.image_root).expanduser() if cfg.image_root else root


def task_image_root(root: Path, image_root: Path, cfg: DataConfig, task: str) -> Path:
    """``data.paths.<Task>.image_root`` when set, else the shared image root."""
    return _override(root, cfg, task, "image_root") or image_root


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
    from coin.data.check import check_data  # check builds on this module

    problems = config_problems(cfg)
    if problems:
        raise DataError("invalid data config:\n  - " + "\n  - ".join(problems))
    manifest = check_data(cfg, tasks, protocols=protocols)
    if not manifest.ok:
        raise DataError(f"{manifest.summary()}; nothing was run.\n{manifest.format()}")
    return manifest


def load_benchmark(cfg: DataConfig, tasks: list[str], seed: int, protocols: dict | None = None,
                   manifest: Any = None, check: bool = True) -> Benchmark:
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
    root, image_root = data_roots(cfg, tasks)
    train, test = {}, {}
    for task in tasks:
        spec = get_task(task)
        images = task_image_root(root, image_root, cfg, task)
        src = locate(root, cfg.instructions, task, "train", cfg)
        samples = sample_volume(load_train(src.path, images, task), cfg.volume, seed)
        train[task] = _derive(samples, src, seed)
        src = locate(root, cfg.instructions, task, "test", cfg)
        records = load_test(src.path, images, task, spec.answer_form)
        if (answers := answer_source(root, getattr(cfg, "answers", None), task)) is not None:
            try:  # checked by check_data already; a process that skipped the check still names the file
                records, _ = join_answers(records, read_answer_file(answers))
            except AnswerSourceError as e:
                raise DataError(f"data.answers.{task}: {e}") from None
        test[task] = _derive(records[: cfg.max_test] if cfg.max_test else records, src, seed)
    return Benchmark(root, image_root, train, test, manifest, dict(protocols or {}))
