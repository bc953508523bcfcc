"""lora-rslora: LoRA scaled by alpha / sqrt(r) (rank-stabilised), an adapter plugin in one file."""

from __future__ import annotations

from dataclasses import dataclass

from coin.adapters import ADAPTERS, Adapter


@dataclass
class RsLoraOptions:
    use_rslora: bool = True  # scale the update by alpha / sqrt(r) instead of alpha / r


@ADAPTERS.register
class RsLoRA(Adapter):
    """PEFT LoRA with rank-stabilised scaling (use_rslora)."""

    name = "lora-rslora"
    Options = RsLoraOptions

    @staticmethod
    def build(vlm, cfg):
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=vlm.lora_target,
                            modules_to_save=list(vlm.full_train) if cfg.train_projector else None, bias="none",
                            use_rslora=cfg.options.use_rslora)
        return get_peft_model(vlm.model, config)
