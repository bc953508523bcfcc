"""GPU cost of LoRA against MoELoRA on LLaVA-1.5-7B's exact architecture (random weights, no download).

Usage: python bench/bench_gpu.py [--batch-size 16] [--text-tokens 64] [--answer-tokens 8] [--steps 10]
                                 [--rank 128] [--experts 8] [--gen-batch-sizes 1 32] [--new-tokens 16]
                                 [--no-gradient-checkpointing] [--attn sdpa] [--variants lora moelora]
       python bench/bench_gpu.py --small --device cpu     # the same code path on a shrunken model
       torchrun --nproc-per-node N bench/bench_gpu.py --fsdp   # LLaVA-1.5-13B, LoRA r 128, sharded (bench_fsdp.py)

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

Also measured, per variant: MFU of training (model FLOPs per second over the GPU's dense bf16
peak, ``model_flops``; ``--peak-tflops`` for a GPU not in ``PEAK_TFLOPS``), the prefill and the
per-token decode time of one generation separately, the peak memory during generation, the
evaluation throughput at ``--gen-batch-sizes`` (default 1, 32, 64) with mixed-length, left-padded
prompts (as a real test set gives), and the time to write one in-stage checkpoint (adapter,
projector and AdamW state, ``coin.engine.checkpoint``). Once: the training loader's throughput
(decode, pad, preprocess, tokenise) on 336-pixel JPEGs with 0 and ``--data-workers`` workers.

Batches for the model are built directly (random token ids and pixels), so no tokenizer or
image is read there. Random weights make the timings those of the real model (the same shapes
and kernels); the losses and answers mean nothing. ``--small`` keeps 576 image tokens and the
vocabulary but shrinks every width and depth, so the script runs on a CPU in seconds (its
numbers are not the 7B's, and a CPU has no MFU).

Also, once per variant: bf16 answer agreement through coin's evaluation path (``LlavaVLM.generate``,
coin's decoding): ``--agree-prompts`` mixed-length prompts answered at batch 16 and one at a time,
``agree: k/N identical answers`` (reported, not asserted: in bf16 a near-tie may flip a token); and
the same ``LlavaVLM.generate`` on ``--share-batch`` questions, 4 per image, with and without
``share_prefix`` (prefill + decode time side by side). Once: Qwen2-VL-7B's training memory at the
shipped batch (configs/coin/qwen2-vl-7b: 16 per GPU, r 128) as ``coin.engine.memory`` *estimates* it
(no second architecture is built), beside the LLaVA figure measured here and its own estimate.
``--json PATH`` writes every measurement, the device, the versions and the attention kernel the
model actually chose (``config._attn_implementation``) to one JSON file.

Needs only what the README's GPU install gives (torch for your CUDA, then ``pip install -e .``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a fresh clone runs even before `pip install -e .`
sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared; bench_data, for the loader measurement

from shared import BOS, EOS, IMAGE_TOKEN, PAD_TOKEN, llava_config, prompt_batch, sync, train_batch  # noqa: E402

# dense (no sparsity) bf16 tensor-core peak in TFLOP/s, by a substring of torch.cuda.get_device_name
PEAK_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
               "A10G": 125.0, "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0, "A6000": 155.0}

def build_vlm(config, device: torch.device, dtype: torch.dtype, attn: str | None, checkpointing: bool, adapter):
    """A fresh random model on ``device`` in a ``LlavaVLM`` with coin's adapter attached."""
    from transformers import LlavaForConditionalGeneration

    from coin.adapters import attach_adapter
    from coin.models.llava.wrapper import LlavaVLM
    from coin.models.modes import checkpoint_activations

    torch.manual_seed(0)
    kw = {"attn_implementation": attn} if attn else {}
    with torch.device(device):  # initialise in place: no 28 GB fp32 copy on the host
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype, **kw)
    model.generation_config.update(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD_TOKEN)
    tokenizer = SimpleNamespace(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD_TOKEN)
    vlm = LlavaVLM(model, SimpleNamespace(tokenizer=tokenizer))  # batches are built here, not by a processor
    if checkpointing:  # as coin.models.load_model
        checkpoint_activations(vlm.model)
    attach_adapter(vlm, adapter)
    return vlm


