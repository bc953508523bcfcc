"""What a benchmark is: its tasks, its orders, where its released files are, how its records are prepared.

A benchmark is one file (``coin/benchmarks/<name>.py``) holding a ``BenchmarkSpec`` subclass
and one ``BENCHMARKS.register(MyBenchmark())`` call (the spec carries its ``name``). The spec
answers every question the loader (``coin.benchmarks.load``), the check (``coin.benchmarks.check``)
and the dry run ask about data, through ``coin.benchmarks.layout``, which picks the spec that
``data.benchmark`` names:

- ``tasks`` and ``orders``: the task names (``TaskSpec``\\ s registered in ``coin.tasks``)
  and the named orders, the first being the default (``tasks.order: paper``);
- ``roots``: the data root and the image root of a config;
- ``locate``: the file of a task's split in the benchmark's released layout (a
  ``data.paths.<Task>.<split>`` override wins, as for CoIN);
- ``image_root``: the folder a task's image paths are relative to;
- ``prepare_rows`` (before the shared record validator), ``prepare`` (after loading: a
  prompt fix, answers joined from a reference file) and ``notes`` (what ``coin data check``
  reports about a task beyond its records, e.g. a reference file whose ids do not match).

Each benchmark's task names are its own, so a task belongs to at most one benchmark
(``owner``); CoIN and CoIN-Synth claim every registered task no other benchmark lists (so a
plugin task runs on them as before). Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from coin.data.coin_json import DataError
from coin.registry import Registry

if TYPE_CHECKING:
    from coin.config import DataConfig

__all__ = ["BENCHMARKS", "BenchmarkSpec", "Fetch", "Sources", "TaskSource", "get_benchmark", "owner",
           "path_override", "register_benchmark"]

PATH_KEYS = ("train", "test", "image_root", "references")


@dataclass(frozen=True)
class TaskSource:
    """A task split's file, the instruction family still to apply to it (None: use it as it is), and
    where its prompts come from in words (``origin``), for the dry run, the run log and the report:
    ``(as released)``, ``(data.paths.GQA.train)``, ``rewritten with coin's diverse instruction lines
    (no Instructions_Diverse/ under /data/CoIN)``."""

    path: Path
    derive: str | None = None
    origin: str = ""

    def describe(self, root: Path | None = None) -> str:
        """The file (relative to ``root`` when under it) followed by its origin."""
        shown = str(self.path)
        if root is not None:
            try:
                shown = str(Path(self.path).relative_to(root))
            except ValueError:
                pass
        return f"{shown} {self.origin}".rstrip()

    def record(self, root: Path | None = None) -> dict:
        """What a run folder keeps of it (``data_sources.json``): path, family applied, origin, the line."""
        return {"path": str(self.path), "derive": self.derive, "origin": self.origin, "line": self.describe(root)}


@dataclass(frozen=True)
class Fetch:
    """One part of a benchmark's data and the shell lines that fetch it (what a dry run prints for it).

    ``folder``: where it lands, relative to the image root (``under="image_root"``), the data root
    (``"root"``) or, for a file, the file itself (``"file"``). ``commands``: shell lines with
    ``{root}``, ``{image_root}`` and ``{path}`` filled in; a line starting with ``#`` is a step to do by
    hand. ``optional``: needed only when the records name its folder (e.g. COCO val2014).
    """

    name: str
    folder: str
    commands: tuple[str, ...]
    under: str = "image_root"
    optional: bool = False

    def lines(self, root: Path | str = "ROOT", image_root: Path | str = "IMAGE_ROOT", path: Path | str = "") -> list[str]:
        return [c.format(root=root, image_root=image_root, path=path) for c in self.commands]


@dataclass(frozen=True)
class Sources:
    """Where a benchmark's data comes from, in one table: the released files, each task's images, the
    answer files a protocol reads (``data.answers``). The dry run prints the commands of what is missing;
    ``rows`` is the same table for a README."""

    release: Fetch | None = None
    images: Mapping[str, tuple[Fetch, ...]] = field(default_factory=dict)
    answers: Mapping[str, Fetch] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """(what, tasks, folder, commands) per source, each source once (COCO serves two tasks)."""
        out: list[tuple[str, str, str, tuple[str, ...]]] = []
        if self.release is not None:
            out.append((self.release.name, "all", self.release.folder, self.release.commands))
        seen: dict[Fetch, list[str]] = {}
        for task, fetches in self.images.items():
            for f in fetches:
                seen.setdefault(f, []).append(task)
        out += [(f.name, ", ".join(tasks), f.folder, f.commands) for f, tasks in seen.items()]
        out += [(f.name, task, f.folder, f.commands) for task, f in self.answers.items()]
        return out


def path_override(root: Path, cfg: DataConfig | None, task: str, key: str) -> Path | None:
    """``data.paths.<task>.<key>`` as a path (relative ones under ``root``), or None when unset."""
    value = ((getattr(cfg, "paths", None) or {}).get(task) or {}).get(key) if cfg is not None else None
    if not value:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


def first_file(candidates: list[Path], task: str, split: str) -> Path:
    """The first existing file of ``candidates``; ``DataError`` listing every one looked at."""
    for c in candidates:
        if c.is_file():
            return c
    raise DataError(f"task {task}: {split} file not found; looked for {', '.join(map(str, dict.fromkeys(candidates)))}")


class BenchmarkSpec:
    """A benchmark: override ``tasks``, ``orders`` and the layout methods a released tree needs.

    ``families``: instruction families (``data.instructions``) apply to its tasks (CoIN's
    tasks only: the other benchmarks' prompts carry their own instructions). ``open_tasks``:
    it also runs the registered tasks no other benchmark lists (a plugin task on CoIN).
    ``sources``: where the data comes from, one line for ``coin ls benchmarks``; ``fetch``: the
    commands that fetch it, per part (``Sources``), printed by the dry run for what is missing.
    """

    name: str = ""
    doc: str = ""
    sources: str = ""
    fetch: Sources | None = None  # the commands that fetch each part of the data (the dry run prints them)
    families: bool = False
    open_tasks: bool = False  # also runs every registered task no other benchmark lists (CoIN, CoIN-Synth)
    orders: Mapping[str, tuple[str, ...]] = {}

    @property
    def tasks(self) -> tuple[str, ...]:
        """The benchmark's tasks (default: those of its first order)."""
        return tuple(next(iter(self.orders.values()), ()))

    def default_order(self) -> str:
        return next(iter(self.orders))

    # ---------------------------------------------------------------- layout
    def config_problems(self, cfg: DataConfig) -> list[str]:
        """Problems of ``cfg``'s data section that only this benchmark can see, each naming its key."""
        problems = []
        if not cfg.root:
            problems.append(f"data.root is required when data.benchmark is {self.name!r}")
        if not self.families and str(cfg.instructions).lower() not in ("original", "type1"):
            problems.append(f"data.instructions: {self.name} prompts carry their own instructions; only 'original' "
                            f"applies, got {cfg.instructions!r}")
        return problems

    def roots(self, cfg: DataConfig, tasks: list[str]) -> tuple[Path, Path]:
        """(data root, image root): ``data.root`` and ``data.image_root`` (default: the data root)."""
        root = Path(cfg.root or ".").expanduser()
        if not root.is_dir():
            raise DataError(f"data.root {root} is not a folder")
        return root, Path(cfg.image_root).expanduser() if cfg.image_root else root

    def candidates(self, root: Path, task: str, split: str) -> list[Path]:
        """Where the released layout may hold ``task``'s ``split``, most likely first."""
        raise NotImplementedError

    def locate(self, root: Path, family: str, task: str, split: str, cfg: DataConfig | None = None) -> TaskSource:
        """``data.paths.<task>.<split>`` when set, else the first of ``candidates`` that exists."""
        if (p := path_override(root, cfg, task, split)) is not None:
            if not p.is_file():
                raise DataError(f"task {task}: data.paths.{task}.{split} {p} does not exist")
            return TaskSource(p, None, f"(data.paths.{task}.{split})")
        return TaskSource(first_file(self.candidates(root, task, split), task, split), None, "(as released)")

    def expected(self, root: Path, cfg: DataConfig | None, task: str, split: str) -> Path:
        """The file to provide when ``locate`` finds none (what a dry run lists as missing)."""
        return path_override(root, cfg, task, split) or self.candidates(root, task, split)[0]

    def image_root(self, root: Path, image_root: Path, cfg: DataConfig | None, task: str) -> Path:
        """``data.paths.<task>.image_root`` when set, else the shared image root."""
        return path_override(root, cfg, task, "image_root") or image_root

    # ---------------------------------------------------------------- records
    def prepare_rows(self, task: str, split: str, rows: list, path: Path | None = None,
                     image_root: Path | None = None) -> list:
        """A file's raw rows (read from ``path``, images under ``image_root``) before the shared
        validator (``coin.data.records``) sees them."""
        return rows

    def prepare(self, task: str, split: str, items: list, root: Path, cfg: DataConfig | None) -> list:
        """Loaded samples (train: ``Sample``) or test records (test: ``coin.data.sample.TestItem``) after
        validation: prompt fixes, joined answers (``dataclasses.replace``; a new key goes to ``extra``)."""
        return items

    def notes(self, task: str, root: Path, cfg: DataConfig | None,
              test_rows: list | None) -> tuple[list[str], list[str]]:
        """(problems that stop a run, notes that do not) about ``task`` beyond its records."""
        return [], []

    def describe(self) -> dict[str, Any]:
        """Key facts for ``coin ls benchmarks``: tasks, orders, sources."""
        facts = {"tasks": ", ".join(self.tasks)}
        facts.update({f"order {k}": " → ".join(v) for k, v in self.orders.items()})
        if self.sources:
            facts["sources"] = self.sources
        return facts


def benchmark_problems(spec: BenchmarkSpec) -> list[str]:
    """Problems with a benchmark's declaration: a name, registered tasks, orders of its own tasks."""
    from coin.tasks import TASKS

    missing = [t for t in spec.tasks if t not in TASKS]
    if missing:
        return [f"tasks not registered: {', '.join(missing)}"]
    if not spec.name:
        return ["a benchmark needs a name"]
    return [f"order {name!r} lists tasks not of this benchmark" for name, order in spec.orders.items()
            if set(order) - set(spec.tasks)]


BENCHMARKS: Registry[BenchmarkSpec] = Registry("benchmark", builtins=("coin.benchmarks",), check=benchmark_problems)


def register_benchmark(spec: BenchmarkSpec) -> BenchmarkSpec:
    """Deprecated (0.x): use ``BENCHMARKS.register(spec)``, which checks ``spec`` the same way."""
    import warnings

    warnings.warn("register_benchmark(spec) is deprecated; use BENCHMARKS.register(spec)", DeprecationWarning,
                  stacklevel=2)
    return BENCHMARKS.register(spec)


def get_benchmark(name: str) -> BenchmarkSpec:
    """The benchmark registered as ``name`` (an unknown name lists the choices)."""
    return BENCHMARKS.get(name)


def owner(task: str) -> str | None:
    """The benchmark that lists ``task`` among its own tasks (None: a CoIN or plugin task)."""
    for name in BENCHMARKS:
        spec = BENCHMARKS.get(name)
        if not spec.open_tasks and task in spec.tasks:
            return name
    return None
