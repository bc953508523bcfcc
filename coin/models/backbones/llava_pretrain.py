"""CoIN's starting point: the pretrain-only LLaVA-1.5 assembled from Vicuna, CLIP and the stage-1 projector."""

from __future__ import annotations

from dataclasses import dataclass

from coin.models.backbone import BACKBONES, Backbone, WeightPath
from coin.models.backbones.llava import LLAVA_MAX_LENGTH, image_cache_problems, llava_vlm

# key -> (what it names, "folder" or "file")
_PARTS = {"lm_path": ("the Vicuna LM folder", "folder"), "vision_path": ("the CLIP vision folder", "folder"),
          "projector_path": ("LLaVA's stage-1 mm_projector.bin", "file")}


@dataclass
class LlavaPretrainOptions:
    lm_path: str | None = None  # a Vicuna-style LM folder (LlamaForCausalLM + tokenizer)
    vision_path: str | None = None  # a CLIP vision folder (e.g. clip-vit-large-patch14-336)
    projector_path: str | None = None  # LLaVA's stage-1 mm_projector.bin (a plain state dict)
    image_cache_mb: int = 2048  # preprocessed images kept per process, in MiB; 0: none

    def check(self) -> list[str]:
        problems = [f"{k} is required for model.name 'llava-pretrain' ({text})" for k, (text, _) in _PARTS.items()
                    if not getattr(self, k)]
        return problems + image_cache_problems(self.image_cache_mb)


@BACKBONES.register("llava-pretrain")
class LlavaPretrain(Backbone):
    """CoIN's starting point: LLaVA-1.5 assembled from its pretrain-only parts (Vicuna, CLIP, stage-1 projector).

    The parts are local: model.lm_path (a Vicuna LM folder), model.vision_path (a CLIP vision
    folder) and model.projector_path (LLaVA's stage-1 mm_projector.bin).
    """

    Options = LlavaPretrainOptions
    image_modes = True  # LlavaVLM: eval.image_mode pads or centre-crops test images
    default_max_length = LLAVA_MAX_LENGTH  # LLaVA-1.5's training length

    @staticmethod
    def load(cfg, log=print, progress=True):
        from coin.models.llava_parts import assemble_llava

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
