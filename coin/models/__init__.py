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

    if not cfg.path:
        raise ValueError("model.path is required for model.name 'llava' (a local folder or a hub id)")
    model = LlavaForConditionalGeneration.from_pretrained(cfg.path, trust_remote_code=cfg.trust_remote_code)
    processor = AutoProcessor.from_pretrained(cfg.path, trust_remote_code=cfg.trust_remote_code)
    return LlavaVLM(model, processor)


def load_model(cfg, log=print, progress: bool = True):
    """The wrapper for ``cfg.name`` (an unknown name lists the choices)."""
    return MODELS.get(cfg.name)(cfg, log, progress)
