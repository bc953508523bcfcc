"""GPU cost of LoRA against MoELoRA on LLaVA-1.5-7B's exact architecture (random weights, no download).

Usage: python bench/bench_gpu.py [--batch-size 16] [--text-tokens 64] [--answer-tokens 8] [--steps 10]
                                 [--rank 128] [--experts 8] [--gen-batch-sizes 1 32] [--new-tokens 16]
                                 [--no-gradient-checkpointing] [--attn sdpa] [--variants lora moelora]
       python bench/bench_gpu.py --small --device cpu     # the same code path on a shrunken model

The model is a randomly initialised ``LlavaForConditionalGeneration`` built from a config written
out here: CLIP ViT-L/14 at 336 px (24 layers, width 1024, 576 image tokens, features of the
second-to-last layer), LLaVA-1.5's two-layer GELU projector and a Llama-2-7B / Vicuna-7B LM
(32 layers, width 4096, MLP 11008, vocabulary 32064). Weights are bf16 on the GPU, as in
configs/coin/. Each variant gets a fresh model with coin's adapter (``attach_adapter`` on a
``LlavaVLM``: every linear layer of the LM, projector trained) and is measured for

- training: optimizer steps/s, tokens/s and peak memory (``torch.cuda.max_memory_allocated``)
  for one optimizer step of ``--batch-size`` sequences of 1 + 576 image + ``--text-tokens``
  tokens (labels on the last ``--answer-tokens``), with the recipe of configs/coin/ (AdamW,
  bf16 autocast, gradient clipping, gradient checkpointing unless turned off);
- generation: samples/s of greedy decoding with the KV cache, ``--new-tokens`` tokens per
  sample, at each ``--gen-batch-sizes`` (unmerged adapter, as coin evaluates), with coin's
  decoding (``coin/models/decode.py``) and, for comparison, with ``model.generate``.

Batches are built directly (random token ids and pixels), so no tokenizer or image is read.
Random weights make the timings those of the real model (the same shapes and kernels); the
losses and answers mean nothing. ``--small`` keeps 576 image tokens and the vocabulary but
shrinks every width and depth, so the script runs on a CPU in seconds (its numbers are not
the 7B's).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from types import SimpleNamespace

import torch

IMAGE_TOKEN = 32000  # llava-hf's <image> id; 32001 is <pad>, the vocabulary is padded to 32064
PAD_TOKEN = 32001
BOS, EOS = 1, 2


def llava_config(small: bool = False):
    """LLaVA-1.5-7B's ``LlavaConfig`` (``small``: the same layout, tiny widths and depths)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    v = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
    t = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
             num_key_value_heads=32)
    if small:
        v = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4)
        t = dict(hidden_size=128, intermediate_size=344, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4)
    vision = CLIPVisionConfig(**v, image_size=336, patch_size=14, num_channels=3, projection_dim=768,
                              hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text = LlamaConfig(**t, vocab_size=32064, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
                       hidden_act="silu", bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD_TOKEN,
                       tie_word_embeddings=False)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN, image_seq_length=576,
                       projector_hidden_act="gelu", vision_feature_select_strategy="default",
                       vision_feature_layer=-2, multimodal_projector_bias=True)


def build_vlm(config, device: torch.device, dtype: torch.dtype, attn: str | None, checkpointing: bool, adapter):
    """A fresh random model on ``device`` in a ``LlavaVLM`` with coin's adapter attached."""
    from transformers import LlavaForConditionalGeneration

    from coin.adapters import attach_adapter
    from coin.models.vlm import LlavaVLM

    torch.manual_seed(0)
    kw = {"attn_implementation": attn} if attn else {}
    with torch.device(device):  # initialise in place: no 28 GB fp32 copy on the host
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype, **kw)
    model.generation_config.update(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD_TOKEN)
    tokenizer = SimpleNamespace(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD_TOKEN)
    vlm = LlavaVLM(model, SimpleNamespace(tokenizer=tokenizer))  # batches are built here, not by a processor
    if checkpointing:  # as coin.models.load_model
        vlm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        vlm.model.enable_input_require_grads()
    attach_adapter(vlm, adapter)
    return vlm


