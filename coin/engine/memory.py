"""Per-GPU memory of training, estimated from the architecture before anything loads (``coin run --dry-run``).

The sizes come from the backbone's ``config.json`` as transformers resolves it (``AutoConfig``, local
folders only: a partial ``text_config``, as llava-hf ships, gets its model type's defaults), or from the
tiny model's options. Known: LLaVA (llava-hf, or ``llava-pretrain``'s Vicuna + CLIP folders), Qwen2-VL and
Qwen2.5-VL. The sequence: the image tokens (LLaVA's 576 for its 336 px image in 14 px patches; Qwen's
``max_pixels / (patch x merge)^2``, the most an image gets) plus ~104 text tokens, and, beside it, the
longest sequence the run allows (``model.max_length``, else the backbone's own).

The formula (docs/distributed.md has it with LLaVA-1.5-13B's numbers), in bytes, for N processes,
``w`` bytes per frozen weight (``model.dtype``), ``a`` bytes per activation (the compute dtype),
``P_f`` frozen and ``P_t`` trainable parameters (the projector counts in both: PEFT keeps its frozen
original beside the trained copy), ``B`` samples per micro-batch of ``T`` tokens each:

- weights: DDP ``w P_f``; FSDP ``w P_f / N`` plus what is gathered while it runs: the root unit
  (embeddings, LM head, vision tower, projector: gathered from a forward to its backward),
  ``w P_root (N - 1) / N`` more than its shard, and two whole decoder blocks, ``2 w P_block`` (the
  one running and the next, which FSDP2 gathers ahead);
- trainable state: ``16 P_t`` (fp32 weight, gradient and AdamW's two moments) under DDP, plus its
  gradient buckets, ``4 P_t``; under FSDP the weight and gradient stay whole (coin replicates the
  adapter) and each process keeps the moments of its share only, ``(8 + 8 / N) P_t``
  (``dist.shard_optimizer``, the default; ``16 P_t`` without it);
- activations per sample, per decoder layer and token: ``a (6h + 2h_kv + 4f + 7r)`` (the inputs the
  adapted linear layers and norms keep for backward: two norm inputs, the normed inputs, q, k, v,
  the attention output, the MLP's gate, up, activation and product, and the LoRA A outputs), plus
  ``4 n_heads T`` per token where the attention keeps its probabilities (``eager``); with
  ``model.gradient_checkpointing`` only each layer's input ``a h`` is kept and one layer is
  recomputed at a time; plus the logits and the loss's float32 copies, ``T_l V (a + 8)`` over the
  ``T_l`` positions projected onto the vocabulary (``train.logits: labelled``, the default: the answer's,
  ``ANSWER_TOKENS``; ``all``: every one, ``T``)
  (``+ 4`` when ``a`` is 2), and the trained projector's inputs per image token (LLaVA's
  ``a (w_v + 2h)``, Qwen's merger ``4 a m^2 w_v``); the frozen vision tower keeps nothing (it runs
  without autograd).

Not counted: the CUDA context and allocator slack (about 1 GB per GPU, printed beside the
estimate, and added when ``dist.gpu_memory_gib`` is checked), evaluation's KV cache (far below
training's activations at coin's batch sizes), the frozen vision tower's transient forward, and
temporary gradients of activations in backward (a few ``T h`` per sample).
"""

from __future__ import annotations

from typing import Any

from coin.models.arch_sizes import Arch, arch_for, arch_from_config, sizes_for  # noqa: F401 (re-exported)

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
GIB = 2**30
CONTEXT_GIB = 1.0  # the CUDA context and allocator slack, beside the estimate
TEXT_TOKENS = 104  # a CoIN sample's text (instruction, question, answer) beside its image, in LLaVA's tokens
# the positions train.logits: labelled projects onto the vocabulary per sample (coin.engine.lm_loss): a CoIN
# answer and its end-of-sequence token, under 32 tokens for every task but a long ScienceQA/OCR-VQA answer
ANSWER_TOKENS = 32


def activations(arch: Arch, tokens: int, act_bytes: int, r: int, checkpointing: bool, eager: bool = False,
                logit_tokens: int | None = None) -> int:
    """Bytes one training sample of ``tokens`` tokens keeps for backward (module doc); its logits cover
    ``logit_tokens`` positions (None: every one, ``train.logits: all``)."""
    h, kv, f = arch.hidden, arch.kv, arch.ffn
    layer = act_bytes * tokens * (6 * h + 2 * kv + 4 * f + 7 * r) + (4 * arch.heads * tokens * tokens if eager else 0)
    kept = arch.layers * act_bytes * tokens * h + layer if checkpointing else arch.layers * layer
    logits = (tokens if logit_tokens is None else min(tokens, logit_tokens)) * arch.vocab * (
        act_bytes + 8 + (4 if act_bytes == 2 else 0))
    projector = act_bytes * arch.tokens_per_image * arch.projector_activations()
    return kept + logits + projector


