"""Backbones: a registry of loaders that return a ``LlavaVLM``-like wrapper."""

from __future__ import annotations

from typing import Callable

from coin.registry import Registry

MODELS: Registry[Callable] = Registry("model")

LLAVA_MAX_LENGTH = 2048  # LLaVA-1.5's --model_max_length in its (and CoIN's) training scripts


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

    require_path(cfg)
    model = LlavaForConditionalGeneration.from_pretrained(cfg.path, **hf_load_kwargs(cfg))
    processor = AutoProcessor.from_pretrained(cfg.path, trust_remote_code=cfg.trust_remote_code)
    return llava_vlm(model, processor, cfg)


def llava_vlm(model, processor, cfg):
    """``LlavaVLM`` as CoIN ran LLaVA-1.5: the ``vicuna_v1`` conversation, sequences cut at 2048 tokens."""
    from coin.models.vlm import LlavaVLM, resolve_max_length

    return LlavaVLM(model, processor, conversation="vicuna_v1",
                    max_length=resolve_max_length(cfg.max_length, processor.tokenizer, LLAVA_MAX_LENGTH),
                    image_cache_mb=cfg.image_cache_mb)


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
        enable = getattr(vlm.model, "activation_checkpointing_enable", None)  # transformers >= 5.x's name
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            vlm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        vlm.model.enable_input_require_grads()  # so checkpointed blocks get gradients under frozen embeddings
    return vlm


@MODELS.register("llava-pretrain")
def _llava_pretrain(cfg, log=print, progress=True):
    """CoIN's starting point: the pretrain-only LLaVA-1.5 assembled from model.lm_path (Vicuna),
    model.vision_path (CLIP) and model.projector_path (LLaVA's stage-1 mm_projector.bin)."""
    from coin.config import ConfigError
    from coin.models.llava_parts import assemble_llava

    unset = [f"model.{k} is required for model.name 'llava-pretrain' ({text})" for k, text in (
        ("lm_path", "the Vicuna LM folder"), ("vision_path", "the CLIP vision folder"),
        ("projector_path", "LLaVA's stage-1 mm_projector.bin")) if not getattr(cfg, k)]
    if unset:
        raise ConfigError(unset)
    model, processor = assemble_llava(cfg.lm_path, cfg.vision_path, cfg.projector_path, dtype=cfg.dtype,
                                      trust_remote_code=cfg.trust_remote_code,
                                      attn_implementation=cfg.attn_implementation, log=log)
    return llava_vlm(model, processor, cfg)


@MODELS.register("qwen2-vl")
def _qwen2_vl(cfg, log=print, progress=True):
    """Qwen2-VL or Qwen2.5-VL (``AutoModelForImageTextToText``) from a local folder or a hub id."""
    from coin.models.chat import load_chat_vlm

    return load_chat_vlm(cfg, model_types=("qwen2_vl", "qwen2_5_vl"))


@MODELS.register("hf")
def _hf(cfg, log=print, progress=True):
    """Any ``AutoModelForImageTextToText`` whose processor has a chat template (coin.models.chat)."""
    from coin.models.chat import load_chat_vlm

    return load_chat_vlm(cfg)