def train_batch(n: int, text: int, answer: int, image_tokens: int, device, dtype, gen: torch.Generator) -> dict:
    """``n`` right-sized sequences ``<s> USER: <image>*576 ... ASSISTANT: answer``, labels on the answer."""
    width = 1 + image_tokens + text
    ids = torch.randint(3, IMAGE_TOKEN, (n, width), generator=gen)
    ids[:, 0] = BOS
    ids[:, 1 : 1 + image_tokens] = IMAGE_TOKEN
    labels = torch.full_like(ids, -100)
    labels[:, -answer:] = ids[:, -answer:]
    pixels = torch.randn(n, 3, 336, 336, generator=gen)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values": pixels.to(device, dtype), "labels": labels.to(device)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_train(vlm, args, device, dtype) -> dict:
    """Optimizer steps of the recipe; the first ``--warmup`` are not timed."""
    model = vlm.model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    batch = train_batch(args.batch_size, args.text_tokens, args.answer_tokens, vlm.num_image_tokens, device, dtype, gen)
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    loss = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            _sync(device)
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        loss = loss.detach()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    seconds = time.perf_counter() - t0
    tokens = batch["input_ids"].numel() * args.steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    del opt
    return {"steps_per_s": args.steps / seconds, "tokens_per_s": tokens / seconds, "peak_gib": peak,
            "seq_len": batch["input_ids"].shape[1], "loss": loss.item(), "trainable": sum(p.numel() for p in params)}


