"""CoIN: the eight tasks of the paper in its released layout, with its three instruction families.

Where a task's files are: ``data.paths.<Task>.{train,test}`` when set, else
``<root>/Instructions_<Family>/<Task>/<split>.json`` in either released spelling
(``Instructions_`` or ``Instruction_``). A family with no folder of its own (``10type``, or
``diverse`` when only the Original files are there) is derived from the Original files by
replacing each prompt's format-instruction line (``coin.tasks.instructions``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from coin.benchmarks.spec import BenchmarkSpec, TaskSource, owner, path_override, register_benchmark
from coin.data.coin_json import DataError
from coin.tasks import TASKS, get_task
from coin.tasks.instructions import get_family
from coin.tasks.orders import ORDERS

if TYPE_CHECKING:
    from coin.config import DataConfig

FAMILY_DIRS = {
    "original": ("Instructions_Original", "Instruction_Original"),
    "diverse": ("Instructions_Type2", "Instruction_Type2"),
    "10type": ("Instructions_10Type", "Instruction_10Type"),
}


class CoinBenchmark(BenchmarkSpec):
    """CoIN (Chen et al.): ScienceQA, TextVQA, ImageNet, GQA, VizWiz, Grounding, VQAv2, OCR-VQA."""

    name = "coin"
    doc = "CoIN: eight vision-language tasks, the released JSON under data.root"
    sources = "the released CoIN files (Instructions_Original/<Task>/{train,test}.json) and the source images"
    families = True
    open_tasks = True
    orders = ORDERS  # coin.tasks.orders: paper, alphabet (and 'shuffle:<seed>')

    @property
    def tasks(self) -> tuple[str, ...]:
        """The paper's eight, then every registered task no other benchmark lists (a plugin's)."""
        own = tuple(ORDERS["paper"])
        return own + tuple(t for t in TASKS if t not in own and owner(t) is None)

    def config_problems(self, cfg: DataConfig) -> list[str]:
        return [] if cfg.root else [f"data.root is required when data.benchmark is {self.name!r}"]

    def locate(self, root: Path, family: str, task: str, split: str, cfg: DataConfig | None = None) -> TaskSource:
        """An override, the family's folder, or the Original file and the family to derive from it."""
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

    def expected(self, root: Path, cfg: DataConfig | None, task: str, split: str) -> Path:
        """The override, else the Original file (every family can be derived from it)."""
        original = root / FAMILY_DIRS["original"][0] / get_task(task).folder / f"{split}.json"
        return path_override(root, cfg, task, split) or original


SPEC = register_benchmark(CoinBenchmark())
