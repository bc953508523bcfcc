"""Resolve a config's data section into training samples and test records for each task.

CoIN-Synth is generated into the cache on first use (keyed by its sizes and seed); real
CoIN data is read from ``data.root``. Either way every file and every image the run will
touch is checked here, before any model loads, and a problem stops the run with a list.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from coin.config import DataConfig
from coin.data.coin_json import DataError, load_test, load_train
from coin.data.synth import fingerprint, generate
from coin.models.vlm import Sample
from coin.tasks import get_task

FAMILY_DIRS = {"original": ("Instructions_Original", "Instruction_Original")}


@dataclass
class Benchmark:
    root: Path
    image_root: Path
    train: dict[str, list[Sample]]
    test: dict[str, list[dict]]


def synth_root(cfg: DataConfig, tasks: list[str]) -> Path:
    """The cached CoIN-Synth folder for these sizes, generated when missing."""
    from coin.models.pretrain import cache_dir

    s = cfg.synth
    root = cache_dir() / "synth" / fingerprint(s.seed, s.n_train, s.n_test, 0, sorted(tasks))
    if not (root / "MANIFEST.json").is_file():
        generate(root, seed=s.seed, n_train=s.n_train, n_test=s.n_test, n_captions=0, tasks=sorted(tasks))
    return root


def task_file(root: Path, family: str, task: str, split: str) -> Path:
    """``<root>/Instructions_<Family>/<Task>/<split>.json`` (either released spelling)."""
    if family not in FAMILY_DIRS:
        raise DataError(f"data.instructions: unknown instruction family {family!r}; choices: {', '.join(FAMILY_DIRS)}")
    folder = get_task(task).folder
    candidates = [root / d / folder / f"{split}.json" for d in FAMILY_DIRS[family]]
    for c in candidates:
        if c.is_file():
            return c
    raise DataError(f"task {task}: {split} file not found; looked for {' and '.join(map(str, candidates))}")


def sample_volume(samples: list, volume: float, seed: int) -> list:
    """A seeded fraction of ``samples``; nested, so the 0.2 sample contains the 0.1 sample."""
    if volume >= 1.0:
        return list(samples)
    order = list(range(len(samples)))
    random.Random(f"volume-{seed}").shuffle(order)
    keep = sorted(order[: max(1, round(volume * len(samples)))])
    return [samples[i] for i in keep]


def load_benchmark(cfg: DataConfig, tasks: list[str], seed: int) -> Benchmark:
    """Load and check every task's files and images; raise ``DataError`` listing what is missing."""
    if cfg.benchmark == "synth":
        root = synth_root(cfg, tasks)
        image_root = root / "images"
    else:
        root = Path(cfg.root or ".")
        if not root.is_dir():
            raise DataError(f"data.root {root} is not a folder")
        image_root = Path(cfg.image_root) if cfg.image_root else root
    train, test, missing = {}, {}, []
    for task in tasks:
        spec = get_task(task)
        samples = load_train(task_file(root, cfg.instructions, task, "train"), image_root, task)
        train[task] = sample_volume(samples, cfg.volume, seed)
        records = load_test(task_file(root, cfg.instructions, task, "test"), image_root, task, spec.answer_form)
        test[task] = records[: cfg.max_test] if cfg.max_test else records
        missing += [f"{task} train {s.id}: {s.image}" for s in train[task] if not Path(s.image).is_file()]
        missing += [f"{task} test {r['question_id']}: {r['image_path']}" for r in test[task] if not Path(r["image_path"]).is_file()]
    if missing:
        shown = "\n  ".join(missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise DataError(f"{len(missing)} image(s) missing under {image_root}:\n  {shown}{more}")
    return Benchmark(root, image_root, train, test)
