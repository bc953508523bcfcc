"""The chat-template backbones (``coin.models.chat.wrapper``): ``hf``, any image-text-to-text model whose
processor has a chat template, and ``qwen2-vl``, Qwen2-VL and Qwen2.5-VL."""

from __future__ import annotations

from dataclasses import dataclass

from coin.models.backbone import BACKBONES, PathBackbone, PathOptions


@dataclass
class ChatOptions(PathOptions):
    # Qwen2-VL-style processors: each image resized to this many pixels (28x28 per visual token);
    # the hub's max_pixels (12845056, ~16k tokens) runs out of memory on large photos
    min_pixels: int | None = None  # None: the processor's own (Qwen2-VL's 56 * 56, i.e. 4 visual tokens)
    max_pixels: int | None = 1280 * 28 * 28  # the upper bound Qwen2-VL's model card suggests

    def check(self) -> list[str]:
        problems = super().check()
        for key in ("min_pixels", "max_pixels"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                problems.append(f"{key} must be >= 1 (or null for the processor's own), got {getattr(self, key)}")
        if None not in (self.min_pixels, self.max_pixels) and self.min_pixels > self.max_pixels:
            problems.append(f"min_pixels ({self.min_pixels}) must be <= model.max_pixels ({self.max_pixels})")
        return problems


@BACKBONES.register
class HF(PathBackbone):
    """Any AutoModelForImageTextToText whose processor has a chat template (coin.models.chat.wrapper)."""

    name = "hf"
    Options = ChatOptions
    loads_empty = True  # coin.models.chat.wrapper.load_chat_vlm builds through coin.models.empty.from_pretrained

    @staticmethod
    def load(cfg, log=print, progress=True):
        from coin.models.chat.wrapper import load_chat_vlm

        return load_chat_vlm(cfg)


@BACKBONES.register
class Qwen2VL(PathBackbone):
    """Qwen2-VL or Qwen2.5-VL (AutoModelForImageTextToText) from a local folder or a hub id."""

    name = "qwen2-vl"
    Options = ChatOptions
    loads_empty = True  # coin.models.chat.wrapper.load_chat_vlm builds through coin.models.empty.from_pretrained

    @staticmethod
    def load(cfg, log=print, progress=True):
        from coin.models.chat.wrapper import load_chat_vlm

        return load_chat_vlm(cfg, model_types=("qwen2_vl", "qwen2_5_vl"))
