"""Batched evaluation vs batch size 1 on the tiny model, side by side in one run.

    python bench/bench_eval.py [--n 512] [--batch-size 64] [--max-new-tokens 8]

Uses the cached pretrained tiny base when there is one (``coin run`` makes it), else a
random-init model of the same size. Prints samples/s for both, the speed-up, and whether
the answers are identical.

It also counts the work: every token the LM and the vision tower process (padding
included) times two FLOPs per weight of their linear layers (attention's own products
left out, so a lower bound), against a plain matmul of the LM's MLP shape timed in the
same process. When the batched run's FLOP rate is close to that matmul's, batching has
removed the per-call overhead and what remains is arithmetic: the speed-up cannot grow
past (batch-1 time) / (time of the arithmetic alone) on this machine.
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
        counter = _TokenCounter(vlm.model)
        results = {}
        for bs in (1, args.batch_size):
            counter.reset()
            t0 = time.perf_counter()
            out = generate_answers(vlm, records, args.max_new_tokens, bs, progress=False)
            results[bs] = (time.perf_counter() - t0, out, counter.flops())
        peak = _matmul_gflops(vlm.model)
    (t1, o1, f1), (tb, ob, fb) = results[1], results[args.batch_size]
    same = sum(o1[k] == ob[k] for k in o1)
    print(f"model: {which}; {len(records)} samples, max_new_tokens {args.max_new_tokens}, torch threads {torch.get_num_threads()}")
    print(f"batch 1:  {len(records) / t1:8.1f} samples/s ({t1:.1f} s, {f1 / t1 / 1e9:.1f} GFLOP/s)")
    print(f"batch {args.batch_size}: {len(records) / tb:8.1f} samples/s ({tb:.1f} s, {fb / tb / 1e9:.1f} GFLOP/s)")
    print(f"speed-up: {t1 / tb:.1f}x; identical answers: {same}/{len(records)}")
    print(f"plain matmul of the LM's MLP shape: {peak:.1f} GFLOP/s; batch {args.batch_size} runs at "
          f"{fb / tb / 1e9 / peak:.0%} of it; arithmetic alone at that rate would take {fb / 1e9 / peak:.2f} s, "
          f"so the speed-up over batch 1 is bounded by about {t1 / (fb / 1e9 / peak):.1f}x here")


class _TokenCounter:
    """Counts tokens through the LM and the vision tower (forward pre-hooks); FLOPs = 2 x weights x tokens."""

    def __init__(self, model) -> None:
        import torch

        inner = model.model
        self.lm_weights = sum(m.weight.numel() for m in inner.language_model.modules() if isinstance(m, torch.nn.Linear))
        self.vision_weights = sum(m.weight.numel() for m in inner.vision_tower.modules() if isinstance(m, torch.nn.Linear))
        self.projector_weights = sum(m.weight.numel() for m in inner.multi_modal_projector.modules()
                                     if isinstance(m, torch.nn.Linear))
        self.lm_tokens = self.vision_tokens = self.image_tokens = 0
        inner.language_model.register_forward_pre_hook(self._lm, with_kwargs=True)
        inner.vision_tower.register_forward_pre_hook(self._vision, with_kwargs=True)

    def _lm(self, module, args, kwargs):
        x = kwargs.get("inputs_embeds")
        if x is None:
            x = kwargs.get("input_ids", args[0] if args else None)
        self.lm_tokens += x.shape[0] * x.shape[1]

    def _vision(self, module, args, kwargs):
        px = kwargs.get("pixel_values", args[0] if args else None)
        cfg = module.config
        per = (cfg.image_size // cfg.patch_size) ** 2
        self.vision_tokens += px.shape[0] * (per + 1)
        self.image_tokens += px.shape[0] * per

    def reset(self) -> None:
        self.lm_tokens = self.vision_tokens = self.image_tokens = 0

    def flops(self) -> float:
        return 2.0 * (self.lm_weights * self.lm_tokens + self.vision_weights * self.vision_tokens
                      + self.projector_weights * self.image_tokens)


def _matmul_gflops(model, tokens: int = 4096, repeats: int = 50) -> float:
    """GFLOP/s of ``x @ W`` with the LM's MLP shape (hidden x intermediate), same threads."""
    import torch

    cfg = model.config.text_config
    x = torch.randn(tokens, cfg.hidden_size)
    w = torch.randn(cfg.hidden_size, cfg.intermediate_size)
    for _ in range(5):
        x @ w
    t0 = time.perf_counter()
    for _ in range(repeats):
        x @ w
    dt = time.perf_counter() - t0
    return 2.0 * tokens * cfg.hidden_size * cfg.intermediate_size * repeats / dt / 1e9


if __name__ == "__main__":
    main()