def estimate(arch: Arch, *, r: int, experts: int = 1, train_projector: bool = True, batch: int, tokens: int,
             weight_bytes: int, act_bytes: int, processes: int, checkpointing: bool, eager: bool = False,
             logit_tokens: int | None = None, shard_optimizer: bool = True) -> dict:
    """Per-process bytes under ``ddp`` and ``fsdp``, by part (``weights``, ``state``, ``activations``, ``total``);
    ``shard_optimizer``: FSDP's processes keep AdamW's moments sharded (``dist.shard_optimizer``)."""
    projector = arch.projector_params()
    frozen = arch.lm_params() + arch.vision_params() + projector
    trainable = arch.adapter_params(r, experts) + (projector if train_projector else 0)
    acts = batch * activations(arch, tokens, act_bytes, r, checkpointing, eager, logit_tokens)
    root = frozen - arch.layers * arch.block_params()
    n = processes
    # the root unit stays gathered through a step; a block is gathered whole while it runs, and FSDP2
    # gathers the next one ahead (backward; forward too on GPUs): two whole blocks beside their shards
    gathered = root * weight_bytes * (n - 1) / n + 2 * arch.block_params() * weight_bytes
    fsdp_state = 8 + 8 / n if shard_optimizer and n > 1 else 16  # weight and gradient whole, moments sharded
    out = {}
    for name, weights, state in (("ddp", frozen * weight_bytes, 20 * trainable),
                                 ("fsdp", frozen * weight_bytes / n + gathered, fsdp_state * trainable)):
        out[name] = {"weights": weights, "state": state, "activations": acts, "total": weights + state + acts}
    out["params"] = {"frozen": frozen, "trainable": trainable}
    return out


def plan_lines(cfg: Any, processes: int, text_tokens: int = TEXT_TOKENS) -> list[str]:
    """The dry run's memory section: per-GPU estimates under DDP and FSDP for ``processes`` processes
    (and for 2, 4 and 8 when launched alone), with and without gradient checkpointing; the same at the
    longest sequence the run allows; and, where ``dist.gpu_memory_gib`` states the GPU's memory, whether
    the plan fits it (REFUSED, with the largest per-GPU batch that fits, when it does not)."""
    sizes, why = sizes_for(cfg.model)
    if sizes is None:
        return [why]
    arch = sizes.arch
    experts = int(getattr(cfg.adapter.options, "experts", 1) or 1)
    weight = DTYPE_BYTES.get(cfg.model.dtype, 2)  # auto: bf16, what a GPU run loads
    act = DTYPE_BYTES[cfg.train.precision] if cfg.train.precision != "fp32" else weight
    eager = cfg.model.attn_implementation == "eager"
    tokens = arch.tokens_per_image + text_tokens
    labelled = getattr(cfg.train, "logits", "all") == "labelled"
    logit_tokens = ANSWER_TOKENS if labelled else None
    if sizes.max_length is not None:
        tokens = min(tokens, sizes.max_length)

    def est(n: int, ckpt: bool, batch: int = cfg.train.batch_size, length: int = tokens) -> dict:
        return estimate(arch, r=cfg.adapter.r, experts=experts, train_projector=cfg.adapter.train_projector,
                        batch=batch, tokens=length, weight_bytes=weight, act_bytes=act, processes=n,
                        checkpointing=ckpt, eager=eager, logit_tokens=logit_tokens,
                        shard_optimizer=getattr(cfg.dist, "shard_optimizer", True))

    lines = [f"memory per GPU (estimate; formula in docs/distributed.md): sizes from {sizes.source}; weights "
             f"{'bf16' if weight == 2 else 'fp32'}{' (model.dtype auto: bf16 on a GPU)' if cfg.model.dtype == 'auto' else ''}, "
             f"{cfg.train.batch_size} samples of ~{tokens} tokens ({arch.tokens_per_image} image + {text_tokens} text) "
             "per micro-batch; plus ~1 GiB of CUDA context",
             "  logits: " + (f"the labelled positions only (train.logits: labelled), ~{ANSWER_TOKENS} per sample"
                             if labelled else "every position (train.logits: all)"),
             f"  image tokens: {sizes.image}"]
    counts = [processes] if processes > 1 else [2, 4, 8]
    for n in counts:
        for ckpt in sorted({cfg.model.gradient_checkpointing, True}, reverse=True):
            e = est(n, ckpt)
            parts = "  ".join(f"{s.upper()} {_size(e[s]['total'])} (weights {_size(e[s]['weights'])}, adapter state "
                              f"{_size(e[s]['state'])}, activations {_size(e[s]['activations'])})" for s in ("ddp", "fsdp"))
            lines.append(f"  {n} GPUs, checkpointing {'on ' if ckpt else 'off'}: {parts}")
    ckpt = cfg.model.gradient_checkpointing
    longest = sizes.max_length
    if longest is None:
        lines.append(f"  longest sequence: not bounded ({sizes.max_length_from}); set model.max_length to bound it")
    else:
        at = "; ".join(f"{n} GPUs DDP {_size(est(n, ckpt, length=longest)['ddp']['total'])} FSDP "
                       f"{_size(est(n, ckpt, length=longest)['fsdp']['total'])}" for n in counts)
        lines.append(f"  at the longest sequence, {longest} tokens ({sizes.max_length_from}; a micro-batch pads to "
                     f"its longest sample), checkpointing {'on' if ckpt else 'off'}: {at}")
    p = e["params"]
    lines.append(f"  parameters: {p['frozen'] / 1e9:.2f}B frozen, {p['trainable'] / 1e6:.0f}M trainable")
    return lines + fit_lines(cfg, est, counts, longest, processes)


