"""Cost of MoELoRA's fused experts against plain LoRA and against a per-expert Python loop.

Usage: python bench/bench_moelora.py [--tokens 2048] [--dim 4096] [--rank 128] [--experts 8]
                                     [--reps 5] [--threads N] [--device cpu|cuda] [--dtype fp32|bf16]

One layer sized like a 7B model's projection (4096 x 4096, frozen), 2,048 tokens, total rank
128, forward + backward (gradients for the adapter and for the input, as inside a network).
Three ways to compute ``W x + (alpha/r) * sum_i G_i(x) B_i A_i x``:

- ``lora``: PEFT's LoRA of rank r (no gate): the floor MoELoRA is measured against;
- ``moelora``: coin's fused layer (one A of r x in, the gate broadcast over rank slices, one B);
- ``loop``: N separate experts of rank r/N and the gate, summed one expert at a time, as the
  original CoIN code does.

Each variant is timed twice: the whole layer (``W x`` included) and the adapter path alone,
where the three differ. Variants run round-robin and the median is reported, so background
load on a shared machine hits all of them alike; the load average is printed with the result.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from coin.adapters.moelora import MoELoraLinear, moelora_config


class ExpertLoop(nn.Module):
    """The unfused reference: one (A_i, B_i) pair per expert, weighted by the gate in a loop."""

    def __init__(self, base: nn.Linear, rank: int, experts: int, alpha: float) -> None:
        super().__init__()
        self.base, self.scaling = base, alpha / rank
        k = rank // experts
        self.A = nn.ModuleList(nn.Linear(base.in_features, k, bias=False) for _ in range(experts))
        self.B = nn.ModuleList(nn.Linear(k, base.out_features, bias=False) for _ in range(experts))
        self.gate = nn.Linear(base.in_features, experts, bias=False)

    def adapter(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.softmax(self.gate(x), dim=-1)
        out = 0
        for i, (a, b) in enumerate(zip(self.A, self.B)):
            out = out + b(a(x)) * self.scaling * g[..., i : i + 1]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.adapter(x)


def build(dim: int, rank: int, experts: int, device: str, dtype: torch.dtype) -> dict:
    """The three layers around one shared frozen base weight; returns name -> (full, adapter-only)."""
    torch.manual_seed(0)
    base = nn.Linear(dim, dim, bias=False).to(device, dtype).requires_grad_(False)
    alpha = 2.0 * rank
    lora = get_peft_model(nn.Sequential(base), LoraConfig(r=rank, lora_alpha=alpha, target_modules=["0"]))
    moe = get_peft_model(nn.Sequential(base), moelora_config(r=rank, alpha=alpha, num_experts=experts,
                                                              target_modules=["0"]))
    lora_layer = lora.base_model.model[0]
    moe_layer = next(m for m in moe.modules() if isinstance(m, MoELoraLinear))
    loop = ExpertLoop(base, rank, experts, alpha).to(device, dtype)  # PEFT already matched base's dtype
    loop.base.requires_grad_(False)
    with torch.no_grad():  # nonzero B everywhere, as after some training
        for m in (lora, moe, loop):
            for n, p in m.named_parameters():
                if p.requires_grad and ("lora_B" in n or n.startswith("B.")):
                    p.normal_(std=0.01)

    def lora_adapter(x):
        return lora_layer.lora_B["default"](lora_layer.lora_A["default"](x)) * lora_layer.scaling["default"]

    return {
        "lora": (lora, lora_adapter),
        "moelora": (moe, lambda x: moe_layer.mixture("default", x)),
        "loop": (loop, loop.adapter),
    }


def time_fwd_bwd(fn, x: torch.Tensor, grad: torch.Tensor, device: str) -> float:
    """Seconds for one forward and backward of ``fn`` on ``x`` (grads of x and the adapter)."""
    x.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn(x).backward(grad)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--rank", type=int, default=128)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    variants = build(args.dim, args.rank, args.experts, args.device, dtype)
    x = torch.randn(args.tokens, args.dim, device=args.device, dtype=dtype, requires_grad=True)
    grad = torch.randn(args.tokens, args.dim, device=args.device, dtype=dtype)
    load0 = os.getloadavg()
    print(f"layer {args.dim}x{args.dim}, {args.tokens} tokens, r={args.rank}, N={args.experts}, {args.dtype} on "
          f"{args.device}, {torch.get_num_threads()} threads, {args.reps} reps (median); load average {load0[0]:.2f}")
    results: dict[tuple[str, str], list[float]] = {}
    for rep in range(args.reps + 1):  # the first round warms up and is discarded
        for part, idx in (("layer", 0), ("adapter", 1)):
            for name, fns in variants.items():
                s = time_fwd_bwd(fns[idx], x, grad, args.device)
                if rep:
                    results.setdefault((part, name), []).append(s)
    med = {k: statistics.median(v) for k, v in results.items()}
    for part in ("layer", "adapter"):
        lora, moe, loop = med[(part, "lora")], med[(part, "moelora")], med[(part, "loop")]
        print(f"{part:>8}: lora {lora * 1e3:8.1f} ms | moelora {moe * 1e3:8.1f} ms | loop {loop * 1e3:8.1f} ms"
              f" | moelora/lora {moe / lora:5.2f}x (target <= 1.15) | loop/moelora {loop / moe:5.2f}x (target >= 2)")
    print(f"load average before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")


if __name__ == "__main__":
    main()
