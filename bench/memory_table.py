"""The per-GPU memory table of docs/distributed.md, from coin.engine.memory's estimate (no model is built).

    python bench/memory_table.py                      # the table as docs/distributed.md shows it
    python bench/memory_table.py --logits labelled    # the LM head on the answer's positions only
    python bench/memory_table.py --whole-moments      # FSDP with AdamW's moments whole on every process

LLaVA-1.5-7B and -13B from their config sizes, LoRA r 128 on every LM linear layer, projector
trained, bf16, gradient checkpointing, samples of 680 tokens (576 of them the image); GiB per GPU
before the ~1 GiB CUDA context.
"""

from __future__ import annotations

import argparse

from coin.engine.memory import ANSWER_TOKENS, GIB, Arch, estimate

MODELS = {
    "LLaVA-1.5-7B": Arch(hidden=4096, ffn=11008, layers=32, heads=32, kv_heads=32, vocab=32064, vision_width=1024,
                         vision_ffn=4096, vision_layers=24, image_size=336, patch=14),
    "LLaVA-1.5-13B": Arch(hidden=5120, ffn=13824, layers=40, heads=40, kv_heads=40, vocab=32064, vision_width=1024,
                          vision_ffn=4096, vision_layers=24, image_size=336, patch=14),
}
GPUS = (2, 4, 8)


def table(logits: str = "all", shard_optimizer: bool = True, batches: tuple[int, ...] = (4, 16)) -> list[str]:
    lines = ["| model, per-GPU batch | DDP | " + " | ".join(f"FSDP, {n} GPUs" for n in GPUS) + " |",
             "|---|" + "---:|" * (1 + len(GPUS))]
    for name, arch in MODELS.items():
        for batch in batches:
            rows = [estimate(arch, r=128, batch=batch, tokens=680, weight_bytes=2, act_bytes=2, processes=n,
                             checkpointing=True, logit_tokens=None if logits == "all" else ANSWER_TOKENS,
                             shard_optimizer=shard_optimizer) for n in GPUS]
            p = rows[0]["params"]
            label = f"{name} ({p['frozen'] / 1e9:.1f}B frozen, {p['trainable'] / 1e6:.0f}M trainable)"
            cells = [f"{rows[0]['ddp']['total'] / GIB:.1f}"] + [f"{r['fsdp']['total'] / GIB:.1f}" for r in rows]
            lines.append(f"| {label}, {batch} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--logits", choices=("all", "labelled"), default="all")
    ap.add_argument("--whole-moments", action="store_true", help="FSDP without dist.shard_optimizer")
    args = ap.parse_args()
    print("\n".join(table(args.logits, not args.whole_moments)))


if __name__ == "__main__":
    main()
