"""Loading and checking a CoIN tree of 1,000,000 test records (target: under 30 s on 2 cores).

Usage: python bench/bench_data.py [--n N] [--images I] [--keep DIR]

Writes a temporary tree in the released layout: the eight tasks' test files share N records
(Grounding ones with ``answer_bbox`` and ``size``), small train files, and I distinct
real PNG images that the records point at (records share images, as real ones do).
Generation is not timed. Timed: ``check_data`` alone (the manifest: every record
validated, every distinct image stat-ed and its header opened), then ``load_benchmark``,
which is what a run does before any model loads: the same check, then every file loaded
with the loaders' own validation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from coin.config import DataConfig
from coin.data.benchmark import load_benchmark
from coin.data.check import check_data
from coin.tasks import TASKS, get_task


def _record(task: str, i: int, n_images: int) -> dict:
    spec = get_task(task)
    rec = {"question_id": f"{task}-{i}", "image": f"img/{i % n_images:06d}.png"}
    if spec.answer_form == "box":
        box = f"[0.{i % 50:02d}, 0.10, 0.{50 + i % 50:02d}, 0.90]"
        return {**rec, "text": spec.instruction.format(f"the object number {i}"), "answer": box,
                "answer_bbox": box, "size": [640, 480]}
    return {**rec, "text": f"What is shown in picture {i}?\n{spec.instruction}", "answer": f"word{i % 997}"}


def make_tree(root: Path, n: int, n_images: int) -> int:
    """Write the tree; returns the number of test records."""
    tasks = TASKS.names()
    (root / "img").mkdir(parents=True)
    png = root / "img" / "000000.png"
    Image.new("RGB", (32, 32), (10, 120, 200)).save(png)
    data = png.read_bytes()
    for k in range(1, n_images):
        (root / "img" / f"{k:06d}.png").write_bytes(data)
    total = 0
    for t, task in enumerate(tasks):
        folder = root / "Instructions_Original" / get_task(task).folder
        folder.mkdir(parents=True)
        count = n // len(tasks) + (1 if t < n % len(tasks) else 0)
        with open(folder / "test.json", "w") as f:
            json.dump([_record(task, i, n_images) for i in range(count)], f)
        total += count
        train = [{"id": f"{task}-t{i}", "image": f"img/{i % n_images:06d}.png", "conversations": [
            {"from": "human", "value": "<image>\n" + r["text"]}, {"from": "gpt", "value": r["answer"]}]}
            for i, r in enumerate(_record(task, j, n_images) for j in range(100))]
        (folder / "train.json").write_text(json.dumps(train))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="test records in all")
    parser.add_argument("--images", type=int, default=10_000, help="distinct images")
    parser.add_argument("--keep", help="write the tree here and keep it (default: a temp folder, removed)")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="coin-bench-data-"))
    try:
        t0 = time.perf_counter()
        n = make_tree(root, args.n, args.images)
        size = sum(f.stat().st_size for f in root.rglob("*.json"))
        print(f"tree: {n:,} test records, {args.images:,} images, {size / 2**20:.0f} MB of JSON "
              f"(written in {time.perf_counter() - t0:.1f} s, not timed)")
        tasks, cfg = TASKS.names(), DataConfig(benchmark="coin", root=str(root))
        start = time.perf_counter()
        manifest = check_data(cfg, tasks)
        t_check = time.perf_counter() - start
        assert manifest.ok, manifest.format()
        start = time.perf_counter()
        bench = load_benchmark(cfg, tasks, seed=0)
        t_all = time.perf_counter() - start
        assert sum(map(len, bench.test.values())) == n
        print(f"check_data alone: {t_check:.1f} s  ({n / t_check:,.0f} records/s)")
        print(f"load_benchmark (check + load, what a run does): {t_all:.1f} s for {n:,} test records "
              f"(target < 30 s) on {os.cpu_count()} CPUs")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
