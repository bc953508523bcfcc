"""MoELoRA's layer: N gated LoRA experts per layer, fused so they cost one LoRA of the same total rank.

The ``moelora`` registry entry and its options are in ``coin.adapters.moelora``; this module is
the PEFT layer and config it builds (imported when an adapter is built, as it needs torch and PEFT).

The paper's layer is ``h = W x + (alpha/r) * sum_i G_i(x) B_i A_i x`` with N experts of rank r/N
and a dense per-token gate ``G(x) = softmax(x W_g)`` computed from the layer's own input. The
original code runs the experts in a Python loop (2N small matmuls per layer). Stacking the
experts instead gives exactly the same function with LoRA's two matmuls::

    A = [A_1; ...; A_N]            (r x in)    one matmul: u = A x            (tokens x r)
    u_i <- G_i(x) * u_i            the gate broadcast over each expert's r/N-slice of u
    B = [B_1 ... B_N]              (out x r)   one matmul: B u = sum_i G_i B_i A_i x

so the only extra cost is the gate (an ``in x N`` matmul and a softmax) and one elementwise
product on a ``tokens x r`` tensor. The weights have LoRA's names and shapes (``lora_A``,
``lora_B``) plus ``lora_gate``, so PEFT trains and saves them as it does LoRA's. With N = 1 there
is no gate at all and the layer, its parameters and its checkpoint are plain LoRA.

Initialisation follows CoIN's MoELoRA: every expert's A from normal(0, 0.01), B zero. PEFT's
LoRA draws A Kaiming-uniform with std 1/sqrt(3 fan_in): 0.009 on LLaVA-7B's 4,096 inputs (about
the same) but 0.036 on the tiny model's 256 (3.6x CoIN's). ``init_a="kaiming"``
(``adapter.init: kaiming``) keeps PEFT's.

The layer plugs into PEFT through ``LoraConfig._register_custom_module`` (experimental in PEFT
0.21). ``MoELoraConfig`` registers it in ``__post_init__``, so every config built through this
module (including the one ``load_moelora`` rebuilds from ``adapter_config.json``) carries the
mapping; a plain ``LoraConfig`` loaded by PEFT alone would build LoRA layers and drop the gates.
The input-dependent gate means N > 1 layers cannot be merged into ``W``.

Dropout differs from the original on purpose. The original's loop applies LoRA dropout once
per expert, so each expert sees its own mask of ``x``; here one mask per layer is shared by
all experts (LoRA's dropout on the stacked ``A``), and the gate sees ``x`` undropped. Per-expert
masks would need N masked copies of the layer input kept for the backward pass, the memory the
fusion saves (LLaVA-7B, N = 8: about 1 GB more per 2,048 tokens per decoder layer, 32 GB for
the whole LM without gradient checkpointing). Each expert still sees inputs dropped at the same
rate; only the masks' independence between experts is lost. With dropout 0 (or in eval mode)
the two are identical.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel
from peft.tuners.lora.layer import LoraLayer
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn

DEFAULT_EXPERTS = 8  # the paper's main MoELoRA rows (tables 11/12 of the CoIN paper) use 8 experts
A_STD = {"normal": 0.01}  # CoIN's MoELoRA draws every expert's A from normal(0, 0.01) (B starts at zero, as LoRA's)


@dataclass
class MoELoraConfig(LoraConfig):
    """A ``LoraConfig`` with ``num_experts``; saved in ``adapter_config.json`` with the rest."""

    num_experts: int = field(default=DEFAULT_EXPERTS, metadata={"help": "experts per layer; r must divide by it"})
    init_a: str = field(default="normal", metadata={"help": "A's init: 'normal' (0, 0.01) as CoIN's MoELoRA, "
                                                             "'kaiming' as PEFT's LoRA"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {self.num_experts}")
        ranks = [self.r, *self.rank_pattern.values()]
        bad = [r for r in ranks if r % self.num_experts]
        if bad:
            raise ValueError(f"every rank must divide by num_experts={self.num_experts}, got r={bad[0]}")
        if self.init_a not in A_STD and self.init_a != "kaiming":
            raise ValueError(f"init_a must be 'normal' or 'kaiming', got {self.init_a!r}")
        if self.use_dora or self.lora_bias:
            raise ValueError("MoELoRA supports neither DoRA nor lora_bias")
        # PEFT's experimental hook: every targeted nn.Linear becomes a MoELoraLinear
        self._register_custom_module({nn.Linear: MoELoraLinear})

    @classmethod
    def load(cls, path: str | Path) -> "MoELoraConfig":
        """Rebuild the config from a saved adapter folder (PEFT itself would give a plain LoraConfig)."""
        data = json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))
        if "num_experts" not in data:
            raise ValueError(f"{path}: adapter_config.json has no num_experts; not a MoELoRA adapter")
        names = {f.name for f in cls.__dataclass_fields__.values() if f.init}
        return cls(**{k: v for k, v in data.items() if k in names and k != "peft_type"})


class MoELoraLinear(LoraLinear):
    """A PEFT LoRA ``Linear`` whose rank-r update is split into N softmax-gated experts."""

    adapter_layer_names = LoraLayer.adapter_layer_names + ("lora_gate",)
    other_param_names = LoraLayer.other_param_names + ("num_experts",)

    def update_layer(self, adapter_name: str, r: int, lora_alpha: float, config: LoraConfig, **kwargs: Any) -> None:
        """Add adapter ``adapter_name``: LoRA's A (r x in) and B (out x r), plus the gate when N > 1."""
        n = getattr(config, "num_experts", 1)
        if r % n:
            raise ValueError(f"rank {r} does not divide into {n} experts")
        if "lora_gate" not in self._modules:  # first adapter: the dicts PEFT iterates must exist first
            self.lora_gate = nn.ModuleDict()
            self.num_experts: dict[str, int] = {}
        self.num_experts[adapter_name] = n
        if n > 1:
            # nn.Linear's default init: gates already differ between tokens at step 0, while B = 0
            # still leaves the model's output unchanged until training moves B
            self.lora_gate[adapter_name] = nn.Linear(self.in_features, n, bias=False)
        # creates A, B, dropout and scaling, moves every adapter dict (the gate too) to the base
        # layer's device and dtype, and sets requires_grad on the active adapters
        super().update_layer(adapter_name, r, lora_alpha=lora_alpha, config=config, **kwargs)
        std = A_STD.get(getattr(config, "init_a", "kaiming"))
        if std is not None and adapter_name in self.lora_A:  # CoIN's init of A (PEFT drew Kaiming-uniform)
            with torch.no_grad():
                nn.init.normal_(self.lora_A[adapter_name].weight, mean=0.0, std=std)

    def gate(self, adapter: str, x: torch.Tensor) -> torch.Tensor | None:
        """Per-token expert weights (..., N); None for a single expert."""
        if self.num_experts[adapter] == 1:
            return None
        return _softmax(self.lora_gate[adapter](x))

    def mixture(self, adapter: str, x: torch.Tensor) -> torch.Tensor:
        """``(alpha/r) * sum_i G_i(x) B_i A_i x`` for one adapter, with two LoRA-sized matmuls."""
        A, dropout, n = self.lora_A[adapter], self.lora_dropout[adapter], self.num_experts[adapter]
        if n == 1:
            u = A(dropout(x))
        else:
            if _inactive(dropout):
                # A and the gate read the same x: one matmul for both, so the backward also needs a
                # single input-gradient matmul (measured: the gate then costs ~5% instead of ~20%)
                z = F.linear(x, torch.cat([A.weight, self.lora_gate[adapter].weight]))
                u, logits = z.split([A.out_features, n], dim=-1)
            else:  # dropout applies to the experts' input only; the gate sees x as it is
                u, logits = A(dropout(x)), self.lora_gate[adapter](x)
            g = _softmax(logits)
            u = (u.unflatten(-1, (n, -1)) * g.unsqueeze(-1)).flatten(-2)  # scale expert i's rank slice by G_i
        return self.lora_B[adapter](u) * self.scaling[adapter]

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The base layer's output plus every active adapter's gated mixture."""
        if kwargs.get("adapter_names") is not None:
            raise NotImplementedError("MoELoRA does not support per-sample adapter_names (mixed batches)")
        kwargs.pop("adapter_names", None)
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        out_dtype = result.dtype
        for adapter in self.active_adapters:
            if adapter not in self.lora_A:
                continue
            xa = self._cast_input_dtype(x, self.lora_A[adapter].weight.dtype)
            result = result + self.mixture(adapter, xa)
        return result.to(out_dtype)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Merge a single-expert adapter into W; with N > 1 the gate depends on x, so it cannot be merged."""
        names = adapter_names if adapter_names is not None else self.active_adapters
        gated = [a for a in names if self.num_experts.get(a, 1) > 1]
        if gated:
            raise ValueError(f"MoELoRA adapters {gated} have input-dependent gates and cannot be merged into W")
        super().merge(safe_merge=safe_merge, adapter_names=adapter_names)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over experts in at least float32 (bf16 logits would round the weights coarsely)."""
    return torch.softmax(logits, dim=-1, dtype=torch.promote_types(logits.dtype, torch.float32)).to(logits.dtype)


def _inactive(dropout: nn.Module) -> bool:
    return isinstance(dropout, nn.Identity) or not dropout.training or getattr(dropout, "p", 0.0) == 0


def moelora_config(r: int, alpha: float, num_experts: int, target_modules: Any, dropout: float = 0.0,
                   modules_to_save: list[str] | None = None, init_a: str = "normal") -> MoELoraConfig:
    """The PEFT config for MoELoRA on ``target_modules`` (a regex or a list of names, as LoRA's)."""
    return MoELoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, num_experts=num_experts, init_a=init_a,
                         target_modules=target_modules, modules_to_save=modules_to_save, bias="none")


def load_moelora(model: nn.Module, path: str | Path, is_trainable: bool = False) -> PeftModel:
    """Wrap a base ``model`` with the MoELoRA adapter saved in ``path`` (``save_pretrained``'s folder)."""
    from coin.adapters.base import peft_quiet

    with peft_quiet():  # PEFT's own probe of a deprecated transformers name, not coin's call
        return PeftModel.from_pretrained(model, str(path), config=MoELoraConfig.load(path), is_trainable=is_trainable)


def count_experts(model: nn.Module) -> dict[str, int]:
    """Experts per adapted layer name (for reports and sanity checks)."""
    return {name: m.num_experts.get("default", 1) for name, m in model.named_modules() if isinstance(m, MoELoraLinear)}