def fit_lines(cfg: Any, est: Any, counts: list[int], longest: int | None, processes: int) -> list[str]:
    """The plan against ``dist.gpu_memory_gib``: fits, or REFUSED with the largest per-GPU batch that fits (tried
    downward with the estimate); at the longest sequence, "over" where only that does not fit."""
    gpu = getattr(cfg.dist, "gpu_memory_gib", None)
    if gpu is None:
        return ["  GPU memory: not stated (dist.gpu_memory_gib), so nothing is checked against it"]
    strategy, ckpt = cfg.dist.strategy, cfg.model.gradient_checkpointing
    per_task = [getattr(t, "batch_size", None) if not isinstance(t, dict) else t.get("batch_size")
                for t in (cfg.train.per_task or {}).values()]
    batch = max([cfg.train.batch_size, *(b for b in per_task if b)])
    which = "" if batch == cfg.train.batch_size else " (train.per_task's largest)"

    def need(n: int, b: int, length: int | None = None) -> float:  # GiB with the context
        return est(n, ckpt, b, *(() if length is None else (length,)))[strategy]["total"] / GIB + CONTEXT_GIB

    lines = []
    for n in counts if strategy == "fsdp" else counts[:1]:  # DDP's per-GPU memory is the same for any count
        label = f"{strategy.upper()}" + (f" over {n} GPUs" if strategy == "fsdp" else "")
        head = f"  GPU memory {gpu:g} GiB (dist.gpu_memory_gib), {label}: "
        total = need(n, batch)
        if total <= gpu:
            lines.append(head + f"fits: {batch} per GPU{which} need ~{total:.1f} GiB with the context")
        else:
            fits = next((b for b in range(batch - 1, 0, -1) if need(n, b) <= gpu), None)
            lines.append(head + f"REFUSED: {batch} per GPU{which} need ~{total:.1f} GiB with the context, over the "
                         f"GPU's {gpu:g} GiB; " + _smaller(cfg, fits, processes))
        if longest is not None and total <= gpu and (top := need(n, batch, longest)) > gpu:
            fits = next((b for b in range(batch - 1, 0, -1) if need(n, b, longest) <= gpu), None)
            lines.append(f"    over at the longest sequence: {batch} samples of {longest} tokens need ~{top:.1f} GiB; "
                         + (f"{fits} per GPU fit at that length" if fits else "not even 1 fits at that length")
                         + " (a micro-batch is as long as its longest sample; model.max_length bounds it)")
    return lines


def _smaller(cfg: Any, fits: int | None, world: int) -> str:
    """What to run instead: the largest per-GPU batch that fits, and the grad_accum that keeps the effective batch."""
    if fits is None:
        tips = ([] if cfg.model.gradient_checkpointing else ["model.gradient_checkpointing: true"]) + \
               (["dist.strategy: fsdp over more GPUs"] if cfg.dist.strategy == "ddp" else ["more GPUs"])
        return f"not even 1 sample per GPU fits; try {' or '.join(tips)}"
    step = cfg.train.batch_size * cfg.train.grad_accum
    keep = (f" --set train.grad_accum={step // fits} keeps the effective batch" if step % fits == 0
            else "; raise train.grad_accum to keep the effective batch near "
            + (f"{step * world}" if world > 1 else f"{step} x processes"))
    return f"the largest per-GPU batch that fits is {fits} (--set train.batch_size={fits}{keep})"


def _size(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 2**20:.0f} MiB"
