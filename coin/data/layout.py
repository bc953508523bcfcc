"""Where a run's data is: the roots, each task's files, and the data section's own checks.

CoIN-Synth is generated into the cache on first use (keyed by its sizes and seed); real
CoIN data is read from ``data.root``. Where a task's files are: ``data.paths.<Task>.{train,
test,image_root}`` when set (used as they are), else ``<root>/Instructions_<Family>/<Task>/
<split>.json`` in either released spelling. A family with no folder of its own (``10type``,
or ``diverse`` when only the Original files are there) is derived from the Original files
by replacing each prompt's format-instruction line (``coin.tasks.instructions``).

Both the loader (``coin.data.benchmark``) and the check (``coin.data.check``) build on this
module, so neither imports the other to find a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coin.data.coin_json import DataError
from coin.data.synth import fingerprint, generate
from coin.io import cache_dir
from coin.tasks import TASKS, get_task
from coin.tasks.instructions import get_family

if TYPE_CHECKING:
    from coin.config import DataConfig

FAMILY_DIRS = {
    "original": ("Instructions_Original", "Instruction_Original"),
    "diverse": ("Instructions_Type2", "Instruction_Type2"),
    "10type": ("Instructions_10Type", "Instruction_10Type"),
}
PATH_KEYS = ("train", "test", "image_root")
CHECK_IMAGES = ("open", "exists")


@dataclass(frozen=True)
class TaskSource:
    """A task split's file, and the family still to apply to it (None: use it as it is)."""

    path: Path
    derive: str | None = None


def config_problems(cfg: DataConfig) -> list[str]:
    """Problems with ``data.instructions``, ``data.paths``, ``data.check_images`` and
    ``data.answers``, each naming its key (the run config's validation calls it)."""
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


def synth_root(cfg: DataConfig, tasks: list[str]) -> Path:
    """The cached CoIN-Synth folder for these sizes, generated when missing."""
    s = cfg.synth
    root = cache_dir() / "synth" / fingerprint(s.seed, s.n_train, s.n_test, 0, sorted(tasks))
    if not (root / "MANIFEST.json").is_file():
        generate(root, seed=s.seed, n_train=s.n_train, n_test=s.n_test, n_pretrain=0, tasks=sorted(tasks))
    return root


def path_override(root: Path, cfg: DataConfig | None, task: str, key: str) -> Path | None:
    """``data.paths.<task>.<key>`` as a path (relative ones under ``root``), or None when unset."""
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
    if (p := path_override(root, cfg, task, split)) is not None:
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
    return path_override(root, cfg, task, "image_root") or image_root
