"""The built-in tiny LLaVA: ~7M parameters, pretrained on CoIN-Synth captions and cached by recipe hash."""

from __future__ import annotations

from dataclasses import dataclass, field

from coin.models.backbone import BACKBONES, Backbone, image_cache_problems


@dataclass
class PretrainConfig:
    """Caption pretraining of the built-in tiny model (cached by hash)."""

    seed: int = 0
    samples: int = 12000
    steps: int = 900
    batch_size: int = 32
    lr: float = 2e-3
    warmup_ratio: float = 0.05
    vision_steps: int = 800  # stage 1: the vision tower learns scene labels (a stand-in for CLIP's pretraining)
    vision_batch_size: int = 64
    vision_lr: float = 2e-3

    def check(self) -> list[str]:
        return [f"{k} must be > 0, got {getattr(self, k)}" for k in ("steps", "batch_size", "lr")
                if getattr(self, k) <= 0]


@dataclass
class TinyOptions:
    tiny: dict = field(default_factory=dict)  # overrides of coin.models.tiny.model.TinyConfig (sizes, vocabulary)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # the base's caption pretraining
    image_cache_mb: int = 2048  # preprocessed images kept, in MiB, by one machine's processes together; 0: none

    def check(self) -> list[str]:
        return image_cache_problems(self.image_cache_mb)


@BACKBONES.register
class Tiny(Backbone):
    """The built-in ~7M-parameter LLaVA, pretrained on CoIN-Synth captions (cached)."""

    name = "tiny"

    Options = TinyOptions
    image_modes = True  # LlavaVLM: eval.image_mode pads or centre-crops test images
    loads_empty = True  # the cached base is read through coin.models.empty.from_pretrained

    @staticmethod
    def load(cfg, log=print, progress=True):
        from coin.models.tiny.pretrain import load_or_pretrain

        vlm, _ = load_or_pretrain(cfg, log, progress)
        return vlm

    @classmethod
    def size_config(cls, cfg) -> tuple[dict, str]:
        """The sizes of ``model.tiny`` in a transformers config's terms (no folder to read)."""
        from coin.models.tiny.model import TinyConfig

        t = TinyConfig(**(cfg.options.tiny or {}))
        text = {"hidden_size": t.lm_width, "intermediate_size": t.lm_ffn, "num_hidden_layers": t.lm_layers,
                "num_attention_heads": t.lm_heads, "num_key_value_heads": t.lm_heads, "vocab_size": t.vocab_size}
        vision = {"hidden_size": t.vision_width, "intermediate_size": 4 * t.vision_width,
                  "num_hidden_layers": t.vision_layers, "image_size": t.image_size, "patch_size": t.patch_size}
        return {"text_config": text, "vision_config": vision}, "model.tiny"

    @classmethod
    def prepare(cls, cfg, log=print, own: bool = False) -> None:
        """Find the base (cached, or shipped with coin) or pretrain it once, before parallel runs would each
        start it; ``own`` (``coin model prepare``) pretrains it into the cache even when coin ships it."""
        from coin.models.tiny.pretrain import load_or_pretrain

        load_or_pretrain(cfg, log, progress=False, shipped_ok=not own)
