"""Models built without their weights, for a process that receives them from the main process.

Under several processes on one machine, every process reading the whole model on the CPU
before moving or sharding it needs that many copies of it in host memory (8 x 26 GB for
LLaVA-1.5-13B in bf16 on an 8-GPU node). A backbone that declares ``loads_empty = True``
builds its model through ``from_pretrained`` below: inside ``empty_weights()`` (the engine's
non-main processes) that is the model's architecture on the meta device, no file of weights
read; the main process reads the weights and sends them (``coin.engine.weights_from_main``).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

_EMPTY: ContextVar[bool] = ContextVar("coin_empty_weights", default=False)


@contextmanager
def empty_weights(on: bool = True) -> Iterator[None]:
    """Inside this block (``on``), ``from_pretrained`` builds models on the meta device, reading no weights."""
    token = _EMPTY.set(on)
    try:
        yield
    finally:
        _EMPTY.reset(token)


def building_empty() -> bool:
    """Whether models are built without weights here (inside ``empty_weights``)."""
    return _EMPTY.get()


def from_pretrained(model_cls, path, **kwargs):
    """``model_cls.from_pretrained(path, **kwargs)``, or inside ``empty_weights`` the same model on the meta
    device: its config (and generation config) from ``path``, no weights read, in evaluation mode as
    ``from_pretrained`` leaves it."""
    if not building_empty():
        return model_cls.from_pretrained(path, **kwargs)
    import torch
    from transformers import AutoConfig, GenerationConfig

    remote = bool(kwargs.get("trust_remote_code", False))
    config = AutoConfig.from_pretrained(path, trust_remote_code=remote)
    extra = {k: kwargs[k] for k in ("dtype", "attn_implementation") if kwargs.get(k) is not None}
    build = getattr(model_cls, "_from_config", None) or model_cls.from_config  # a model class, or an Auto class
    with torch.device("meta"):
        model = build(config, **extra)
    model.eval()
    try:  # what from_pretrained also reads, when the folder (or hub id) has one
        model.generation_config = GenerationConfig.from_pretrained(path)
    except OSError:
        pass
    return model
