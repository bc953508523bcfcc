"""LoRA (PEFT) on every linear layer of the LM, the backbone's projector trained fully beside it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coin.adapters.base import ADAPTERS, Adapter, peft_model

if TYPE_CHECKING:
    from coin.config import AdapterConfig
    from coin.models.backbone import VLM


@ADAPTERS.register
class LoRA(Adapter):
    """PEFT LoRA on every linear layer of the LM (not lm_head); the projector trained fully."""

    name = "lora"

    @staticmethod
    def build(vlm: VLM, cfg: AdapterConfig) -> Any:
        from peft import LoraConfig

        config = LoraConfig(
            r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=vlm.lora_target,
            modules_to_save=list(vlm.full_train) if cfg.train_projector else None,
            bias="none",
        )
        return peft_model(vlm.model, config)
