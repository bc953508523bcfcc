"""LLaVA-1.5 as llava-hf ships it (``LlavaForConditionalGeneration``), in CoIN's conversation and length."""

from __future__ import annotations

from dataclasses import dataclass

from coin.models.backbone import BACKBONES, PathBackbone, PathOptions, hf_load_kwargs

LLAVA_MAX_LENGTH = 2048  # LLaVA-1.5's --model_max_length in its (and CoIN's) training scripts


def image_cache_problems(mb: int) -> list[str]:
    """``image_cache_mb``'s own check, shared by the LLaVA backbones."""
    return [f"image_cache_mb must be >= 0, got {mb}"] if mb < 0 else []


@dataclass
class LlavaOptions(PathOptions):
    image_cache_mb: int = 2048  # preprocessed images kept per process, in MiB; 0: none

    def check(self) -> list[str]:
        return super().check() + image_cache_problems(self.image_cache_mb)


def llava_vlm(model, processor, cfg):
    """``LlavaVLM`` as CoIN ran LLaVA-1.5: the ``vicuna_v1`` conversation, sequences cut at 2048 tokens."""
    from coin.models.vlm import LlavaVLM, resolve_max_length

    return LlavaVLM(model, processor, conversation="vicuna_v1",
                    max_length=resolve_max_length(cfg.max_length, processor.tokenizer, LLAVA_MAX_LENGTH),
                    image_cache_mb=cfg.options.image_cache_mb)


@BACKBONES.register("llava")
class Llava(PathBackbone):
    """A llava-hf LlavaForConditionalGeneration from a local folder or a hub id (model.path)."""

    Options = LlavaOptions
    image_modes = True  # LlavaVLM: eval.image_mode pads or centre-crops test images
    default_max_length = LLAVA_MAX_LENGTH  # LLaVA-1.5's training length
    loads_empty = True  # through coin.models.empty.from_pretrained

    @staticmethod
    def load(cfg, log=print, progress=True):
        from pathlib import Path

        from transformers import AutoProcessor, LlavaForConditionalGeneration

        from coin.models.empty import from_pretrained
        from coin.models.tokenizer_check import check_tokenizer_files

        path = cfg.options.path
        if path and Path(path).is_dir():  # a hub id: fetched and checked by transformers
            check_tokenizer_files(path)  # before gigabytes of weights load
        model = from_pretrained(LlavaForConditionalGeneration, path, **hf_load_kwargs(cfg))
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
        return llava_vlm(model, processor, cfg)