def _linear_weights(model, part: str) -> int:
    """Weights of the ``nn.Linear`` layers under ``part`` (adapter matrices excluded: they are tiny)."""
    return sum(m.weight.numel() for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and part in n and "lora_" not in n)


def model_flops(model, config, batch: int, seq: int, image_tokens: int, head_tokens: int | None = None) -> float:
    """Model FLOPs of one training step (no recomputation counted, the usual MFU convention).

    ``head_tokens``: the positions per sequence the LM head runs on (coin's labelled logits: the answer's);
    None: all ``seq``.

    Matmuls cost 2 FLOPs per weight and token forward. The LM's weights are frozen, so its
    backward computes input gradients only (as much as its forward); the vision tower is frozen
    and nothing before it needs a gradient (forward only); the projector is trained (forward,
    input and weight gradients: 3x). Attention adds 4 x layers x width x seq^2 per sequence
    forward (scores and values, causal masking not discounted), twice for the LM's backward.
    """
    v, t = config.vision_config, config.text_config
    lm, head = _linear_weights(model, "language_model"), _linear_weights(model, "lm_head")
    vision = _linear_weights(model, "vision_tower")
    proj = _linear_weights(model, "multi_modal_projector")
    patches = (v.image_size // v.patch_size) ** 2 + 1
    lm_f = 2 * lm * seq + 2 * head * (seq if head_tokens is None else head_tokens) \
        + 4 * t.num_hidden_layers * t.hidden_size * seq**2
    vis_f = 2 * vision * patches + 4 * v.num_hidden_layers * v.hidden_size * patches**2
    return batch * (2 * lm_f + vis_f + 3 * 2 * proj * image_tokens)


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    """The device's dense bf16 peak (``--peak-tflops`` first); None on a CPU or an unknown GPU."""
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def bench_train(vlm, args, device, dtype) -> dict:
    """Optimizer steps of the recipe through coin's training forward (``forward_with_loss``: the LM head on
    the labelled positions unless ``--logits all``); the first ``--warmup`` are not timed."""
    from coin.engine.lm_loss import forward_with_loss, supports_labelled

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
            sync(device)
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = forward_with_loss(model, batch, args.logits).loss
        loss.backward()
        loss = loss.detach()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    seconds = time.perf_counter() - t0
    tokens = batch["input_ids"].numel() * args.steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    reserved = torch.cuda.max_memory_reserved(device) / 2**30 if device.type == "cuda" else float("nan")
    head = args.answer_tokens if args.logits == "labelled" and supports_labelled(model) else None
    flops = model_flops(model, model.config, *batch["input_ids"].shape, vlm.num_image_tokens,
                        head_tokens=head) * args.steps / seconds
    ckpt_s, ckpt_mb = bench_checkpoint(model, opt)
    del opt
    return {"steps_per_s": args.steps / seconds, "tokens_per_s": tokens / seconds, "peak_gib": peak,
            "peak_reserved_gib": reserved, "seq_len": batch["input_ids"].shape[1], "loss": loss.item(), "trainable": sum(p.numel() for p in params),
            "tflops": flops / 1e12, "ckpt_s": ckpt_s, "ckpt_mb": ckpt_mb,
            "logits": "labelled" if head is not None else "all"}


def bench_checkpoint(model, opt) -> tuple[float, float]:
    """Seconds and MB to write one in-stage checkpoint (trainable weights, AdamW state, schedule) as
    the training loop does, to a temporary folder (on the same disk as ``tempfile``'s)."""
    from coin.engine import checkpoint as ckpt

    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with tempfile.TemporaryDirectory(prefix="coin-bench-ckpt-") as d:
        start = time.perf_counter()
        path = ckpt.save_checkpoint(Path(d), 1, named, opt, sched)
        seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return seconds, size / 2**20


@torch.no_grad()
def bench_prefill_decode(vlm, batch_size: int, args, device, dtype) -> dict:
    """One greedy generation split into its prefill (the prompt through the model, image included)
    and its decode steps (one token each, KV cache written in place), with the peak memory of it."""
    from transformers.cache_utils import DynamicCache

    from coin.models.kv_cache import cache_kwargs, preallocated_cache

    model = vlm.model
    model.eval()
    batch = prompt_batch(batch_size, args.text_tokens, vlm.num_image_tokens, device, dtype,
                         torch.Generator().manual_seed(2))
    mask = batch["attention_mask"]
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        cache = preallocated_cache(model, mask.shape[1] + args.new_tokens) or DynamicCache(config=model.config)
        sync(device)
        t0 = time.perf_counter()
        out = model(**batch, position_ids=positions, **cache_kwargs(cache), use_cache=True, logits_to_keep=1)
        nxt = out.logits[:, -1, :].argmax(dim=-1)
        sync(device)
        t1 = time.perf_counter()
        position = positions[:, -1:]
        for _ in range(args.new_tokens - 1):
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            position = position + 1
            out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=position, **cache_kwargs(cache),
                        use_cache=True)
            nxt = out.logits[:, -1, :].argmax(dim=-1)
        sync(device)
        t2 = time.perf_counter()
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"prefill_ms": 1000 * (t1 - t0), "decode_ms_per_token": 1000 * (t2 - t1) / max(args.new_tokens - 1, 1),
            "peak_gib": peak}


