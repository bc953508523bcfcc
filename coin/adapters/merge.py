"""Merging a LoRA's update into the base weights, so the next task starts a fresh LoRA on top.

Methods such as KeepLoRA and SEFE's RegLoRA train one LoRA per task, fold its update
``scaling * B A`` into the weight ``W`` of every adapted layer after the task, and start the next
task from a re-initialised LoRA (``B = 0``, so the model's function does not change). This
module does that once, for PEFT's plain LoRA linear layers.

How the merged weights are kept, so that a killed run resumes with the identical matrix:

- The first time it sees the model, ``MergedWeights`` copies the original weight ``W0`` of every
  adapted layer to host memory (in the base's dtype: bf16 for LLaVA-1.5, about 13 GB for 7B).
- Each merge appends the task's factors ``(scaling * B, A)`` (fp32, host memory); the layer's
  weight becomes ``(W0.float() + [B_1 ... B_t] @ [A_1; ...; A_t]).to(W0.dtype)``: the sum is
  formed in fp32 from the original and rounded once to the base dtype, so updates below bf16's
  resolution are not lost merge after merge (a running bf16 ``W += BA`` would drop them).
- The factors are what is saved with the stage (safetensors, only the stage's own: a resumed
  run loads every finished stage in order); ``apply`` recomputes the same weights from a freshly
  loaded base with the same operations, bit for bit. For LLaVA-1.5-7B with r = 128 a task's
  factors are about 1.7 GB (fp32), against 13 GB for the merged bf16 weights themselves.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["MERGEABLE_ADAPTERS", "MergedWeights", "lora_delta", "lora_layers", "merge_problems", "top_fraction",
           "unmergeable"]

ADAPTER = "default"  # PEFT's name for the one adapter coin's ``lora`` attaches
MERGEABLE_ADAPTERS = ("lora",)  # adapter types whose update is scaling * B A on plain linear layers


def lora_layers(model: torch.nn.Module, adapter: str = ADAPTER) -> dict[str, Any]:
    """Every plain PEFT LoRA linear layer of ``model`` holding ``adapter``, by module name, in model order.

    Subclasses (MoELoRA's gated layer) are left out: their update is not ``scaling * B A``.
    """
    from peft.tuners.lora.layer import Linear as LoraLinear

    return {name: m for name, m in model.named_modules() if type(m) is LoraLinear and adapter in m.lora_A}


def merge_problems(cfg: Any, method: str) -> list[str]:
    """A merging method's refusal of adapters it cannot merge (``Method.check_run``)."""
    problems = []
    kind = getattr(cfg.adapter, "type", None)
    if kind not in MERGEABLE_ADAPTERS:
        problems.append(f"adapter.type: method {method!r} merges each task's LoRA update scaling * B A into the base "
                        f"weights, which adapter {kind!r} does not have; use one of: {', '.join(MERGEABLE_ADAPTERS)}")
    strategy = getattr(getattr(cfg, "dist", None), "strategy", "ddp")
    if strategy != "ddp":  # the sharded base of dist.strategy: fsdp is not a weight a process can merge into
        problems.append(f"dist.strategy: method {method!r} merges LoRA updates into whole base weights, which "
                        f"{strategy!r} shards over the processes; use ddp (every process holds the whole model)")
    return problems


def unmergeable(model: torch.nn.Module, adapter: str = ADAPTER) -> list[str]:
    """Why ``model``'s LoRA cannot be merged layer by layer (empty when it can), each naming a layer."""
    from peft.tuners.lora.layer import LoraLayer

    problems = []
    layers = lora_layers(model, adapter)
    if not layers:
        problems.append(f"the model has no plain LoRA linear layer holding adapter {adapter!r}")
    for name, m in model.named_modules():
        if isinstance(m, LoraLayer) and name not in layers:
            problems.append(f"{name}: {type(m).__name__} is not a plain LoRA linear layer")
    for name, m in layers.items():
        if m.use_dora.get(adapter, False):
            problems.append(f"{name}: DoRA's update is not scaling * B A")
        if getattr(m, "fan_in_fan_out", False):
            problems.append(f"{name}: fan_in_fan_out layers are not supported")
        if m.lora_bias.get(adapter, False):
            problems.append(f"{name}: a LoRA bias is not supported")
    return problems


def lora_delta(layer: Any, adapter: str = ADAPTER) -> torch.Tensor:
    """The layer's update ``scaling * B A`` (out x in), in fp32."""
    b = layer.lora_B[adapter].weight.float()
    a = layer.lora_A[adapter].weight.float()
    return layer.scaling[adapter] * (b @ a)


class MergedWeights:
    """The adapted layers' base weights as ``W0`` plus every LoRA update merged so far.

    ``factors`` maps a tag (the stage that merged) to ``{layer: (scaling * B, A)}``, in merge
    order. ``state_dict(tag)`` / ``load_state_dict`` move one tag's factors to and from tensors;
    ``apply`` writes ``W0 + sum of the factors`` into the model (idempotent).
    """

    PREFIX = "merge/"

    def __init__(self, adapter: str = ADAPTER) -> None:
        self.adapter = adapter
        self.originals: dict[str, torch.Tensor] = {}  # layer -> W0 (host memory, the base dtype)
        self.factors: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}

    def capture(self, model: torch.nn.Module) -> None:
        """Copy the original weights ``W0`` the first time (call it on the model as loaded)."""
        if self.originals:
            return
        for name, layer in lora_layers(model, self.adapter).items():
            self.originals[name] = layer.get_base_layer().weight.detach().to("cpu", copy=True)

    def merge(self, model: torch.nn.Module, tag: int, reset_a: bool = True) -> None:
        """Fold every layer's ``scaling * B A`` into its base weight, then restart the LoRA from ``B = 0``.

        ``reset_a``: draw ``A`` afresh with PEFT's initialisation (Kaiming-uniform, from the global
        RNG); otherwise ``A`` stays (KeepLoRA sets it itself before the next task). The model's
        function is unchanged by the reset (``B = 0``) and changed by the merge only by rounding.
        """
        self.capture(model)
        layers = lora_layers(model, self.adapter)
        self.factors[tag] = {
            name: ((layer.scaling[self.adapter] * layer.lora_B[self.adapter].weight.detach().float()).cpu(),
                   layer.lora_A[self.adapter].weight.detach().float().cpu().clone())
            for name, layer in layers.items()}
        self.apply(model)
        with torch.no_grad():
            for layer in layers.values():
                if reset_a:
                    layer.reset_lora_parameters(self.adapter, True)
                else:
                    layer.lora_B[self.adapter].weight.zero_()

    def apply(self, model: torch.nn.Module) -> None:
        """Set each adapted layer's weight to ``(W0.float() + B_all @ A_all).to(dtype)`` from the stored factors."""
        self.capture(model)
        if not self.factors:
            return
        tags = sorted(self.factors)
        with torch.no_grad():
            for name, layer in lora_layers(model, self.adapter).items():
                weight = layer.get_base_layer().weight
                parts = [self.factors[t][name] for t in tags if name in self.factors[t]]
                w0 = self.originals[name].to(weight.device)
                if not parts:
                    weight.copy_(w0)
                    continue
                b = torch.cat([p[0] for p in parts], dim=1).to(weight.device)
                a = torch.cat([p[1] for p in parts], dim=0).to(weight.device)
                weight.copy_((w0.float() + b @ a).to(weight.dtype))

    def delta(self, name: str) -> torch.Tensor:
        """The sum of the updates merged into layer ``name`` so far (fp32, host memory)."""
        parts = [f[name] for _, f in sorted(self.factors.items()) if name in f]
        if not parts:
            return torch.zeros_like(self.originals[name], dtype=torch.float32)
        return torch.cat([p[0] for p in parts], dim=1) @ torch.cat([p[1] for p in parts], dim=0)

    # ------------------------------------------------------------------ persistence
    def state_dict(self, tag: int) -> dict[str, torch.Tensor]:
        """The factors merged under ``tag``, as flat tensors (``merge/<tag>/<layer>/B`` and ``/A``)."""
        out = {}
        for name, (b, a) in self.factors.get(tag, {}).items():
            out[f"{self.PREFIX}{tag:03d}/{name}/B"] = b
            out[f"{self.PREFIX}{tag:03d}/{name}/A"] = a
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Add the factors found in ``state`` (keys from ``state_dict``) to those already held."""
        found: dict[int, dict[str, dict[str, torch.Tensor]]] = {}
        for key, value in state.items():
            if not key.startswith(self.PREFIX):
                continue
            tag, rest = key[len(self.PREFIX):].split("/", 1)
            name, part = rest.rsplit("/", 1)
            found.setdefault(int(tag), {}).setdefault(name, {})[part] = value.float()
        for tag, layers in found.items():
            bad = [n for n, parts in layers.items() if set(parts) != {"A", "B"}]
            if bad:
                raise ValueError(f"merged LoRA state of stage {tag} lacks A or B for {bad[:3]}")
            self.factors[tag] = {n: (parts["B"], parts["A"]) for n, parts in layers.items()}

    def numel(self) -> int:
        """How many numbers the stored factors hold (for the cost table)."""
        return sum(b.numel() + a.numel() for f in self.factors.values() for b, a in f.values())


def top_fraction(values: torch.Tensor, fraction: float) -> torch.Tensor:
    """Flat indices of the ``ceil(fraction * numel)`` largest entries of ``values`` (at least one)."""
    k = max(1, math.ceil(fraction * values.numel()))
    return torch.topk(values.flatten(), k, sorted=False).indices
