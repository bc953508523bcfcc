"""Evaluation with the next batch's images prepared in a thread (``prefetch``) vs inline.

Usage: python bench/bench_eval_prefetch.py [--n 128] [--batch-size 16] [--side 640] [--reps 3] [--threads N]
                                           [--backbone tiny|qwen2-vl]

``--backbone tiny`` (default): the tiny LLaVA-style model, ``LlavaVLM.prefetch`` (the images' pixels).
``--backbone qwen2-vl``: a tiny random Qwen2-VL (tests/tinyhf.py's, saved and loaded through coin's
``ChatVLM`` as ``model.name: qwen2-vl`` loads it), ``ChatVLM.prefetch`` (the whole generation batch:
images decoded, resized and cut into patches by the Qwen2-VL processor, prompts tokenised).

``--n`` questions on as many distinct JPEG photos of ``--side`` x 3/4 ``--side`` pixels (noise, so
decoding costs what a photo's does), answered by the tiny model (random weights of the built-in
size; no cache needed) at ``--batch-size`` with 8 new tokens, through ``generate_answers`` as a
run evaluates. Each evaluation starts with an empty pixel cache, so every image is decoded and
preprocessed once: inline before its batch (``prefetch`` off) or in a thread while the batch
before is answered (on). The two run round-robin in one process; the median samples/s of each and
their ratio are printed, with whether the answers are identical.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--side", type=int, default=640)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--backbone", default="tiny", choices=["tiny", "qwen2-vl"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from coin.engine.evaluate import generate_answers

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = backbone(args.backbone, Path(tmp) / "model")
        records = []
        for k in range(args.n):
            path = Path(tmp) / f"{k}.jpg"
            pixels = rng.integers(0, 256, (args.side * 3 // 4, args.side, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path, quality=90)
            records.append({"question_id": str(k), "task": "GQA", "image_path": str(path),
                            "text": f"What is in picture {k}?"})
        generate_answers(fresh(), records[:2], 8, 2, progress=False)  # warm-up, untimed
        times: dict[str, list[float]] = {"inline": [], "prefetch": []}
        answers: dict[str, dict] = {}
        for _ in range(args.reps):
            for mode in times:
                vlm = fresh()  # an empty pixel cache every time
                if mode == "inline":
                    vlm.prefetch = None
                t0 = time.perf_counter()
                answers[mode] = generate_answers(vlm, records, 8, args.batch_size, progress=False)
                times[mode].append(time.perf_counter() - t0)
    print(f"{args.backbone}: {args.n} questions on {args.n} JPEGs of {args.side}x{args.side * 3 // 4}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads, median of {args.reps}")
    rates = {m: args.n / statistics.median(t) for m, t in times.items()}
    for mode, rate in rates.items():
        print(f"  {mode:<9}{rate:8.1f} samples/s")
    print(f"  prefetch / inline: {rates['prefetch'] / rates['inline']:.2f}x; answers identical: "
          f"{answers['inline'] == answers['prefetch']}")


def backbone(name: str, folder: Path):
    """A function that gives a fresh wrapper (empty caches) around one model loaded once."""
    if name == "tiny":
        from coin.models.llava.wrapper import LlavaVLM
        from coin.models.tiny.model import TinyConfig, build_model, build_processor, train_tokenizer

        tiny = TinyConfig()
        tok = train_tokenizer([f"USER: ASSISTANT: what is in picture {k}? a thing" for k in range(200)], tiny.vocab_size)
        model = build_model(tiny, tok, seed=0).eval()
        processor = build_processor(tok, tiny)
        return lambda: LlavaVLM(model, processor)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tiny Qwen2-VL builder
    import tinyhf

    from coin.config_load import section
    from coin.models.chat.wrapper import ChatVLM, load_chat_vlm

    loaded = load_chat_vlm(section("model", name="qwen2-vl", path=str(tinyhf.build_qwen2_vl(folder))))
    loaded.model.eval()
    return lambda: ChatVLM(loaded.model, loaded.processor)


if __name__ == "__main__":
    main()
