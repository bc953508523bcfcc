"""The ``moelora`` adapter: ``adapter.experts`` gated LoRA experts per layer, fused into one LoRA's matmuls.

This file is the registry entry: its option (``experts``), the rule joining it with
``adapter.r`` and how the PEFT model is built. The layer itself, and why it is exact and
cheap, is in ``coin.adapters.moelora_layer``, imported only when an adapter is built (it needs
torch and PEFT; validating a config or listing adapters does not).

The layer's names (``MoELoraLinear``, ``moelora_config``, ``load_moelora``, ``count_experts``...)
are also reachable from here, loaded on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coin.adapters.base import ADAPTERS, Adapter, peft_model

if TYPE_CHECKING:
    from coin.config import AdapterConfig
    from coin.models.backbone import VLM

INITS = ("normal", "kaiming")  # MoELoraConfig.init_a's values
_LAYER_NAMES = ("DEFAULT_EXPERTS", "MoELoraConfig", "MoELoraLinear", "count_experts", "load_moelora",
                "moelora_config")


@dataclass
class MoELoRAOptions:
    # the paper's main MoELoRA rows (tables 11/12 of the CoIN paper) use 8 experts; the same as the
    # layer's DEFAULT_EXPERTS (a test keeps them equal)
    experts: int = 8  # number of experts, each of rank r / experts
    init: str = "normal"  # A's init: "normal" draws normal(0, 0.01) as CoIN's MoELoRA; "kaiming" is PEFT's LoRA init

    def check(self) -> list[str]:
        out = [f"experts must be >= 1, got {self.experts}"] if self.experts < 1 else []
        if self.init not in INITS:
            out.append(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        return out


@ADAPTERS.register
class MoELoRA(Adapter):
    """MoELoRA: adapter.experts gated experts of rank r / experts, fused into one LoRA's matmuls."""

    name = "moelora"
    Options = MoELoRAOptions

    @staticmethod
    def build(vlm: VLM, cfg: AdapterConfig) -> Any:
        from coin.adapters.moelora_layer import moelora_config

        config = moelora_config(r=cfg.r, alpha=cfg.alpha, num_experts=cfg.options.experts, init_a=cfg.options.init,
                                target_modules=vlm.lora_target, dropout=cfg.dropout,
                                modules_to_save=list(vlm.full_train) if cfg.train_projector else None)
        return peft_model(vlm.model, config)

    @staticmethod
    def check_section(cfg: AdapterConfig) -> list[str]:
        n = cfg.options.experts
        return [f"adapter.r ({cfg.r}) must be divisible by adapter.experts ({n})"] if cfg.r % n else []


def __getattr__(name: str) -> Any:
    """The layer's names, imported from ``coin.adapters.moelora_layer`` on first use (PEP 562)."""
    if name in _LAYER_NAMES:
        from coin.adapters import moelora_layer

        return getattr(moelora_layer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
