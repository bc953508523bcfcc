"""Sharded training (``dist.strategy: fsdp``) of LLaVA-1.5-13B's architecture with LoRA r 128, random weights.

Usage (N GPUs, one machine):
    torchrun --nproc-per-node N bench/bench_gpu.py --fsdp [--batch-size 4] [--steps 5] [--rank 128]
    torchrun --nproc-per-node 2 bench/bench_gpu.py --fsdp --small --device cpu   # the same code on CPUs

The model is built on the meta device (no process ever holds the whole 13B model), the adapter
attached there, the frozen base sharded by ``coin.engine.fsdp.shard`` (each LM decoder block one
FSDP unit, the rest one more; the adapter and projector replicated), then each process
materialises only its shards and its copy of the trainable weights on its GPU and draws random
values. It trains ``--steps`` optimizer steps of the configs/coin/ recipe (AdamW, bf16
autocast, gradient checkpointing unless turned off) with coin's gradient average of the
replicated weights, and prints per process: steps/s, tokens/s, the peak memory
(``torch.cuda.max_memory_allocated``) beside ``coin.engine.memory``'s estimate for the same
sizes and process count, and the time of one batch of greedy answers generated in lockstep
(``coin.engine.fsdp.lockstep``). With one process the code runs unsharded-equivalent (a mesh of
one), which still checks the estimate on one GPU. ``--small`` shrinks the architecture as
``bench_gpu.py --small`` does, so it runs on CPUs over gloo in seconds (its numbers are not the
13B's). It has not been run on a GPU yet.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from types import SimpleNamespace

import torch

from shared import BOS, EOS, PAD_TOKEN, llava_config, prompt_batch, sync, train_batch


def llava13b_config(small: bool = False):
    """LLaVA-1.5-13B's ``LlavaConfig``: 7B's vision tower and projector layout, Vicuna-13B's LM (40 layers,
    width 5120, MLP 13824, 40 heads); ``small``: bench_gpu's shrunken layout."""
    config = llava_config(small)
    if not small:
        config.text_config.update(dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                                       num_attention_heads=40, num_key_value_heads=40))
    return config


