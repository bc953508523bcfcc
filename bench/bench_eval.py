"""Batched evaluation vs batch size 1 on the tiny model, side by side in one run.

    python bench/bench_eval.py [--n 512] [--batch-size 64]
    python bench/bench_eval.py --tasks ScienceQA TextVQA GQA VQAv2 --max-new-tokens 8   # the earlier setting

By default it evaluates what ``coin run`` evaluates: the CoIN-Synth test sets of all eight
tasks (``--n`` samples split evenly), each task through ``generate_answers`` with its own
``max_new_tokens`` (ScienceQA 4, Grounding 32, the others 8), one task after another. It
uses the cached pretrained tiny base when there is one (``coin run`` makes it), else a
random-init model of the same size. Images are preprocessed once before timing, for all
runs alike.

Three runs, in this order: batch size 1, batch size ``--batch-size``, both with coin's
greedy decoding (``coin/models/decode.py``: a preallocated KV cache, finished rows dropped
from the batch), and the same batch size through ``model.generate`` with Hugging Face's
default cache. It prints samples/s for each, the speed-up of batching, the gain of coin's
decoding over ``generate``, and whether the answers are identical.

It also counts the work: every token the LM and the vision tower process (padding
included) times two FLOPs per weight of their linear layers (attention's own products
left out, so a lower bound), against a plain matmul of the LM's MLP shape timed in the
same process, which bounds the speed-up any batching can reach on this machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    from coin.tasks import ORDERS

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512, help="test samples in all, split evenly over the tasks")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--tasks", nargs="+", default=list(ORDERS["paper"]))
    ap.add_argument("--max-new-tokens", type=int, default=None,
                    help="one limit for every task (default: each task's own, as coin run uses)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds of the three runs, interleaved; each figure is the median round")
    args = ap.parse_args()

    import torch

    from coin.config_load import from_dict
    from coin.data.coin_json import eval_samples, load_test
    from coin.benchmarks.synth.generator import generate
    from coin.engine.evaluate import generate_answers
    from coin.models.tiny.pretrain import base_key, cache_dir
    from coin.models.llava.wrapper import LlavaVLM
    from coin.tasks import get_task

    cfg = from_dict({})
    tasks = args.tasks
    with tempfile.TemporaryDirectory() as tmp:
        per = -(-args.n // len(tasks))
        root = generate(Path(tmp) / "s", seed=0, n_train=0, n_test=per, n_pretrain=0, tasks=tasks)
        by_task = {}
        for t in tasks:
            by_task[t] = load_test(root / "Instructions_Original" / get_task(t).folder / "test.json",
                                   root / "images", t)
        # trim to exactly n, keeping the tasks as even as the split allows
        extra = per * len(tasks) - args.n
        for t in reversed(tasks[len(tasks) - extra:] if extra else []):
            by_task[t] = by_task[t][:-1]
        n = sum(map(len, by_task.values()))
        limits = {t: args.max_new_tokens or get_task(t).max_new_tokens for t in tasks}
        base = cache_dir() / "base" / f"tiny-{base_key(cfg.model)}"
        if (base / "COMPLETE").is_file():
            from transformers import LlavaForConditionalGeneration, LlavaProcessor

            vlm = LlavaVLM(LlavaForConditionalGeneration.from_pretrained(base), LlavaProcessor.from_pretrained(base))
            which = f"pretrained tiny base ({base.name})"
        else:
            from coin.models.tiny.model import TinyConfig, build_model, build_processor, train_tokenizer

            texts = [r["text"] for rs in by_task.values() for r in rs] + ["USER: ASSISTANT:"]
            tok = train_tokenizer(texts, 1024)
            vlm = LlavaVLM(build_model(TinyConfig(), tok), build_processor(tok, TinyConfig()))
            which = "random-init tiny model (no cached base)"
        vlm.model.eval()
        for rs in by_task.values():
            vlm.pixels(eval_samples(rs))  # preprocess every image once, before any timing
        counter = _TokenCounter(vlm.model)
        runs = [("batch 1", 1, "coin"), (f"batch {args.batch_size}", args.batch_size, "coin"),
                (f"batch {args.batch_size}, model.generate", args.batch_size, "hf")]
        rounds: dict[str, list] = {label: [] for label, _, _ in runs}
        for _ in range(args.repeats):
            for label, bs, decoding in runs:
                vlm.decoding = decoding
                counter.reset()
                out = {}
                t0 = time.perf_counter()
                for t, rs in by_task.items():
                    out.update(generate_answers(vlm, rs, limits[t], bs, progress=False))
                rounds[label].append((time.perf_counter() - t0, out, counter.flops()))
        # the median round of each run (shared machines are noisy)
        results = {label: sorted(r, key=lambda x: x[0])[len(r) // 2] for label, r in rounds.items()}
        stable = all(x[1] == r[0][1] for r in rounds.values() for x in r)
        peak = _matmul_gflops(vlm.model)

    lim = ", ".join(f"{t} {limits[t]}" for t in tasks)
    print(f"model: {which}; {n} samples over {len(tasks)} tasks; max_new_tokens: {lim}; "
          f"torch threads {torch.get_num_threads()}; median of {args.repeats} interleaved rounds")
    ref_label = runs[0][0]
    t1, o1, _ = results[ref_label]
    for label, _, _ in runs:
        t, o, f = results[label]
        same = sum(o1[k] == o[k] for k in o1)
        print(f"{label:>34}: {n / t:8.1f} samples/s ({t:5.1f} s, {f / t / 1e9:5.1f} GFLOP/s); "
              f"answers identical to batch 1: {same}/{n}")
    print(f"answers identical in every round: {'yes' if stable else 'NO'}")
    big, dyn = runs[1][0], runs[2][0]
    tb, _, fb = results[big]
    print(f"speed-up of batching ({big} vs batch 1): {t1 / tb:.1f}x")
    print(f"gain from coin's decoding over model.generate at {big}: {results[dyn][0] / tb:.2f}x")
    print(f"plain matmul of the LM's MLP shape: {peak:.1f} GFLOP/s; {big} runs at {fb / tb / 1e9 / peak:.0%} of it; "
          f"its arithmetic alone at that rate would take {fb / 1e9 / peak:.2f} s, so no batching can beat "
          f"about {t1 / (fb / 1e9 / peak):.1f}x over batch 1 here")


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