@torch.no_grad()
def bench_generate(vlm, batch_size: int, args, device, dtype, decoding: str = "coin") -> float:
    """Samples/s of greedy decoding with the KV cache, exactly ``--new-tokens`` tokens per sample,
    on mixed-length left-padded prompts (``prompt_batch``).

    ``decoding`` "coin" is coin's ``greedy_decode`` (preallocated KV cache; no end token here, so no
    row is dropped), "hf" is ``model.generate`` with Hugging Face's concatenating cache.
    """
    from coin.models.decode import greedy_decode

    model = vlm.model
    model.eval()
    gen = torch.Generator().manual_seed(1)
    batch = prompt_batch(batch_size, args.text_tokens, vlm.num_image_tokens, device, dtype, gen)
    kw = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, num_beams=1,
              use_cache=True, eos_token_id=EOS, pad_token_id=PAD_TOKEN)

    def run(n: int) -> int:
        if decoding == "coin":
            return len(greedy_decode(model, batch, n, eos_ids=[])[0])
        return model.generate(**batch, **{**kw, "max_new_tokens": n, "min_new_tokens": n}).shape[1] - width

    width = batch["input_ids"].shape[1]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        run(2)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.gen_reps):
            made = run(args.new_tokens)
        sync(device)
    assert made == args.new_tokens
    return batch_size * args.gen_reps / (time.perf_counter() - t0)


def attn_kernel(vlm) -> str:
    """The attention implementation the model actually chose (the text config's, where it differs)."""
    cfg = vlm.model.config
    top = getattr(cfg, "_attn_implementation", None)
    text = getattr(getattr(cfg, "text_config", None), "_attn_implementation", None)
    if text and top and text != top:
        return f"{text} (LM), {top} (top level)"
    return str(text or top)


def _fake_text(vlm) -> None:
    """Let ``LlavaVLM.generate`` run on token ids built here: prompts carry their ids and a pixel seed
    (no tokenizer, no image file); answers come back as their token ids, joined."""
    tok = vlm.tokenizer
    tok.convert_tokens_to_ids = lambda t: IMAGE_TOKEN
    tok.batch_decode = lambda rows, skip_special_tokens=True: [
        " ".join(str(int(t)) for t in row if int(t) not in (BOS, EOS, PAD_TOKEN)) for row in rows]
    vlm._prompt_ids = lambda samples: [list(s.ids) for s in samples]
    device = next(vlm.model.parameters()).device
    dtype = next(vlm._llava().vision_tower.parameters()).dtype

    def image_inputs(samples):
        pix = [torch.randn(3, 336, 336, generator=torch.Generator().manual_seed(s.image)) for s in samples]
        return {"pixel_values": torch.stack(pix).to(device, dtype)}

    vlm.image_inputs = image_inputs


