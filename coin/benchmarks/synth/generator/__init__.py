"""CoIN-Synth: a procedural CoIN written in the released CoIN JSON formats.

``generate(out_dir, ...)`` writes ``images/``, ``Instructions_Original/<Task>/{train,test}.json``
and ``pretrain/train.json`` (the base model's pretraining data: captions and questions
answered in full sentences). Every record is a pure
function of (seed, task, split, index), so any subset regenerates identically.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

from coin.benchmarks.synth.generator import world
from coin.benchmarks.synth.generator.makers import MAKERS, Example, pretrain_example
from coin.io import atomic_write_json, publish_dir
from coin.tasks import ORDERS, get_task

GENERATOR_VERSION = 5
CAPTION_PROMPT = "Describe the image."


def _rng(seed: int, *key: object) -> random.Random:
    return random.Random("/".join(map(str, (seed,) + key)))


def _text(task: str, ex: Example) -> str:
    spec = get_task(task)
    if "{}" in spec.instruction:
        return spec.instruction.format(ex.detail)
    return f"{ex.question}\n{spec.instruction}"


def _records(task: str, split: str, i: int, ex: Example, image: str) -> tuple[dict, dict]:
    text = _text(task, ex)
    qid = f"{task}-{split}-{i:06d}"
    train = {
        "id": qid,
        "image": image,
        "conversations": [{"from": "human", "value": "<image>\n" + text}, {"from": "gpt", "value": ex.answer}],
    }
    test = {"question_id": qid, "image": image, "text": text, "answer": ex.answer}
    if ex.answers is not None:
        test["answers"] = ex.answers
    if ex.bbox is not None:
        test["answer_bbox"] = ex.bbox
        test["size"] = [world.IMAGE_SIZE, world.IMAGE_SIZE]
    return train, test


def fingerprint(seed: int, n_train: int, n_test: int, n_pretrain: int, tasks: list[str]) -> str:
    """A short hash of everything that determines the generated files."""
    key = json.dumps([GENERATOR_VERSION, seed, n_train, n_test, n_pretrain, sorted(tasks)])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def generate(out_dir: str | os.PathLike, seed: int = 0, n_train: int = 400, n_test: int = 100,
             n_pretrain: int = 6000, tasks: list[str] | None = None) -> Path:
    """Write CoIN-Synth to ``out_dir`` (atomically: built aside, then renamed into place).

    ``tasks`` defaults to the paper's eight; a plugin task with a registered maker
    (``coin.benchmarks.synth.generator.makers.synth_maker``) is generated when named.
    """
    tasks = list(tasks or ORDERS["paper"])
    for task in tasks:
        MAKERS.get(task)  # an unknown task lists the tasks CoIN-Synth can generate
    out = Path(out_dir)
    tmp = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for task in tasks:
        make = MAKERS.get(task)
        folder = get_task(task).folder
        for split, n in (("train", n_train), ("test", n_test)):
            rows = []
            (tmp / "images" / folder).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = _rng(seed, task, split, i)
                ex = make(rng)
                image = f"{folder}/{split}-{i:06d}.png"
                world.render(ex.scene, rng).save(tmp / "images" / image)
                train, test = _records(task, split, i, ex, image)
                rows.append(train if split == "train" else test)
            atomic_write_json(tmp / "Instructions_Original" / folder / f"{split}.json", rows, indent=None)
    caps = []
    (tmp / "images" / "pretrain").mkdir(parents=True, exist_ok=True)
    for i in range(n_pretrain):
        rng = _rng(seed, "pretrain", i)
        scene, pairs = pretrain_example(rng)
        image = f"pretrain/{i:06d}.png"
        world.render(scene, rng).save(tmp / "images" / image)
        conv = []
        for k, (q, a) in enumerate(pairs):
            conv += [{"from": "human", "value": ("<image>\n" if k == 0 else "") + q}, {"from": "gpt", "value": a}]
        caps.append({"id": f"pretrain-{i:06d}", "image": image, "conversations": conv, "labels": world.labels(scene)})
    atomic_write_json(tmp / "pretrain" / "train.json", caps, indent=None)
    atomic_write_json(tmp / "MANIFEST.json", {
        "benchmark": "CoIN-Synth", "generator_version": GENERATOR_VERSION, "seed": seed, "n_train": n_train,
        "n_test": n_test, "n_pretrain": n_pretrain, "tasks": tasks})
    return publish_dir(tmp, out, "MANIFEST.json")  # a concurrent generator's copy is kept, never swapped
