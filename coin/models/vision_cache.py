"""The frozen vision tower's output per image, computed once per run instead of once per question and stage.

A CoIN run evaluates after every stage, so each test image goes through the vision tower
nine times, and once more for every further question on it. In every shipped recipe the
tower is frozen, so all those passes give the same features. ``VisionFeatureCache`` keeps the
tower's selected hidden states (before the projector: the projector trains) keyed by

* the image file's content hash (two paths to the same bytes share an entry; a rewritten
  file gets a new one), and
* the tower's identity: every parameter's storage, version counter, shape and dtype. An
  optimiser step or ``load_state_dict`` bumps a version counter, a new or moved tower has
  new storage; any change clears the cache, so stale features are never served.

A tower with a trainable parameter is refused (``VisionCacheRefused``): its output changes
as it trains. The cache is bounded by bytes; once full, new entries are computed but not kept.
"""

from __future__ import annotations

import hashlib
import os

import torch

from coin.errors import VisionCacheRefused


def trainable_reason(tower: torch.nn.Module) -> str | None:
    """Why ``tower``'s output may change between calls (a trainable parameter), or None."""
    names = [n for n, p in tower.named_parameters() if p.requires_grad]
    if names:
        return (f"the vision tower has {len(names)} trainable parameter(s) (e.g. {names[0]}): "
                "its features change as it trains")
    return None


def tower_identity(tower: torch.nn.Module) -> tuple:
    """A cheap fingerprint that changes whenever any of the tower's weights may have changed."""
    return tuple((p.data_ptr(), p._version, tuple(p.shape), p.dtype, str(p.device)) for p in tower.parameters())


class VisionFeatureCache:
    """Selected vision-tower features by image content, for one tower at a time, bounded by ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._identity: tuple | None = None
        self._items: dict[tuple, torch.Tensor] = {}
        self._hashes: dict[str, tuple[int, int, str]] = {}  # path -> (mtime_ns, size, sha256)

    def check(self, tower: torch.nn.Module, extra: tuple = ()) -> None:
        """Bind the cache to ``tower`` as it is now (``extra``: how its output is selected); clear it on a change.

        Raises ``VisionCacheRefused`` for a tower with trainable parameters.
        """
        reason = trainable_reason(tower)
        if reason is not None:
            raise VisionCacheRefused(f"eval.cache_vision refused: {reason}")
        identity = (tower_identity(tower), extra)
        if identity != self._identity:
            self.clear()
            self._identity = identity

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def content_key(self, path: str) -> str:
        """The sha256 of the file's bytes (re-read only when its size or modification time changes)."""
        st = os.stat(path)
        known = self._hashes.get(path)
        if known is not None and known[:2] == (st.st_mtime_ns, st.st_size):
            return known[2]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        self._hashes[path] = (st.st_mtime_ns, st.st_size, digest)
        return digest

    def __contains__(self, key: str) -> bool:
        """Whether ``key`` is held (not counted as a hit or a miss)."""
        return key in self._items

    def get(self, key: str) -> torch.Tensor | None:
        value = self._items.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: str, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if key not in self._items and self.bytes + size <= self.max_bytes:
            self._items[key] = value
            self.bytes += size

    def __len__(self) -> int:
        return len(self._items)


def select_features(llava, pixel_values: torch.Tensor) -> torch.Tensor:
    """The tower's features as LLaVA selects them (``vision_feature_layer``, CLS dropped under
    "default"), before the projector: what ``LlavaModel.get_image_features`` computes first."""
    cfg = llava.config  # ``llava``: the ``LlavaModel`` (``LlavaForConditionalGeneration.model``)
    layer = cfg.vision_feature_layer
    strategy = cfg.vision_feature_select_strategy
    tower = llava.vision_tower
    hidden = tower(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
    layers = [layer] if isinstance(layer, int) else list(layer)
    pool = [hidden[k][:, 1:] if strategy == "default" else hidden[k] for k in layers]
    return pool[0] if len(pool) == 1 else torch.cat(pool, dim=-1)
