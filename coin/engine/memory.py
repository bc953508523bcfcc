"""Per-GPU memory of training, estimated from the architecture before anything loads (``coin run --dry-run``).

The formula (docs/distributed.md has it with LLaVA-1.5-13B's numbers), in bytes, for N processes,
``w`` bytes per frozen weight (``model.dtype``), ``a`` bytes per activation (the compute dtype),
``P_f`` frozen and ``P_t`` trainable parameters (the projector counts in both: PEFT keeps its frozen
original beside the trained copy), ``B`` samples per micro-batch of ``T`` tokens each:

- weights: DDP ``w P_f``; FSDP ``w P_f / N`` plus what is gathered while it runs: the root unit
  (embeddings, LM head, vision tower, projector: gathered from a forward to its backward),
  ``w P_root (N - 1) / N`` more than its shard, and two whole decoder blocks, ``2 w P_block`` (the
  one running and the next, which FSDP2 gathers ahead);
- trainable state: ``16 P_t`` (fp32 weight, gradient and AdamW's two moments), under both
  strategies (coin replicates the adapter); DDP adds its gradient buckets, ``4 P_t``;
- activations per sample, per decoder layer and token: ``a (6h + 2h_kv + 4f + 7r)`` (the inputs the
  adapted linear layers and norms keep for backward: two norm inputs, the normed inputs, q, k, v,
  the attention output, the MLP's gate, up, activation and product, and the LoRA A outputs), plus
  ``4 n_heads T`` per token where the attention keeps its probabilities (``eager``); with
  ``model.gradient_checkpointing`` only each layer's input ``a h`` is kept and one layer is
  recomputed at a time; plus the logits and the loss's float32 copies, ``T V (a + 8)``
  (``+ 4`` when ``a`` is 2); the frozen vision tower keeps nothing (it runs without autograd).

Not counted: the CUDA context and allocator slack (about 1 GB per GPU, printed beside the
estimate), evaluation's KV cache (far below training's activations at coin's batch sizes), and
temporary gradients of activations in backward (a few ``T h`` per sample).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
GIB = 2**30


@dataclass(frozen=True)
class Arch:
    """The sizes the estimate needs: a Llama-style LM, a CLIP-style vision tower, LLaVA's projector."""

    hidden: int
    ffn: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    vision_width: int
    vision_ffn: int
    vision_layers: int
    image_size: int
    patch: int
    tied: bool = False
    image_tokens: int | None = None  # default: (image_size / patch)^2

    @property
    def tokens_per_image(self) -> int:
        return self.image_tokens if self.image_tokens is not None else (self.image_size // self.patch) ** 2

    @property
    def kv(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def block_params(self) -> int:
        h, f, kv = self.hidden, self.ffn, self.kv
        return 2 * h * h + 2 * h * kv + 3 * h * f + 2 * h

    def lm_params(self) -> int:
        return self.layers * self.block_params() + self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    def vision_params(self) -> int:
        w, m, n = self.vision_width, self.vision_ffn, self.tokens_per_image
        layer = 4 * (w * w + w) + 2 * w * m + w + m + 4 * w
        return self.vision_layers * layer + 3 * self.patch**2 * w + (n + 2) * w + 4 * w

    def projector_params(self) -> int:
        w, h = self.vision_width, self.hidden
        return w * h + h + h * h + h

    def adapter_params(self, r: int, experts: int = 1) -> int:
        """LoRA (or MoELoRA: ``experts`` > 1 adds the gates) on the seven linear layers of every block."""
        h, f, kv = self.hidden, self.ffn, self.kv
        lora = r * (2 * (h + h) + 2 * (h + kv) + 2 * (h + f) + (f + h))
        gates = experts * (6 * h + f) if experts > 1 else 0
        return self.layers * (lora + gates)


def arch_from_config(config: dict) -> Arch | None:
    """An ``Arch`` from a transformers ``config.json`` of a LLaVA-style model (``text_config`` +
    ``vision_config``); None for an architecture the estimate does not know."""
    text, vision = config.get("text_config"), config.get("vision_config")
    if not isinstance(text, dict) or not isinstance(vision, dict):
        return None
    try:
        heads = int(text["num_attention_heads"])
        return Arch(hidden=int(text["hidden_size"]), ffn=int(text["intermediate_size"]),
                    layers=int(text["num_hidden_layers"]), heads=heads,
                    kv_heads=int(text.get("num_key_value_heads") or heads), vocab=int(text["vocab_size"]),
                    vision_width=int(vision["hidden_size"]), vision_ffn=int(vision["intermediate_size"]),
                    vision_layers=int(vision["num_hidden_layers"]), image_size=int(vision["image_size"]),
                    patch=int(vision["patch_size"]), tied=bool(text.get("tie_word_embeddings", False)))
    except (KeyError, TypeError, ValueError):
        return None


def arch_for(model_cfg: Any) -> tuple[Arch | None, str]:
    """The architecture of the configured backbone, read from its sizes or its folder's ``config.json``
    (nothing else is read); and where it came from, or why there is none."""
    name = model_cfg.name
    opts = model_cfg.options
    from coin.models import BACKBONES

    own = BACKBONES.get(name).size_config(model_cfg)  # a backbone that knows its sizes without a folder
    if own is not None:
        config, where = own
        return arch_from_config(config), where
    parts = {k: getattr(opts, k, None) for k in ("lm_path", "vision_path")}
    path = getattr(opts, "path", None) or getattr(opts, "folder", None)
    folders = [parts["lm_path"], parts["vision_path"]] if all(parts.values()) else [path] if path else []
    if not folders:
        return None, f"model.name {name!r}: no folder whose config.json gives the sizes"
    configs = []
    for folder in folders:
        file = Path(folder).expanduser() / "config.json"
        if not file.is_file():
            return None, f"{file} not found (a hub id is not fetched by a dry run)"
        try:
            configs.append(json.loads(file.read_text(encoding="utf-8")))
        except ValueError:
            return None, f"{file} is not valid JSON"
    config = configs[0] if len(configs) == 1 else {  # llava-pretrain: the LM's config and CLIP's
        "text_config": configs[0], "vision_config": configs[1].get("vision_config", configs[1])}
    where = " + ".join(str(Path(f).expanduser() / "config.json") for f in folders)
    arch = arch_from_config(config) if isinstance(config, dict) else None
    return (arch, where) if arch is not None else (None, f"{where}: not a LLaVA-style config (text_config, "
                                                         "vision_config); no estimate")


def activations(arch: Arch, tokens: int, act_bytes: int, r: int, checkpointing: bool, eager: bool = False) -> int:
    """Bytes one training sample of ``tokens`` tokens keeps for backward (module doc)."""
    h, kv, f = arch.hidden, arch.kv, arch.ffn
    layer = act_bytes * tokens * (6 * h + 2 * kv + 4 * f + 7 * r) + (4 * arch.heads * tokens * tokens if eager else 0)
    kept = arch.layers * act_bytes * tokens * h + layer if checkpointing else arch.layers * layer
    logits = tokens * arch.vocab * (act_bytes + 8 + (4 if act_bytes == 2 else 0))
    projector = act_bytes * arch.tokens_per_image * (arch.vision_width + 2 * h)
    return kept + logits + projector


def estimate(arch: Arch, *, r: int, experts: int = 1, train_projector: bool = True, batch: int, tokens: int,
             weight_bytes: int, act_bytes: int, processes: int, checkpointing: bool, eager: bool = False) -> dict:
    """Per-process bytes under ``ddp`` and ``fsdp``, by part (``weights``, ``state``, ``activations``, ``total``)."""
    projector = arch.projector_params()
    frozen = arch.lm_params() + arch.vision_params() + projector
    trainable = arch.adapter_params(r, experts) + (projector if train_projector else 0)
    acts = batch * activations(arch, tokens, act_bytes, r, checkpointing, eager)
    root = frozen - arch.layers * arch.block_params()
    n = processes
    # the root unit stays gathered through a step; a block is gathered whole while it runs, and FSDP2
    # gathers the next one ahead (backward; forward too on GPUs): two whole blocks beside their shards
    gathered = root * weight_bytes * (n - 1) / n + 2 * arch.block_params() * weight_bytes
    out = {}
    for name, weights, state in (("ddp", frozen * weight_bytes, 20 * trainable),
                                 ("fsdp", frozen * weight_bytes / n + gathered, 16 * trainable)):
        out[name] = {"weights": weights, "state": state, "activations": acts, "total": weights + state + acts}
    out["params"] = {"frozen": frozen, "trainable": trainable}
    return out


def plan_lines(cfg: Any, processes: int, text_tokens: int = 104) -> list[str]:
    """The dry run's memory section: per-GPU estimates under DDP and FSDP for ``processes`` processes
    (and for 2, 4 and 8 when launched alone), with and without gradient checkpointing."""
    arch, source = arch_for(cfg.model)
    if arch is None:
        return [f"memory per GPU: no estimate ({source})"]
    experts = int(getattr(cfg.adapter.options, "experts", 1) or 1)
    weight = DTYPE_BYTES.get(cfg.model.dtype, 2)  # auto: bf16, what a GPU run loads
    act = DTYPE_BYTES[cfg.train.precision] if cfg.train.precision != "fp32" else weight
    tokens = arch.tokens_per_image + text_tokens
    lines = [f"memory per GPU (estimate; formula in docs/distributed.md): sizes from {source}; weights "
             f"{'bf16' if weight == 2 else 'fp32'}{' (model.dtype auto: bf16 on a GPU)' if cfg.model.dtype == 'auto' else ''}, "
             f"{cfg.train.batch_size} samples of ~{tokens} tokens ({arch.tokens_per_image} image + {text_tokens} text) "
             "per micro-batch; plus ~1 GiB of CUDA context"]
    counts = [processes] if processes > 1 else [2, 4, 8]
    for n in counts:
        for ckpt in sorted({cfg.model.gradient_checkpointing, True}, reverse=True):
            e = estimate(arch, r=cfg.adapter.r, experts=experts, train_projector=cfg.adapter.train_projector,
                         batch=cfg.train.batch_size, tokens=tokens, weight_bytes=weight, act_bytes=act,
                         processes=n, checkpointing=ckpt)
            parts = "  ".join(f"{s.upper()} {_size(e[s]['total'])} (weights {_size(e[s]['weights'])}, adapter state "
                              f"{_size(e[s]['state'])}, activations {_size(e[s]['activations'])})" for s in ("ddp", "fsdp"))
            lines.append(f"  {n} GPUs, checkpointing {'on ' if ckpt else 'off'}: {parts}")
    p = e["params"]
    lines.append(f"  parameters: {p['frozen'] / 1e9:.2f}B frozen, {p['trainable'] / 1e6:.0f}M trainable")
    return lines


def _size(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 2**20:.0f} MiB"