def _materialise(model, device: torch.device, dtype: torch.dtype, config) -> None:
    """Real memory for this process's shards and its trainable copy, random values; buffers rebuilt
    (rotary frequencies, position ids), as a from-scratch init would give them."""
    from torch.distributed.tensor import DTensor

    model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            local = p._local_tensor if isinstance(p, DTensor) else p
            if "lora_B" in name:
                local.zero_()
            elif local.is_floating_point():
                local.normal_(0.0, 0.02, generator=gen)
        for name, buf in model.named_buffers():
            if name.endswith("position_ids"):
                buf.copy_(torch.arange(buf.shape[-1], device=device).expand_as(buf))
            elif name.endswith("inv_freq"):
                theta = float(getattr(config.text_config, "rope_theta", None) or 10000.0)
                dim = 2 * buf.numel()
                buf.copy_(1.0 / theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
            elif buf.is_floating_point():
                buf.zero_()
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # the trainable master copy in fp32 (coin.adapters.fp32_trainable)
    del dtype


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fsdp", action="store_true", help="(the flag bench_gpu.py dispatches on)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--batch-size", type=int, default=None, help="sequences per process per step (default 4; 2 --small)")
    ap.add_argument("--text-tokens", type=int, default=104, help="text tokens after the 576 image tokens")
    ap.add_argument("--answer-tokens", type=int, default=8)
    ap.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 5; 1 --small)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rank", type=int, default=128)
    ap.add_argument("--no-gradient-checkpointing", action="store_true")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--gen-batch-size", type=int, default=None, help="default 32; 2 --small")
    ap.add_argument("--new-tokens", type=int, default=16)
    args = ap.parse_args(argv)
    args.batch_size = args.batch_size or (2 if args.small else 4)
    args.steps = args.steps or (1 if args.small else 5)
    args.gen_batch_size = args.gen_batch_size or (2 if args.small else 32)
    if "WORLD_SIZE" not in os.environ:
        print("bench_gpu --fsdp: launch it with torchrun --nproc-per-node N (N processes, one per GPU)", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu --fsdp: no CUDA device here; exercise the code with --small --device cpu", file=sys.stderr)
        return 2

    import torch.distributed as tdist
    from transformers import LlavaForConditionalGeneration

    from coin.adapters import attach_adapter
    from coin.config import AdapterConfig
    from coin.engine import dist, fsdp
    from coin.engine.memory import GIB, arch_from_config, estimate
    from coin.models.llava.wrapper import LlavaVLM
    from coin.models.modes import checkpoint_activations

    rank, world = dist.rank(), dist.world()
    if args.device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        device, dtype = torch.device("cuda", torch.cuda.current_device()), torch.bfloat16
    else:
        device, dtype = torch.device("cpu"), torch.float32
    tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    config = llava13b_config(args.small)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=args.attn)
    model.generation_config.update(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD_TOKEN)
    tok = SimpleNamespace(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD_TOKEN)
    vlm = LlavaVLM(model, SimpleNamespace(tokenizer=tok))
    if not args.no_gradient_checkpointing:  # as coin.models.load_model
        checkpoint_activations(vlm.model)
    attach_adapter(vlm, AdapterConfig(type="lora", r=args.rank, alpha=2.0 * args.rank, dropout=0.05,
                                      train_projector=True))
    units = fsdp.shard(vlm.model, device, log=lambda m: None)
    _materialise(vlm.model, device, dtype, config)
    fsdp.ready(vlm.model, device)
    params = [p for p in vlm.model.parameters() if p.requires_grad]
    opt = fsdp.adamw([{"params": params}], True, lr=2e-4)  # as coin's training (dist.shard_optimizer)
    gen = torch.Generator().manual_seed(rank)
    batch = train_batch(args.batch_size, args.text_tokens, args.answer_tokens, vlm.num_image_tokens, device, dtype, gen)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    vlm.model.train()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(device)
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = vlm.model(**batch).loss
        loss.backward()
        fsdp.reduce_gradients(params)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else math.nan
    arch = arch_from_config(config.to_dict())
    est = estimate(arch, r=args.rank, batch=args.batch_size, tokens=batch["input_ids"].shape[1],
                   weight_bytes=2 if dtype == torch.bfloat16 else 4, act_bytes=2 if dtype == torch.bfloat16 else 4,
                   processes=world, checkpointing=not args.no_gradient_checkpointing)
    vlm.model.eval()
    prompts = prompt_batch(args.gen_batch_size, args.text_tokens, vlm.num_image_tokens, device, dtype, gen)
    from coin.models.decode import greedy_decode

    sync(device)
    g0 = time.perf_counter()
    with fsdp.lockstep(vlm.model):
        greedy_decode(vlm.model, prompts, args.new_tokens, [EOS])
        dist.barrier()
    sync(device)
    gen_s = time.perf_counter() - g0
    if rank == 0:
        name = "LLaVA-1.5-13B architecture" + (" (--small: shrunken)" if args.small else "")
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"{name}, random weights, LoRA r{args.rank}, dist.strategy fsdp over {world} processes ({units} "
              f"decoder blocks sharded, adapter replicated), {str(dtype).split('.')[-1]} on {where}; "
              f"torch {torch.__version__}")
        print(f"training: {args.batch_size} x {batch['input_ids'].shape[1]} tokens per process per step, gradient "
              f"checkpointing {'off' if args.no_gradient_checkpointing else 'on'}; {args.steps} timed steps")
    line = (f"rank {rank}: steps/s {args.steps / seconds:.3f}  tokens/s {batch['input_ids'].numel() * args.steps / seconds:.0f}"
            f"  peak GiB {peak / GIB:.1f}  estimate GiB {est['fsdp']['total'] / GIB:.1f} (DDP would need "
            f"{est['ddp']['total'] / GIB:.1f})  generation s/batch {gen_s:.2f} ({args.gen_batch_size} x {args.new_tokens} tokens)")
    for r in range(world):  # one line per process, in order
        if r == rank:
            print(line, flush=True)
        dist.barrier()
    tdist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