def eval_prompts(n: int, text: int, image_tokens: int, per_image: int = 1, seed: int = 3) -> list:
    """``n`` prompts as ``LlavaVLM.generate`` takes them (``_fake_text``): ``<s> <image>*576`` then
    ``text`` / 2 to 3 ``text`` / 2 random tokens; ``per_image`` > 1: that many questions per image, sharing
    the first half of their text (an instruction) as CoIN's questions on one image do."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(max(2, text // 2), text + text // 2 + 1, (n,), generator=gen).tolist()
    out, common = [], []
    for i, t in enumerate(lengths):
        if i % per_image == 0:
            common = torch.randint(3, IMAGE_TOKEN, (text // 4,), generator=gen).tolist()
        own = torch.randint(3, IMAGE_TOKEN, (t,), generator=gen).tolist()
        ids = [BOS] + [IMAGE_TOKEN] * image_tokens + (common + own[len(common):] if per_image > 1 else own)
        out.append(SimpleNamespace(ids=ids, image=1000 + i // per_image))
    return out


def bench_agreement(vlm, args, device, dtype) -> dict:
    """Answers of ``LlavaVLM.generate`` (coin's decoding) for ``--agree-prompts`` prompts at batch 16
    and at batch 1: how many are identical (``share_prefix`` off, so only the batching differs)."""
    _fake_text(vlm)
    vlm.share_prefix = False
    prompts = eval_prompts(args.agree_prompts, args.text_tokens, vlm.num_image_tokens)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        batched = [a for i in range(0, len(prompts), 16) for a in vlm.generate(prompts[i:i + 16], args.new_tokens)]
        single = [vlm.generate([p], args.new_tokens)[0] for p in prompts]
    same = sum(a == b for a, b in zip(batched, single))
    return {"identical": same, "prompts": len(prompts), "batch": min(16, len(prompts))}


def bench_share_prefix(vlm, args, device, dtype) -> dict:
    """``LlavaVLM.generate`` on ``--share-batch`` questions, 4 per image, with ``share_prefix`` off and on:
    the time of one call (prefill + decode), and whether the answers are the same."""
    _fake_text(vlm)
    prompts = eval_prompts(args.share_batch, args.text_tokens, vlm.num_image_tokens, per_image=4, seed=4)
    out = {"batch": len(prompts), "questions_per_image": 4}
    answers = {}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        for share in (False, True):
            vlm.share_prefix = share
            vlm.generate(prompts[:4], 2)  # warm-up
            sync(device)
            t0 = time.perf_counter()
            answers[share] = vlm.generate(prompts, args.new_tokens)
            sync(device)
            out["shared_ms" if share else "unshared_ms"] = 1000 * (time.perf_counter() - t0)
    vlm.share_prefix = False
    out["identical"] = sum(a == b for a, b in zip(answers[False], answers[True]))
    return out


# Qwen/Qwen2-VL-7B-Instruct's config.json, the sizes coin.engine.memory reads (tests/test_memory_plan.py has it whole)
QWEN2_VL_7B = {
    "architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl", "hidden_size": 3584,
    "intermediate_size": 18944, "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
    "max_position_embeddings": 32768, "tie_word_embeddings": False, "vocab_size": 152064,
    "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                      "hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
                      "temporal_patch_size": 2},
}


def memory_estimates(config, args, experts: int, checkpointing: bool) -> dict:
    """GiB per GPU (one process, DDP formula, + the CUDA context) that ``coin.engine.memory`` estimates for
    Qwen2-VL-7B at configs/coin/qwen2-vl-7b's batch (16 x its most image tokens + 104 text, r 128,
    labelled logits) and for the LLaVA model measured here at the bench's own batch and length."""
    from coin.engine.memory import ANSWER_TOKENS, CONTEXT_GIB, GIB, TEXT_TOKENS, arch_from_config, estimate

    def gib(arch, r, batch, tokens, logit_tokens):
        e = estimate(arch, r=r, experts=experts, train_projector=True, batch=batch, tokens=tokens, weight_bytes=2,
                     act_bytes=2, processes=1, checkpointing=checkpointing, logit_tokens=logit_tokens)
        return e["ddp"]["total"] / GIB + CONTEXT_GIB

    qwen = arch_from_config(QWEN2_VL_7B)
    llava = arch_from_config(config)
    q_tokens = qwen.tokens_per_image + TEXT_TOKENS
    out = {"qwen2_vl_7b_gib": gib(qwen, 128, 16, q_tokens, ANSWER_TOKENS), "qwen2_vl_7b_batch": 16,
           "qwen2_vl_7b_tokens": q_tokens}
    if llava is not None:  # LLaVA's labels here: the last --answer-tokens
        out["llava_gib"] = gib(llava, args.rank, args.batch_size, 1 + 576 + args.text_tokens, args.answer_tokens)
    return out