@torch.no_grad()
def bench_generate(vlm, batch_size: int, args, device, dtype, decoding: str = "coin") -> float:
    """Samples/s of greedy decoding with the KV cache, exactly ``--new-tokens`` tokens per sample.

    ``decoding`` "coin" is coin's ``greedy_decode`` (preallocated KV cache; no end token here, so no
    row is dropped), "hf" is ``model.generate`` with Hugging Face's concatenating cache.
    """
    from coin.models.decode import greedy_decode

    model = vlm.model
    model.eval()
    gen = torch.Generator().manual_seed(1)
    batch = train_batch(batch_size, args.text_tokens, 1, vlm.num_image_tokens, device, dtype, gen)
    batch.pop("labels")
    kw = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, num_beams=1,
              use_cache=True, eos_token_id=EOS, pad_token_id=PAD_TOKEN)

    def run(n: int) -> int:
        if decoding == "coin":
            return len(greedy_decode(model, batch, n, eos_ids=[])[0])
        return model.generate(**batch, **{**kw, "max_new_tokens": n, "min_new_tokens": n}).shape[1] - width

    width = batch["input_ids"].shape[1]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        run(2)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(args.gen_reps):
            made = run(args.new_tokens)
        _sync(device)
    assert made == args.new_tokens
    return batch_size * args.gen_reps / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu only with --small)")
    ap.add_argument("--small", action="store_true", help="shrink the architecture (exercise the script on a CPU)")
    ap.add_argument("--batch-size", type=int, default=None, help="training sequences per step (default 16; 2 --small)")
    ap.add_argument("--text-tokens", type=int, default=64, help="text tokens after the 576 image tokens")
    ap.add_argument("--answer-tokens", type=int, default=8, help="labelled tokens at the end of each sequence")
    ap.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 10; 2 --small)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first")
    ap.add_argument("--rank", type=int, default=128)
    ap.add_argument("--alpha", type=float, default=None, help="default 2 x rank")
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--variants", nargs="+", default=["lora", "moelora"], choices=["lora", "moelora"])
    ap.add_argument("--gen-batch-sizes", type=int, nargs="*", default=None, help="default 1 32; 1 4 --small")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--gen-reps", type=int, default=2, help="timed generate calls per batch size")
    ap.add_argument("--no-gradient-checkpointing", action="store_true")
    ap.add_argument("--attn", default="sdpa", help="attn_implementation, e.g. sdpa, flash_attention_2, eager")
    args = ap.parse_args()
    args.batch_size = args.batch_size or (2 if args.small else 16)
    args.steps = args.steps or (2 if args.small else 10)
    args.warmup = min(args.warmup, 1) if args.small else args.warmup
    if args.gen_batch_sizes is None:
        args.gen_batch_sizes = [1, 4] if args.small else [1, 32]

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here (torch.cuda.is_available() is False). This benchmark measures a "
              "7B model on a GPU; run it on a machine with one, or exercise its logic on a CPU with "
              "`python bench/bench_gpu.py --small --device cpu`.", file=sys.stderr)
        return 2
    if device.type == "cpu" and not args.small:
        print("bench_gpu: the full 7B architecture on a CPU would take hours; add --small.", file=sys.stderr)
        return 2
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    from coin.config import AdapterConfig

    config = llava_config(args.small)
    name = "LLaVA-1.5-7B architecture" + (" (--small: shrunken)" if args.small else "")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, random weights, {str(dtype).split('.')[-1]} on {where}; torch {torch.__version__}")
    print(f"training: batch {args.batch_size} x {1 + 576 + args.text_tokens} tokens (576 image), "
          f"gradient checkpointing {'off' if args.no_gradient_checkpointing else 'on'}, attention {args.attn}; "
          f"{args.steps} timed steps after {args.warmup}")
    rows = []
    for variant in args.variants:
        adapter = AdapterConfig(type=variant, r=args.rank, alpha=args.alpha or 2.0 * args.rank, dropout=args.dropout,
                                experts=args.experts, train_projector=True)
        label = f"{variant} r{args.rank}" + (f" x{args.experts} experts" if variant == "moelora" else "")
        vlm = build_vlm(config, device, dtype, args.attn, not args.no_gradient_checkpointing, adapter)
        total = sum(p.numel() for p in vlm.model.parameters())
        tr = bench_train(vlm, args, device, dtype)
        gen = {b: bench_generate(vlm, b, args, device, dtype) for b in args.gen_batch_sizes}
        gen_hf = {b: bench_generate(vlm, b, args, device, dtype, "hf") for b in args.gen_batch_sizes}
        print(f"  {variant} generation, coin's decoding over model.generate: "
              + ", ".join(f"batch {b} x{gen[b] / gen_hf[b]:.2f}" for b in args.gen_batch_sizes), flush=True)
        rows.append((label, total, tr, gen))
        print(f"  {label}: {total / 1e9:.2f}B parameters, {tr['trainable'] / 1e6:.1f}M trainable, "
              f"loss {tr['loss']:.2f} (random weights)", flush=True)
        del vlm
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    head = f"{'variant':<24}{'steps/s':>9}{'tokens/s':>10}{'peak GiB':>10}" + "".join(
        f"{f'gen b{b} /s':>13}" for b in args.gen_batch_sizes)
    print("\n" + head)
    for label, _, tr, gen in rows:
        print(f"{label:<24}{tr['steps_per_s']:>9.3f}{tr['tokens_per_s']:>10.0f}{tr['peak_gib']:>10.1f}"
              + "".join(f"{gen[b]:>13.2f}" for b in args.gen_batch_sizes))
    print(f"(gen bN /s: samples per second at generation batch N, {args.new_tokens} new tokens each, "
          "adapter unmerged; peak GiB: torch.cuda.max_memory_allocated during training)")
    if len(rows) == 2:
        (la, _, a, ga), (lb, _, b, gb) = rows
        print(f"{lb} / {la}: training time x{a['steps_per_s'] / b['steps_per_s']:.2f}, "
              + ", ".join(f"generation b{k} time x{ga[k] / gb[k]:.2f}" for k in args.gen_batch_sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
