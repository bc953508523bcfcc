"""Qwen2-VL and Qwen2.5-VL through their chat template (``coin.models.chat``)."""

from __future__ import annotations

from coin.models.backbone import BACKBONES, PathBackbone
from coin.models.backbones.hf import ChatOptions


@BACKBONES.register("qwen2-vl")
class Qwen2VL(PathBackbone):
    """Qwen2-VL or Qwen2.5-VL (AutoModelForImageTextToText) from a local folder or a hub id."""

    Options = ChatOptions
    loads_empty = True  # coin.models.chat.load_chat_vlm builds through coin.models.empty.from_pretrained

    @staticmethod
    def load(cfg, log=print, progress=True):
        from coin.models.chat import load_chat_vlm

        return load_chat_vlm(cfg, model_types=("qwen2_vl", "qwen2_5_vl"))