def bench_loader(args) -> str:
    """The training loader's throughput on 336-pixel JPEGs (bench_data's tiny setup), 0 vs N workers."""
    import shutil

    from bench_data import loader_samples_per_s, tiny_setup

    root = Path(tempfile.mkdtemp(prefix="coin-bench-loader-"))
    try:
        vlm, samples = tiny_setup(root, args.data_samples, 336)
        rates = {w: loader_samples_per_s(vlm, samples, w) for w in (0, args.data_workers)}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    args.loader_rates = {str(w): r for w, r in rates.items()}  # for --json
    return (f"data loading (decode, pad, CLIP preprocessing at 336 px, tokenise), {args.data_samples} JPEGs: "
            + ", ".join(f"{w} workers {r:.0f} samples/s" for w, r in rates.items()))


def bench_frozen_tower(config, args, device, dtype) -> str:
    """Issue #22.9 side by side: LoRA training with the frozen CLIP tower run without autograd (coin's
    ``no_grad_when_frozen``) against the same model with those hooks removed, where gradient
    checkpointing's input-gradient hook makes the tower keep its activations and back-propagate."""
    from coin.config import AdapterConfig
    from coin.models.modes import _enter_no_grad, _leave_no_grad

    adapter = AdapterConfig(r=args.rank, alpha=args.alpha or 2.0 * args.rank, dropout=args.dropout)
    vlm = build_vlm(config, device, dtype, args.attn, not args.no_gradient_checkpointing, adapter)
    ours = bench_train(vlm, args, device, dtype)
    for m in vlm.model.modules():
        for hooks in (m._forward_pre_hooks, m._forward_hooks):
            for key in [k for k, f in hooks.items() if f in (_enter_no_grad, _leave_no_grad)]:
                del hooks[key]
    before = bench_train(vlm, args, device, dtype)
    del vlm
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return (f"frozen tower (lora r{args.rank}): without autograd {ours['steps_per_s']:.3f} steps/s, peak "
            f"{ours['peak_gib']:.1f} GiB; with autograd through it {before['steps_per_s']:.3f} steps/s, peak "
            f"{before['peak_gib']:.1f} GiB: speed-up x{ours['steps_per_s'] / before['steps_per_s']:.2f}, "
            f"{before['peak_gib'] - ours['peak_gib']:.1f} GiB saved")


class Report:
    """The measurements as they are made, written to ``--json`` after each one (atomically), with
    ``"complete": false`` until the end. A check cut off by its time limit keeps what it measured, and
    one measurement that fails (an out-of-memory error at batch 64, a kernel missing) is recorded under
    ``errors`` beside the others instead of ending the run."""

    def __init__(self, report: dict, path: str | None, device: torch.device):
        self.report, self.path, self.device, self.failures = report, path, device, []
        report["complete"] = False
        self.save()

    def measure(self, into: dict, key: str, what: str, fn, keep: bool = True):
        """``into[key] = fn()`` (``keep=False``: only returned), saved; on an exception ``into[key]`` is
        None and the error is kept in the report's ``errors`` under ``what``."""
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 -- recorded and reported; the remaining figures still run
            value = None
            text = f"{type(e).__name__}: {e}"[:2000]
            self.report.setdefault("errors", {})[what] = text
            self.failures.append(f"{what}: {text.splitlines()[0]}")
            print(f"  {what}: FAILED {text}", file=sys.stderr, flush=True)
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        if keep or value is None:
            into[key] = value
        self.save()
        return value

    def save(self) -> None:
        if not self.path:
            return
        path = Path(self.path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(_clean(self.report), indent=1) + "\n")
        os.replace(tmp, path)


