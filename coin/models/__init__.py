"""Backbones: model wrappers the engine trains and evaluates, one registry entry per backbone.

``coin.models.backbone`` declares what the engine needs from a model (``VLM``) and the
``BACKBONES`` registry. Each family of built-in backbones is one subpackage whose ``backbone.py``
registers its entries, beside its wrapper and the pieces only it uses: ``coin.models.llava``
(``llava``, ``llava-pretrain``), ``coin.models.chat`` (``hf``, ``qwen2-vl``),
``coin.models.minigpt_v2``, ``coin.models.qwen_vl_chat`` and ``coin.models.tiny``. The pieces
several families share stay here (``images``, ``sequences``, ``modes``, ``load_parts``, ``decode``, ``kv_cache``,
``vision_cache``, ``conversation``, ``empty``, ...).
"""

from __future__ import annotations

# the built-in backbones, registered on import (also BACKBONES' builtins, imported on its first lookup)
import coin.models.chat.backbone  # noqa: F401
import coin.models.llava.backbone  # noqa: F401
import coin.models.minigpt_v2.backbone  # noqa: F401
import coin.models.qwen_vl_chat.backbone  # noqa: F401
import coin.models.tiny.backbone  # noqa: F401
from coin.models.backbone import BACKBONES, VLM, Backbone, hf_load_kwargs, load_model, torch_dtype

__all__ = ["BACKBONES", "VLM", "Backbone", "hf_load_kwargs", "load_model", "torch_dtype"]
