"""Where a run's data is: the benchmark ``data.benchmark`` names answers, and the data section's own checks.

A benchmark (``coin.benchmarks``: ``coin``, ``synth``, ``ucit``, ``mllm-dcl``, ``mllm-acl``)
knows its released layout: the roots of a config, each task's files (``data.paths.<Task>.
{train,test,image_root,references}`` override it, used as they are), how a file's rows are
prepared before and after the shared record validator. CoIN-Synth is generated into the
cache on first use; the others are read from ``data.root``. CoIN's families with no folder of
their own are derived from the Original files (``coin.benchmarks.coin.benchmark``).

Both the loader (``coin.benchmarks.load``) and the check (``coin.benchmarks.check``) build on this
module, so neither imports the other to find a file, and both read a file's rows through
``read_rows`` so that they see the same records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coin.benchmarks import BENCHMARKS, BenchmarkSpec, TaskSource, get_benchmark
from coin.benchmarks.coin.benchmark import FAMILY_DIRS, file_set_problems
from coin.benchmarks.spec import PATH_KEYS, path_override
from coin.benchmarks.synth.benchmark import synth_root
from coin.data.coin_json import read_records
from coin.tasks import TASKS
from coin.tasks.instructions import get_family

if TYPE_CHECKING:
    from coin.config import DataConfig

__all__ = ["CHECK_IMAGES", "DataLayout", "FAMILY_DIRS", "PATH_KEYS", "TaskSource", "benchmark_of", "benchmark_tasks",
           "config_problems", "data_roots", "data_sources", "expected_file", "locate", "notes", "path_override",
           "layout_of", "prepare", "prepare_rows", "read_rows", "source_lines", "synth_root", "task_image_root"]

# data.check_images, from the quickest to the most thorough (coin.benchmarks.check, coin.data.images):
# "exists" stats each image before a run and reads its header while the model loads; "open" reads
# every header before anything; "decode" also decodes every image before anything
CHECK_IMAGES = ("exists", "open", "decode")


@dataclass(frozen=True)
class DataLayout:
    """A config's benchmark looked up once, with the data root and image root it resolved.

    The loader and the check ask it, per task, where each split's file is (``source``), which
    folder the task's images are under (``images``), and how the benchmark prepares rows and
    records (``rows``, ``prepare``), instead of passing (root, image root, config, task, split)
    to functions that each look the benchmark up again.
    """

    spec: BenchmarkSpec
    cfg: DataConfig | None
    root: Path
    image_root: Path

    @property
    def family(self) -> str:
        return getattr(self.cfg, "instructions", "original")

    def source(self, task: str, split: str) -> TaskSource:
        """Where ``task``'s ``split`` comes from (``DataError`` if nowhere)."""
        return self.spec.locate(self.root, self.family, task, split, self.cfg)

    def images(self, task: str) -> Path:
        """``data.paths.<Task>.image_root`` when set, else the benchmark's image root for the task."""
        return self.spec.image_root(self.root, self.image_root, self.cfg, task)

    def rows(self, path: Path, task: str, split: str, rows: list | None = None) -> list:
        """A file's rows (read here unless given) as the benchmark prepares them for the shared validator."""
        rows = read_records(path) if rows is None else rows
        return self.spec.prepare_rows(task, split, rows, Path(path), Path(self.images(task)))

    def prepare(self, items: list, task: str, split: str) -> list:
        """Loaded samples or test records after the benchmark's own step (a prompt fix, joined references)."""
        return self.spec.prepare(task, split, items, self.root, self.cfg)

    def notes(self, task: str, test_rows: list | None) -> tuple[list[str], list[str]]:
        """(problems, notes) the benchmark finds about ``task`` beyond its records."""
        return self.spec.notes(task, self.root, self.cfg, test_rows)


def layout_of(cfg: DataConfig, tasks: list[str]) -> DataLayout:
    """The config's ``DataLayout`` (generates CoIN-Synth into the cache when that is the benchmark)."""
    spec = benchmark_of(cfg)
    root, image_root = spec.roots(cfg, tasks)
    return DataLayout(spec, cfg, Path(root), Path(image_root))


def benchmark_of(cfg: DataConfig | None) -> BenchmarkSpec:
    """The benchmark ``cfg.data.benchmark`` names (CoIN when there is no config)."""
    return get_benchmark(getattr(cfg, "benchmark", None) or "coin")


