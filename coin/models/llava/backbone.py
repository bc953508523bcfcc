"""The LLaVA-1.5 backbones: ``llava`` (as llava-hf ships it, ``LlavaForConditionalGeneration``) and
``llava-pretrain`` (CoIN's starting point, assembled from Vicuna, CLIP and the stage-1 projector), both in
CoIN's conversation and length."""

from __future__ import annotations

from dataclasses import dataclass

from coin.models.backbone import (BACKBONES, Backbone, PathBackbone, PathOptions, WeightPath, hf_load_kwargs,
                                  image_cache_problems)

LLAVA_MAX_LENGTH = 2048  # LLaVA-1.5's --model_max_length in its (and CoIN's) training scripts


@dataclass
class LlavaOptions(PathOptions):
    image_cache_mb: int = 2048  # preprocessed images kept, in MiB, by one machine's processes together; 0: none

    def check(self) -> list[str]:
        return super().check() + image_cache_problems(self.image_cache_mb)


def llava_vlm(model, processor, cfg):
    """``LlavaVLM`` as CoIN ran LLaVA-1.5: the ``vicuna_v1`` conversation, sequences cut at 2048 tokens."""
    from coin.models.llava.wrapper import LlavaVLM
    from coin.models.sequences import resolve_max_length

    return LlavaVLM(model, processor, conversation="vicuna_v1",
                    max_length=resolve_max_length(cfg.max_length, processor.tokenizer, LLAVA_MAX_LENGTH),
                    image_cache_mb=cfg.options.image_cache_mb)


@BACKBONES.register
class Llava(PathBackbone):
    """A llava-hf LlavaForConditionalGeneration from a local folder or a hub id (model.path)."""

    name = "llava"

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


# key -> (what it names, "folder" or "file")
_PARTS = {"lm_path": ("the Vicuna LM folder", "folder"), "vision_path": ("the CLIP vision folder", "folder"),
          "projector_path": ("LLaVA's stage-1 mm_projector.bin", "file")}


@dataclass
class LlavaPretrainOptions:
    lm_path: str | None = None  # a Vicuna-style LM folder (LlamaForCausalLM + tokenizer)
    vision_path: str | None = None  # a CLIP vision folder (e.g. clip-vit-large-patch14-336)
    projector_path: str | None = None  # LLaVA's stage-1 mm_projector.bin (a plain state dict)
    image_cache_mb: int = 2048  # preprocessed images kept, in MiB, by one machine's processes together; 0: none

    def check(self) -> list[str]:
        problems = [f"{k} is required for model.name 'llava-pretrain' ({text})" for k, (text, _) in _PARTS.items()
                    if not getattr(self, k)]
        return problems + image_cache_problems(self.image_cache_mb)


@BACKBONES.register
class LlavaPretrain(Backbone):
    """CoIN's starting point: LLaVA-1.5 assembled from its pretrain-only parts (Vicuna, CLIP, stage-1 projector).

    The parts are local: model.lm_path (a Vicuna LM folder), model.vision_path (a CLIP vision
    folder) and model.projector_path (LLaVA's stage-1 mm_projector.bin).
    """

    name = "llava-pretrain"
    Options = LlavaPretrainOptions
    image_modes = True  # LlavaVLM: eval.image_mode pads or centre-crops test images
    default_max_length = LLAVA_MAX_LENGTH  # LLaVA-1.5's training length

    @staticmethod
    def load(cfg, log=print, progress=True):
        from coin.models.llava.parts import assemble_llava

        o = cfg.options
        model, processor = assemble_llava(o.lm_path, o.vision_path, o.projector_path, dtype=cfg.dtype,
                                          trust_remote_code=cfg.trust_remote_code,
                                          attn_implementation=cfg.attn_implementation, log=log)
        return llava_vlm(model, processor, cfg)

    @classmethod
    def weights(cls, cfg) -> list[WeightPath]:
        """The three parts, always local (assembling reads them from disk)."""
        size = "13b" if "13b" in str(cfg.options.lm_path).lower() else "7b"
        return [WeightPath(f"model.{k}", getattr(cfg.options, k), kind, fetch=_fetch(k, size))
                for k, (_, kind) in _PARTS.items() if getattr(cfg.options, k)]


def _fetch(key: str, size: str) -> tuple[str, ...]:
    """The command that fetches one part of the pretrain-only LLaVA-1.5 (``size``: 7b or 13b, from model.lm_path)."""
    return {
        "lm_path": (f"huggingface-cli download lmsys/vicuna-{size}-v1.5 --local-dir {{path}}",),
        "vision_path": ("huggingface-cli download openai/clip-vit-large-patch14-336 --local-dir {path}",),
        "projector_path": (f"huggingface-cli download liuhaotian/llava-v1.5-mlp2x-336px-pretrain-vicuna-{size}-v1.5 "
                           "mm_projector.bin --local-dir {dir}",),
    }.get(key, ())
