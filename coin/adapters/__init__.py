"""Parameter-efficient adapters, registered by name (``adapter.type`` in the config)."""

from __future__ import annotations

from typing import Callable

from coin.registry import Registry

ADAPTERS: Registry[Callable] = Registry("adapter")


@ADAPTERS.register("lora")
def lora(vlm, cfg):
    """PEFT LoRA on every linear layer of the LM (not lm_head); the projector trained fully."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=vlm.lora_target,
        modules_to_save=list(vlm.full_train) if cfg.train_projector else None,
        bias="none",
    )
    return get_peft_model(vlm.model, config)


def attach_adapter(vlm, cfg):
    """Wrap ``vlm.model`` with the adapter ``cfg.type`` (in place) and return the PEFT model."""
    vlm.model = ADAPTERS.get(cfg.type)(vlm, cfg)
    return vlm.model


def load_adapter(vlm, path):
    """Replace ``vlm.model``'s adapter weights with the ones saved in ``path`` (trainable)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(path / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(vlm.model, state)
    bad = [k for k in result.unexpected_keys if "lora_" in k or "modules_to_save" in k]
    if bad:
        raise ValueError(f"{path}: adapter does not fit the model (unexpected keys, e.g. {bad[:3]})")
    return vlm.model


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@ADAPTERS.register("moelora")
def moelora(vlm, cfg):
    """MoELoRA (coin.adapters.moelora): ``adapter.experts`` gated experts fused into one LoRA's matmuls."""
    from coin.adapters.moelora import build_moelora  # imports peft only when used

    return build_moelora(vlm, cfg)
