"""Batched evaluation vs batch size 1 on the tiny model, side by side in one run.

    python bench/bench_eval.py [--n 512] [--batch-size 64] [--max-new-tokens 8]

Uses the cached pretrained tiny base when there is one (``coin run`` makes it), else a
random-init model of the same size. Prints samples/s for both, the speed-up, and whether
the answers are identical.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    args = ap.parse_args()

    import torch

    from coin.config import from_dict
    from coin.data.coin_json import eval_samples, load_test
    from coin.data.synth import generate
    from coin.engine.evaluate import generate_answers
    from coin.models.pretrain import base_key, cache_dir
    from coin.models.vlm import LlavaVLM

    cfg = from_dict({})
    tasks = ["ScienceQA", "TextVQA", "GQA", "VQAv2"]
    with tempfile.TemporaryDirectory() as tmp:
        per = -(-args.n // len(tasks))
        root = generate(Path(tmp) / "s", seed=0, n_train=0, n_test=per, n_pretrain=0, tasks=tasks)
        records = []
        from coin.tasks import get_task

        for t in tasks:
            records += load_test(root / "Instructions_Original" / get_task(t).folder / "test.json", root / "images", t)
        records = records[: args.n]
        base = cache_dir() / "base" / f"tiny-{base_key(cfg.model)}"
        if (base / "COMPLETE").is_file():
            from transformers import LlavaForConditionalGeneration, LlavaProcessor


            vlm = LlavaVLM(LlavaForConditionalGeneration.from_pretrained(base), LlavaProcessor.from_pretrained(base))
            which = f"pretrained tiny base ({base.name})"
        else:
            from coin.models.tiny import TinyConfig, build_model, build_processor, train_tokenizer

            texts = [r["text"] for r in records] + ["USER: ASSISTANT:"]
            tok = train_tokenizer(texts, 1024)
            vlm = LlavaVLM(build_model(TinyConfig(), tok), build_processor(TinyConfig(), tok))
            which = "random-init tiny model (no cached base)"
        vlm.model.eval()
        vlm.pixels(eval_samples(records))  # warm the image cache
        results = {}
        for bs in (1, args.batch_size):
            t0 = time.perf_counter()
            out = generate_answers(vlm, records, args.max_new_tokens, bs, progress=False)
            results[bs] = (time.perf_counter() - t0, out)
    (t1, o1), (tb, ob) = results[1], results[args.batch_size]
    same = sum(o1[k] == ob[k] for k in o1)
    print(f"model: {which}; {len(records)} samples, max_new_tokens {args.max_new_tokens}, torch threads {torch.get_num_threads()}")
    print(f"batch 1:  {len(records) / t1:8.1f} samples/s ({t1:.1f} s)")
    print(f"batch {args.batch_size}: {len(records) / tb:8.1f} samples/s ({tb:.1f} s)")
    print(f"speed-up: {t1 / tb:.1f}x; identical answers: {same}/{len(records)}")


if __name__ == "__main__":
    main()
