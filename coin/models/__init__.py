"""Backbones: model wrappers the engine trains and evaluates, one registry entry per backbone.

``coin.models.backbone`` declares what the engine needs from a model (``VLM``) and the
``BACKBONES`` registry; each built-in backbone is one file in ``coin.models.backbones``.
"""

from __future__ import annotations

import coin.models.backbones  # noqa: F401  (registers the built-in backbones)
from coin.models.backbone import BACKBONES, VLM, Backbone, hf_load_kwargs, load_model, torch_dtype

__all__ = ["BACKBONES", "VLM", "Backbone", "hf_load_kwargs", "load_model", "torch_dtype"]
