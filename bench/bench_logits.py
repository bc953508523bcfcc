"""Memory and time of a training step's loss with the LM head on every position vs on the labelled ones.

Usage: python bench/bench_logits.py [--batch 2] [--reps 3] [--threads N] [--answer 8]

``coin.engine.lm_loss`` runs the LM head only where the next token has a label (``train.logits:
labelled``, the default) instead of on every position (``all``, transformers' own loss). What it
saves grows with the vocabulary and the share of image and prompt tokens, so the two models are
shrunk everywhere except there: the real vocabulary and the real row length, with one decoder
layer of width 64 on random weights and ``--answer`` labelled tokens per row.

- LLaVA-1.5 (``LlavaForConditionalGeneration``): vocabulary 32,000, rows of 640 tokens (576 image
  tokens and the prompt);
- Qwen2-VL (``Qwen2VLForConditionalGeneration``): vocabulary 152,064, rows of 1,310 tokens (one
  large photo is 1,230 image tokens).

Rows are text-only token ids of those lengths (the LM head sees hidden states either way). Each
case runs a forward and a backward; the peak of live tensor bytes (every tensor torch allocates,
counted through a dispatch mode) and the median time over ``--reps`` are printed with their
ratio. Both modes run round-robin in one process, so background load hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class PeakBytes(TorchDispatchMode):
    """The peak bytes of live tensors created while active (storage freed when a tensor dies)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        import weakref

        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key == 0 or key in self._seen:
            return
        self._seen.add(key)
        size = storage.nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)

        def gone(_ref, key=key, size=size):
            self._seen.discard(key)
            self.live -= size

        try:
            weakref.finalize(storage, gone, None)
        except TypeError:  # a storage that cannot be weakly referenced: counted, never released
            pass


def llava(vocab: int):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    text = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                       tie_word_embeddings=False)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=28, patch_size=14)
    return LlavaForConditionalGeneration(LlavaConfig(text_config=text, vision_config=vision,
                                                     image_token_index=vocab - 1))


def qwen2_vl(vocab: int):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    cfg = Qwen2VLConfig(text_config={"vocab_size": vocab, "hidden_size": 64, "intermediate_size": 128,
                                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                                     "max_position_embeddings": 4096, "rope_scaling": {"type": "mrope",
                                                                                      "mrope_section": [4, 6, 6]}},
                        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2},
                        vocab_size=vocab, hidden_size=64, image_token_id=vocab - 1, video_token_id=vocab - 2,
                        vision_start_token_id=vocab - 3)
    return Qwen2VLForConditionalGeneration(cfg)


CASES = {"llava-1.5 (V 32,000, T 640)": (llava, 32000, 640),
         "qwen2-vl (V 152,064, T 1,310)": (qwen2_vl, 152064, 1310)}


def step(model, batch, mode: str) -> tuple[int, float]:
    from coin.engine.lm_loss import forward_with_loss

    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    with PeakBytes() as peak:
        loss = forward_with_loss(model, batch, mode).loss
        loss.backward()
    return peak.peak, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--answer", type=int, default=8, help="labelled tokens per row (the answer and its EOS)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"batch {args.batch}, {args.answer} labelled tokens per row, {torch.get_num_threads()} threads")
    print(f"{'case':<32}{'mode':<10}{'peak MiB':>10}{'median s':>10}")
    for name, (build, vocab, length) in CASES.items():
        model = build(vocab).train()
        ids = torch.randint(0, vocab - 8, (args.batch, length))
        labels = torch.full_like(ids, -100)
        labels[:, -args.answer:] = ids[:, -args.answer:]
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
        runs: dict[str, list[tuple[int, float]]] = {"all": [], "labelled": []}
        for _ in range(args.reps):
            for mode in runs:
                runs[mode].append(step(model, batch, mode))
        res = {m: (max(p for p, _ in r), statistics.median(t for _, t in r)) for m, r in runs.items()}
        for mode, (peak, secs) in res.items():
            print(f"{name:<32}{mode:<10}{peak / 2**20:>10.0f}{secs:>10.3f}")
        print(f"{'':<32}{'ratio':<10}{res['all'][0] / res['labelled'][0]:>9.1f}x{res['all'][1] / res['labelled'][1]:>9.1f}x")


if __name__ == "__main__":
    main()
