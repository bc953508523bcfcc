"""Backbones: a registry of loaders that return a ``LlavaVLM``-like wrapper."""

from __future__ import annotations

from typing import Callable

from coin.registry import Registry

MODELS: Registry[Callable] = Registry("model")


@MODELS.register("tiny")
def _tiny(cfg, log=print, progress=True):
    """The built-in ~7M-parameter LLaVA, pretrained on CoIN-Synth captions (cached)."""
    from coin.models.pretrain import load_or_pretrain

    vlm, _ = load_or_pretrain(cfg, log, progress)
    return vlm


@MODELS.register("llava")
def _llava(cfg, log=print, progress=True):
    """A llava-hf ``LlavaForConditionalGeneration`` from a local folder or a hub id."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from coin.models.vlm import LlavaVLM

    require_path(cfg)
    model = LlavaForConditionalGeneration.from_pretrained(cfg.path, **hf_load_kwargs(cfg))
    processor = AutoProcessor.from_pretrained(cfg.path, trust_remote_code=cfg.trust_remote_code)
    return LlavaVLM(model, processor)


def require_path(cfg) -> None:
    if not cfg.path:
        raise ValueError(f"model.path is required for model.name {cfg.name!r} (a local folder or a hub id)")


def torch_dtype(name: str):
    """``model.dtype`` as a torch dtype; "auto" is bf16 on a GPU and fp32 on the CPU."""
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def hf_load_kwargs(cfg) -> dict:
    """Keyword arguments for ``from_pretrained`` from the model config (dtype, attention, remote code)."""
    kw = {"dtype": torch_dtype(cfg.dtype), "trust_remote_code": cfg.trust_remote_code}
    if cfg.attn_implementation:
        kw["attn_implementation"] = cfg.attn_implementation
    return kw


def load_model(cfg, log=print, progress: bool = True):
    """The wrapper for ``cfg.name`` (an unknown name lists the choices)."""
    vlm = MODELS.get(cfg.name)(cfg, log, progress)
    if cfg.gradient_checkpointing:
        vlm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        vlm.model.enable_input_require_grads()  # so checkpointed blocks get gradients under frozen embeddings
    return vlm
