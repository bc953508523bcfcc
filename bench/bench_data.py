"""Loading and checking a CoIN tree of 1,000,000 test records (target: under 30 s on 2 cores),
and the training input pipeline with and without loader workers.

Usage: python bench/bench_data.py [--n N] [--images I] [--keep DIR]
       python bench/bench_data.py --loader [--workers 2] [--steps 12] [--image-size 336]

Writes a temporary tree in the released layout: the eight tasks' test files share N records
(Grounding ones with ``answer_bbox`` and ``size``), small train files, and I distinct
real PNG images that the records point at (records share images, as real ones do).
Generation is not timed. Timed: ``check_data`` alone (the manifest: every record
validated, every distinct image stat-ed (``data.check_images: exists``, a run's default) and,
with ``open``, its header read too), then ``load_benchmark``, which is what a run does before
any model loads: the same check, then every file loaded with the loaders' own validation.

``--loader``: training steps/s of a tiny model on distinct JPEG photos-like images of
``--image-size`` pixels (decoded and preprocessed every step, as real data is), with batches
built in the training loop (``train.num_workers: 0``) and ahead of it by ``--workers``
processes; also the loader's own samples/s without training.
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
from coin.benchmarks.load import load_benchmark
from coin.benchmarks.check import check_data
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


def tiny_setup(root: Path, n: int, image_size: int = 336):
    """A tiny LLaVA (with a LoRA adapter) for ``image_size``-pixel images, and ``n`` samples whose
    distinct JPEG images (noise over a gradient: costly to decode, like photos) are under ``root``."""
    import numpy as np

    from coin.adapters import attach_adapter
    from coin.config import AdapterConfig
    from coin.models.tiny.model import TinyConfig, build_model, build_processor, train_tokenizer
    from coin.models.llava.wrapper import LlavaVLM, Sample

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    samples = []
    for k in range(n):
        path = root / f"{k:05d}.jpg"
        ramp = np.linspace(0, 200, image_size * 4 // 3, dtype=np.float32)[None, :, None]
        pixels = np.clip(ramp + rng.normal(0, 30, (image_size, image_size * 4 // 3, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=90)
        samples.append(Sample(f"s{k}", "VQAv2", str(path), f"What is in picture {k}?\nAnswer briefly.", f"thing {k % 37}"))
    tok = train_tokenizer([s.prompt + " " + s.answer for s in samples[:200]] + ["USER: ASSISTANT:"], 512)
    cfg = TinyConfig(vocab_size=512, image_size=image_size, patch_size=24, vision_width=64, vision_layers=2,
                     vision_heads=2, lm_width=128, lm_layers=2, lm_heads=2, lm_ffn=256)
    vlm = LlavaVLM(build_model(cfg, tok, seed=0), build_processor(tok, cfg))
    attach_adapter(vlm, AdapterConfig(r=8, alpha=16))
    return vlm, samples


def loader_samples_per_s(vlm, samples: list, workers: int, batch_size: int = 8) -> float:
    """Samples/s of the training loader alone (decode, pad to a square, preprocess, tokenise)."""
    from coin.engine.loader import load_batches

    parts = [samples[k : k + batch_size] for k in range(0, len(samples), batch_size)]
    start = time.perf_counter()
    for _ in load_batches(parts, vlm.train_batch, workers):
        pass
    return len(samples) / (time.perf_counter() - start)


def train_steps_per_s(vlm, samples: list, workers: int, batch_size: int = 8) -> float:
    """Optimizer steps/s of ``train_stage`` over ``samples`` with ``workers`` loader workers."""
    from coin.config import TrainConfig
    from coin.engine.train import train_stage
    from coin.methods import StageContext

    cfg = TrainConfig(batch_size=batch_size, lr=1e-4, checkpoint_every=0, num_workers=workers)
    stats = train_stage(StageContext(vlm=vlm, task="VQAv2", stage=0, tasks=["VQAv2"]), samples, cfg, [], seed=0,
                        progress=False)
    return stats.steps / stats.seconds


def loader_main(args) -> None:
    import torch

    root = Path(tempfile.mkdtemp(prefix="coin-bench-loader-"))
    try:
        vlm, samples = tiny_setup(root, args.steps * 8, args.image_size)
        print(f"tiny model, {args.image_size}-pixel JPEG images, batch 8, {args.steps} steps, "
              f"{torch.get_num_threads()} training threads, {os.cpu_count()} CPUs")
        for workers in (0, args.workers):
            load = loader_samples_per_s(vlm, samples, workers)
            steps = train_steps_per_s(vlm, samples, workers)
            print(f"num_workers {workers}: {steps:.2f} steps/s training, loader alone {load:.0f} samples/s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="test records in all")
    parser.add_argument("--images", type=int, default=10_000, help="distinct images")
    parser.add_argument("--keep", help="write the tree here and keep it (default: a temp folder, removed)")
    parser.add_argument("--loader", action="store_true", help="measure the training input pipeline instead")
    parser.add_argument("--workers", type=int, default=2, help="--loader: loader workers to compare with none")
    parser.add_argument("--steps", type=int, default=12, help="--loader: training steps of batch 8")
    parser.add_argument("--image-size", type=int, default=336, help="--loader: image side in pixels")
    args = parser.parse_args()
    if args.loader:
        return loader_main(args)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="coin-bench-data-"))
    try:
        t0 = time.perf_counter()
        n = make_tree(root, args.n, args.images)
        size = sum(f.stat().st_size for f in root.rglob("*.json"))
        print(f"tree: {n:,} test records, {args.images:,} images, {size / 2**20:.0f} MB of JSON "
              f"(written in {time.perf_counter() - t0:.1f} s, not timed)")
        tasks, cfg = TASKS.names(), DataConfig(benchmark="coin", root=str(root))
        start = time.perf_counter()
        assert check_data(cfg, tasks, open_images=True).ok
        t_open = time.perf_counter() - start
        start = time.perf_counter()
        manifest = check_data(cfg, tasks)
        t_check = time.perf_counter() - start
        assert manifest.ok, manifest.format()
        start = time.perf_counter()
        bench = load_benchmark(cfg, tasks, seed=0)
        t_all = time.perf_counter() - start
        assert sum(map(len, bench.test.values())) == n
        print(f"check_data alone: {t_check:.1f} s  ({n / t_check:,.0f} records/s; images stat-ed), "
              f"{t_open:.1f} s with check_images: open (headers read)")
        print(f"load_benchmark (check + load, what a run does): {t_all:.1f} s for {n:,} test records "
              f"(target < 30 s) on {os.cpu_count()} CPUs")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