def _clean(x):
    """JSON-ready: string keys, NaN (no CUDA peak on a CPU) as null."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return None if isinstance(x, float) and x != x else x


def _ratio(a, b) -> str:
    return f"x{a / b:.2f}" if a and b else "n/a"


def _num(x, width: int, spec: str) -> str:
    return f"{'failed':>{width}}" if x is None else f"{x:>{width}{spec}}"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line, with the defaults that depend on ``--small`` filled in."""
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
    ap.add_argument("--gen-batch-sizes", type=int, nargs="*", default=None, help="default 1 32 64; 1 4 8 --small")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--gen-reps", type=int, default=2, help="timed generate calls per batch size")
    ap.add_argument("--no-gradient-checkpointing", action="store_true")
    ap.add_argument("--attn", default="sdpa", help="attn_implementation, e.g. sdpa, flash_attention_2, eager")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, for MFU "
                    "(default: looked up by name in PEAK_TFLOPS)")
    ap.add_argument("--data-workers", type=int, default=None, help="loader workers to compare with none "
                    "(default 4; 2 --small)")
    ap.add_argument("--data-samples", type=int, default=None, help="336-pixel images through the loader "
                    "(default 256; 32 --small)")
    ap.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"], help="model dtype (auto: bf16 "
                    "on a GPU, fp32 on a CPU; bf16 runs on a CPU too)")
    ap.add_argument("--agree-prompts", type=int, default=16, help="prompts answered at batch 16 and at batch 1 "
                    "for the answer agreement (0: skip)")
    ap.add_argument("--share-batch", type=int, default=None, help="questions (4 per image) generated with and "
                    "without share_prefix (default 16; 8 --small; 0: skip)")
    ap.add_argument("--logits", default="labelled", choices=["labelled", "all"], help="the training forward's "
                    "LM head: on the labelled positions (train.logits: labelled, the shipped default) or everywhere")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write every measurement to this JSON file, "
                    "after each one (\"complete\": true once all ran)")
    ap.add_argument("--frozen-tower", action="store_true", help="also train LoRA with and without autograd "
                    "through the frozen vision tower (issue #22.9), side by side")
    args = ap.parse_args(argv)
    args.batch_size = args.batch_size or (2 if args.small else 16)
    args.steps = args.steps or (2 if args.small else 10)
    args.warmup = min(args.warmup, 1) if args.small else args.warmup
    if args.gen_batch_sizes is None:
        args.gen_batch_sizes = [1, 4, 8] if args.small else [1, 32, 64]
    args.data_workers = args.data_workers if args.data_workers is not None else (2 if args.small else 4)
    args.data_samples = args.data_samples or (32 if args.small else 256)
    args.share_batch = args.share_batch if args.share_batch is not None else (8 if args.small else 16)
    return args