def benchmark_tasks(cfg: DataConfig | None) -> list[str]:
    """Every task of the config's benchmark, in its default order (what a check without a task list covers)."""
    return list(benchmark_of(cfg).tasks)


def config_problems(cfg: DataConfig) -> list[str]:
    """Problems with ``data.benchmark``, ``data.instructions``, ``data.paths``, ``data.check_images`` and
    ``data.answers``, each naming its key (the run config's validation calls it)."""
    problems = []
    if cfg.benchmark not in BENCHMARKS:
        problems.append(f"data.benchmark: {BENCHMARKS.unknown_message(cfg.benchmark)}")
    else:
        problems += get_benchmark(cfg.benchmark).config_problems(cfg)
    try:
        get_family(cfg.instructions)
    except KeyError as e:
        problems.append(f"data.instructions: {e}")
    problems += file_set_problems(cfg)
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


def locate(root: Path, family: str, task: str, split: str, cfg: DataConfig | None = None) -> TaskSource:
    """Where ``task``'s ``split`` comes from, in the layout of the config's benchmark (``DataError`` if nowhere)."""
    return benchmark_of(cfg).locate(root, family, task, split, cfg)


SPLITS = ("train", "test")


def data_sources(root: Path, cfg: DataConfig | None, tasks: list[str]) -> dict:
    """Where each task's files come from, as a run folder keeps it (``data_sources.json``) and the
    report reads it: ``{task: {split: {path, derive, origin, line}}}`` (``TaskSource.record``); a
    split found nowhere holds ``{"missing": message}``."""
    from coin.data.coin_json import DataError

    family = getattr(cfg, "instructions", "original")
    out: dict = {}
    for task in tasks:
        for split in SPLITS:
            try:
                entry = locate(root, family, task, split, cfg).record(root)
            except DataError as e:
                entry = {"missing": str(e)}
            out.setdefault(task, {})[split] = entry
    return out


def source_lines(sources: dict) -> list[str]:
    """One line per task: each split's file (relative to the data root) and where its prompts come from."""
    lines = []
    for task, splits in sources.items():
        parts = [f"{split} {e.get('line') or e.get('missing', '?')}" for split, e in splits.items()]
        lines.append(f"  {task:<10} " + "; ".join(parts))
    return lines


def expected_file(root: Path, cfg: DataConfig | None, task: str, split: str) -> Path:
    """The file to provide for ``task``'s ``split`` when ``locate`` finds none (a dry run lists it)."""
    return benchmark_of(cfg).expected(root, cfg, task, split)


def data_roots(cfg: DataConfig, tasks: list[str]) -> tuple[Path, Path]:
    """(data root, image root) of a config; generates CoIN-Synth when that is the benchmark."""
    return benchmark_of(cfg).roots(cfg, tasks)


def task_image_root(root: Path, image_root: Path, cfg: DataConfig, task: str) -> Path:
    """``data.paths.<Task>.image_root`` when set, else the benchmark's image root for the task."""
    return benchmark_of(cfg).image_root(root, image_root, cfg, task)


def read_rows(path: Path, cfg: DataConfig | None, task: str, split: str, image_root: Path) -> list:
    """A data file's rows as the benchmark prepares them for the shared validator (``DataError`` if not a list)."""
    return prepare_rows(read_records(path), path, cfg, task, split, image_root)


def prepare_rows(rows: list, path: Path, cfg: DataConfig | None, task: str, split: str, image_root: Path) -> list:
    """Rows already read from ``path``, prepared by the benchmark (image paths rooted, absent answers marked)."""
    return benchmark_of(cfg).prepare_rows(task, split, rows, Path(path), Path(image_root))


def prepare(items: list, cfg: DataConfig | None, task: str, split: str, root: Path) -> list:
    """Loaded samples or test records after the benchmark's own step (a prompt fix, joined references)."""
    return benchmark_of(cfg).prepare(task, split, items, root, cfg)


def notes(root: Path, cfg: DataConfig | None, task: str, test_rows: list | None) -> tuple[list[str], list[str]]:
    """(problems, notes) the benchmark finds about ``task`` beyond its records (e.g. a reference file)."""
    return benchmark_of(cfg).notes(task, root, cfg, test_rows)
