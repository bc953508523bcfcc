"""Shapes: a benchmark plugin in one file (two tasks on generated images, its layout and its data).

Run it with the tiny model, no download::

    coin data check --config examples/shapes.yaml
    coin run --config examples/shapes.yaml

A benchmark is a ``BenchmarkSpec`` registered in ``BENCHMARKS``: its tasks (each a ``TaskSpec``
registered in ``TASKS``, scored by registered scorers), its named orders, and where its files
are (``roots``, ``candidates``). This one writes its own data on first use, in CoIN's JSON
formats: ``<root>/<Task>/{train,test}.json`` and ``<root>/images/*.png``. A benchmark whose
files already exist only declares where they are (see ``coin/benchmarks/ucit/benchmark.py``).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from coin.benchmarks import BENCHMARKS, BenchmarkSpec
from coin.scoring.protocol import Protocol
from coin.tasks import TASKS, TaskSpec

VERSION = 1  # of the generated files: a new version writes a new folder
SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 220)}

SHAPE = TASKS.register(TaskSpec(
    name="Shape", folder="Shape", answer_form="class", scorer="exact", max_new_tokens=4,
    instruction="Answer with the shape's name.", abbreviation="Shp", doc="name the one shape in the picture",
    protocols=(Protocol(name="paper", scorer="exact", normalizer="lower", answers="one",
                        rule="case-insensitive exact match against the shape's name"),),
))
COLOUR = TASKS.register(TaskSpec(
    name="Colour", folder="Colour", answer_form="class", scorer="exact", max_new_tokens=4,
    instruction="Answer with the colour's name.", abbreviation="Col", doc="name the colour of the shape",
    protocols=(Protocol(name="paper", scorer="exact", normalizer="lower", answers="one",
                        rule="case-insensitive exact match against the colour's name"),),
))


def _draw(path: Path, shape: str, colour: str, rng: random.Random) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    size, x, y = rng.randint(18, 30), rng.randint(4, 30), rng.randint(4, 30)
    box, fill = (x, y, x + size, y + size), COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(x, y + size), (x + size, y + size), (x + size // 2, y)], fill=fill)
    image.save(path)


def generate(root: Path, n_train: int = 24, n_test: int = 8, seed: int = 0) -> Path:
    """Write the two tasks' files and images under ``root`` (atomically: a half-written tree is never used)."""
    root = Path(root)
    if (root / "COMPLETE").is_file():
        return root
    tmp = root.with_name(root.name + f".partial-{os.getpid()}")
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for task in (SHAPE, COLOUR):
        for split, n in (("train", n_train), ("test", n_test)):
            rows = []
            for i in range(n):
                shape, colour = rng.choice(SHAPES), rng.choice(sorted(COLOURS))
                image = f"images/{task.name}-{split}-{i}.png"
                _draw(tmp / image, shape, colour, rng)
                question = "What shape is this?" if task is SHAPE else "What colour is the shape?"
                answer = shape if task is SHAPE else colour
                qid = f"{task.name}-{split}-{i}"
                if split == "train":
                    rows.append({"id": qid, "image": image, "conversations": [
                        {"from": "human", "value": f"<image>\n{question}\n{task.instruction}"},
                        {"from": "gpt", "value": answer}]})
                else:
                    rows.append({"question_id": qid, "image": image, "text": f"{question}\n{task.instruction}",
                                 "answer": answer})
            (tmp / task.folder).mkdir(exist_ok=True)
            (tmp / task.folder / f"{split}.json").write_text(json.dumps(rows))
    (tmp / "COMPLETE").write_text("")
    try:
        tmp.rename(root)
    except OSError:  # another process finished first
        if not (root / "COMPLETE").is_file():
            raise
    return root


class ShapesBenchmark(BenchmarkSpec):
    """Two tasks on generated pictures of one coloured shape: its shape, then its colour."""

    name = "shapes"
    doc = "two tasks on generated shapes (a benchmark plugin example)"
    sources = "generated on first use (examples/shapes_benchmark.py)"
    orders = {"paper": ("Shape", "Colour"), "reverse": ("Colour", "Shape")}

    def config_problems(self, cfg) -> list[str]:
        return []  # data.root is optional: the files are generated into the cache without one

    def roots(self, cfg, tasks):
        from coin.io import cache_dir

        root = Path(cfg.root).expanduser() if cfg.root else cache_dir() / "benchmarks" / f"shapes-v{VERSION}"
        generate(root)
        return root, root

    def candidates(self, root: Path, task: str, split: str) -> list[Path]:
        return [root / TASKS.get(task).folder / f"{split}.json"]


SPEC = BENCHMARKS.register(ShapesBenchmark())