def main() -> int:
    if "--fsdp" in sys.argv[1:]:  # the sharded 13B case, under torchrun (bench_fsdp.py)
        import bench_fsdp

        with torch.enable_grad():  # main() runs under no_grad; training needs autograd
            return bench_fsdp.main(sys.argv[1:])
    args = parse_args(sys.argv[1:])

    from coin.errors import RequirementsError
    from coin.requirements import check

    try:  # the GPU image's own transformers may be older than coin's floor: said now, not after the 7B loads
        check(log=print)
    except RequirementsError as e:
        print(f"bench_gpu: {e}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here (torch.cuda.is_available() is False). This benchmark measures a "
              "7B model on a GPU; run it on a machine with one, or exercise its logic on a CPU with "
              "`python bench/bench_gpu.py --small --device cpu`.", file=sys.stderr)
        return 2
    if device.type == "cpu" and not args.small:
        print("bench_gpu: the full 7B architecture on a CPU would take hours; add --small.", file=sys.stderr)
        return 2
    if args.dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    else:
        dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32

    from coin.config import AdapterConfig

    config = llava_config(args.small)
    name = "LLaVA-1.5-7B architecture" + (" (--small: shrunken)" if args.small else "")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    import transformers

    print(f"{name}, random weights, {str(dtype).split('.')[-1]} on {where}; torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    report = {"device": where, "device_type": device.type, "torch": torch.__version__,
              "transformers": transformers.__version__, "python": platform.python_version(),
              "cuda": torch.version.cuda, "small": args.small, "dtype": str(dtype).split(".")[-1],
              "args": {k: v for k, v in vars(args).items() if k != "json"}, "variants": {}}
    print(f"training: batch {args.batch_size} x {1 + 576 + args.text_tokens} tokens (576 image), "
          f"gradient checkpointing {'off' if args.no_gradient_checkpointing else 'on'}, attention {args.attn}; "
          f"{args.steps} timed steps after {args.warmup}")
    saved = Report(report, args.json, device)
    for variant in args.variants:
        adapter = AdapterConfig(type=variant, r=args.rank, alpha=args.alpha or 2.0 * args.rank, dropout=args.dropout,
                                options={"experts": args.experts} if variant == "moelora" else {}, train_projector=True)
        label = f"{variant} r{args.rank}" + (f" x{args.experts} experts" if variant == "moelora" else "")
        entry = report["variants"][variant] = {"label": label}
        vlm = saved.measure(entry, "model", f"{variant} model", lambda: build_vlm(
            config, device, dtype, args.attn, not args.no_gradient_checkpointing, adapter), keep=False)
        if vlm is None:
            continue
        entry["parameters"] = sum(p.numel() for p in vlm.model.parameters())
        entry["attn_implementation"] = attn_kernel(vlm)
        print(f"  {variant} attention kernel (model.config._attn_implementation): {entry['attn_implementation']}",
              flush=True)
        tr = saved.measure(entry, "train", f"{variant} train", lambda: bench_train(vlm, args, device, dtype))
        for key, fn in (("eval_samples_per_s", lambda b: bench_generate(vlm, b, args, device, dtype)),
                        ("prefill_decode", lambda b: bench_prefill_decode(vlm, b, args, device, dtype)),
                        ("eval_samples_per_s_hf", lambda b: bench_generate(vlm, b, args, device, dtype, "hf"))):
            entry[key] = {}
            for b in args.gen_batch_sizes:
                saved.measure(entry[key], str(b), f"{variant} {key} batch {b}", lambda b=b, fn=fn: fn(b))
        agree = saved.measure(entry, "agreement", f"{variant} agreement", lambda: bench_agreement(vlm, args, device, dtype)) \
            if args.agree_prompts else None
        share = saved.measure(entry, "share_prefix", f"{variant} share_prefix",
                              lambda: bench_share_prefix(vlm, args, device, dtype)) \
            if args.share_batch else None
        entry["memory_estimate"] = memory_estimates(config, args, args.experts if variant == "moelora" else 1,
                                                    not args.no_gradient_checkpointing)
        if agree:
            print(f"  {variant} {report['dtype']} answers, batch {agree['batch']} vs batch 1 (LlavaVLM.generate): "
                  f"agree: {agree['identical']}/{agree['prompts']} identical answers", flush=True)
        if share:
            print(f"  {variant} share_prefix, batch {share['batch']} (4 questions per image), prefill+decode: "
                  f"off {share['unshared_ms']:.1f} ms, on {share['shared_ms']:.1f} ms "
                  f"(x{share['unshared_ms'] / share['shared_ms']:.2f}); {share['identical']}/{share['batch']} "
                  "answers identical", flush=True)
        gen, gen_hf = entry["eval_samples_per_s"], entry["eval_samples_per_s_hf"]
        print(f"  {variant} generation, coin's decoding over model.generate: "
              + ", ".join(f"batch {b} " + _ratio(gen.get(str(b)), gen_hf.get(str(b))) for b in args.gen_batch_sizes),
              flush=True)
        if tr:
            print(f"  {label}: {entry['parameters'] / 1e9:.2f}B parameters, {tr['trainable'] / 1e6:.1f}M trainable, "
                  f"loss {tr['loss']:.2f} (random weights)", flush=True)
        vlm = None  # the next variant builds its own
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        saved.save()

    peak = peak_tflops(device, args.peak_tflops)
    report["peak_tflops"] = peak
    head = f"{'variant':<24}{'steps/s':>9}{'tokens/s':>10}{'TFLOP/s':>9}{'MFU':>7}{'peak GiB':>10}{'rsvd GiB':>10}{'ckpt s':>8}{'ckpt MB':>9}"
    print("\n" + head)
    for v in report["variants"].values():
        tr = v.get("train")
        if not tr:
            print(f"{v['label']:<24}  failed (the report's errors)")
            continue
        v["mfu"] = tr["tflops"] / peak if peak else None
        mfu = f"{100 * tr['tflops'] / peak:.1f}%" if peak else "n/a"
        print(f"{v['label']:<24}{tr['steps_per_s']:>9.3f}{tr['tokens_per_s']:>10.0f}{tr['tflops']:>9.3f}{mfu:>7}"
              f"{tr['peak_gib']:>10.1f}{tr['peak_reserved_gib']:>10.1f}{tr['ckpt_s']:>8.2f}{tr['ckpt_mb']:>9.0f}")
    print("(training through coin's forward (coin.engine.lm_loss.forward_with_loss, train.logits: "
          f"{args.logits}); TFLOP/s: model FLOPs of training per second (bench_gpu.model_flops); MFU: over the "
          f"device's dense bf16 peak, {f'{peak:.0f} TFLOP/s' if peak else 'unknown here: give --peak-tflops'}; "
          "peak GiB: torch.cuda.max_memory_allocated during training (rsvd: max_memory_reserved); ckpt: one "
          "in-stage checkpoint written)")
    head = f"{'variant':<24}{'batch':>6}{'samples/s':>11}{'prefill ms':>12}{'decode ms/tok':>15}{'gen peak GiB':>14}"
    print("\n" + head)
    for v in report["variants"].values():
        for b in args.gen_batch_sizes:
            rate, split = v.get("eval_samples_per_s", {}).get(str(b)), v.get("prefill_decode", {}).get(str(b))
            print(f"{v['label']:<24}{b:>6}{_num(rate, 11, '.2f')}{_num(split and split['prefill_ms'], 12, '.1f')}"
                  f"{_num(split and split['decode_ms_per_token'], 15, '.2f')}{_num(split and split['peak_gib'], 14, '.1f')}")
    print(f"(evaluation: mixed-length left-padded prompts, {args.new_tokens} new tokens each, adapter unmerged, "
          "coin's decoding; prefill: the whole prompt, image included; gen peak GiB: during one generation)")
    for v in report["variants"].values():
        m = v.get("memory_estimate")
        if not m:
            continue
        measured = (v.get("train") or {}).get("peak_gib", float("nan"))
        print(f"{v['label']} training memory, LLaVA-1.5-7B{' (--small)' if args.small else ''} at batch "
              f"{args.batch_size}: measured {measured:.1f} GiB"
              + (f", estimate {m['llava_gib']:.1f} GiB" if "llava_gib" in m else "")
              + f"; Qwen2-VL-7B at batch {m['qwen2_vl_7b_batch']} x {m['qwen2_vl_7b_tokens']} tokens: "
              f"estimate {m['qwen2_vl_7b_gib']:.1f} GiB (coin.engine.memory, not measured; estimates include ~1 GiB of "
              "CUDA context that max_memory_allocated does not)")
    line = saved.measure(report, "loader", "loader", lambda: bench_loader(args))
    if line:
        report["loader_samples_per_s"] = args.loader_rates
        print("\n" + line)
    if args.frozen_tower:
        line = saved.measure(report, "frozen_tower", "frozen tower", lambda: bench_frozen_tower(config, args, device, dtype))
        if line:
            print(line)
    trained = [v for v in report["variants"].values() if v.get("train")]
    if len(trained) == 2:
        a, b = trained
        print(f"{b['label']} / {a['label']}: training time x{a['train']['steps_per_s'] / b['train']['steps_per_s']:.2f}, "
              + ", ".join(f"generation b{k} time " + _ratio(a["eval_samples_per_s"].get(str(k)),
                                                            b["eval_samples_per_s"].get(str(k)))
                          for k in args.gen_batch_sizes))
    report["complete"] = True
    saved.save()
    if args.json:
        print(f"wrote {args.json}")
    if saved.failures:
        print(f"bench_gpu: {len(saved.failures)} measurement(s) failed (the others are kept"
              + (f" in {args.json}" if args.json else "") + "):\n  " + "\n  ".join(saved.failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
