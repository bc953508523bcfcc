"""A KV cache that is written in place instead of concatenated.

Hugging Face's default ``DynamicCache`` appends each step's keys and values with
``torch.cat``, which copies the whole cache every step: for a batch of B rows, L cached
positions and n layers, one decode step moves ``2 n B L`` head vectors just to add one.
At evaluation batch sizes that copy is the largest single cost of a decode step on a CPU
(profiled on the tiny model at batch 64: 46% of a step, more than the matrix products).

``PreallocatedLayer`` allocates room for the prompt plus ``max_new_tokens`` on its first
update, writes each step's keys and values into that buffer and hands attention a view of
the filled part. The values are the same tensors, so the answers are the same (tested
against the default cache); if a model asks for more room than planned, the buffer grows by
doubling instead of failing.
"""

from __future__ import annotations

import functools
import inspect

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in a buffer of ``capacity`` positions, filled in place."""

    def __init__(self, capacity: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.capacity = max(int(capacity), 1)
        self.length = 0
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self._k = key_states.new_empty(*key_states.shape[:-2], self.capacity, key_states.shape[-1])
        self._v = value_states.new_empty(*value_states.shape[:-2], self.capacity, value_states.shape[-1])
        self.length = 0
        self._publish()
        self.is_initialized = True

    def _publish(self) -> None:
        self.keys = self._k[..., : self.length, :]
        self.values = self._v[..., : self.length, :]

    def _grow(self, needed: int) -> None:
        size = max(needed, 2 * self._k.shape[-2])
        k = self._k.new_empty(*self._k.shape[:-2], size, self._k.shape[-1])
        v = self._v.new_empty(*self._v.shape[:-2], size, self._v.shape[-1])
        k[..., : self.length, :] = self._k[..., : self.length, :]
        v[..., : self.length, :] = self._v[..., : self.length, :]
        self._k, self._v = k, v

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self._k.shape[-2]:
            self._grow(end)
        self._k[..., self.length : end, :] = key_states
        self._v[..., self.length : end, :] = value_states
        self.length = end
        self._publish()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def reset(self) -> None:
        self._k = self._v = None
        self.length = 0
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative number of tokens to remove, got {tokens_to_remove}")
        if tokens_to_remove == 0 or not self.is_initialized:
            return
        self.length = max(self.length + tokens_to_remove, 0)
        self._publish()

    def _select(self, fn) -> None:
        if self.is_initialized:
            self._k, self._v = fn(self._k), fn(self._v)
            self._publish()

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._select(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._select(lambda t: t[indices, ...])

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._select(lambda t: t.index_select(0, beam_idx.to(t.device)))


def preallocated_cache(model, capacity: int) -> DynamicCache | None:
    """A cache of ``PreallocatedLayer`` for ``model``, or None where the model needs other layers.

    Only plain full-attention layers are replaced; a model with sliding-window, linear or
    shared-KV layers keeps Hugging Face's own cache (return value None: let ``generate``
    build it), and so does a model whose config the cache cannot read.
    """
    try:
        cache = DynamicCache(config=model.config)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    cache.layers = [PreallocatedLayer(capacity) for _ in cache.layers]
    return cache


KV_CACHES = ("preallocated", "dynamic")


def cache_for(model, kind: str, prompt_width: int, max_new_tokens: int) -> dict:
    """``generate`` keyword arguments for the KV cache ``kind``: "preallocated" (ours) or "dynamic" (HF's)."""
    if kind not in KV_CACHES:
        raise ValueError(f"unknown kv cache {kind!r}; choices: {', '.join(KV_CACHES)}")
    cache = preallocated_cache(model, prompt_width + max_new_tokens) if kind == "preallocated" else None
    return {} if cache is None else cache_kwargs(cache)


@functools.cache
def cache_keyword() -> str:
    """The keyword forward and ``generate`` take the KV cache by: ``cache`` (transformers 5.x renamed
    ``past_key_values``, deprecated there and removed in 5.40 for model forwards), else the old name."""
    from transformers import GenerationMixin

    # deprecate_kwarg keeps the wrapped signature, which names the new keyword
    params = inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(cache) -> dict:
    """``{keyword: cache}`` for a transformers model's forward or ``generate``."""
    return {cache_keyword(): cache}


def output_cache(out):
    """The KV cache a forward returned: ``out.cache`` where transformers has the new name (reading
    ``out.past_key_values`` there logs a deprecation), else ``out.past_key_values``."""
    names = getattr(out, "__dataclass_fields__", {})
    return out.get("cache") if "cache" in names else out.get("past_key_values")
