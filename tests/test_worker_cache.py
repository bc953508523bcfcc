"""Loader workers keep no preprocessed images (#30, point 6: host memory).

A worker builds its micro-batches from a forked copy of the model wrapper; each copy filled its own
pixel cache (4 workers x 8 processes x 2 GiB beside the processes' own). ``WorkerBatches`` makes a
worker's copy keep none; the batches are the same; the main process keeps its cache.
"""

from __future__ import annotations

import torch

from coin.engine.loader import WorkerBatches, load_batches
from coin.models.backbone import CachesPixels
from coin.models.images import PixelCache
from tinyvlm import tiny_samples, tiny_vlm


class Holder:
    """A stand-in wrapper: each batch says how many images its process's cache holds after building it."""

    def __init__(self) -> None:
        self._pixel_cache = PixelCache(2**30)

    def limit_pixel_cache(self, max_bytes: int) -> None:
        self._pixel_cache.max_bytes = max_bytes

    def build(self, part: list) -> dict:
        for k in part:
            self._pixel_cache.put(f"image-{k}", torch.zeros(3, 8, 8))
        return {"ids": torch.tensor(part), "cached": torch.tensor(len(self._pixel_cache))}


def test_workers_copies_keep_no_images_and_build_the_same_batches():
    parts = [[k, k + 1] for k in range(0, 16, 2)]
    holder = Holder()
    assert isinstance(holder, CachesPixels)
    plain = list(load_batches(parts, holder.build, num_workers=2))
    wrapped = list(load_batches(parts, WorkerBatches(holder.build), num_workers=2))
    assert [b["ids"].tolist() for b in plain] == [b["ids"].tolist() for b in wrapped] == parts
    assert max(int(b["cached"]) for b in plain) > 2  # each worker's copy filled its own cache
    assert all(int(b["cached"]) == 0 for b in wrapped)
    assert len(holder._pixel_cache) == 0  # the main process's object was never used by the workers


def test_a_real_wrapper_builds_the_same_batch_without_caching(tmp_path):
    vlm, other = tiny_vlm(), tiny_vlm()
    samples = tiny_samples(tmp_path, "GQA", 3)
    assert isinstance(vlm, CachesPixels)
    a = WorkerBatches(vlm.train_batch)(samples)
    b = other.train_batch(samples)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len(vlm._pixel_cache) == 0 and len(other._pixel_cache) == 3


def test_the_processes_of_one_machine_share_model_image_cache_mb(monkeypatch):
    """#30 point 6: one budget for host memory. ``model.image_cache_mb`` is what the processes of one
    machine keep together: under 8 processes each keeps an eighth (8 x 2 GiB held 16 GiB before)."""
    from coin.config_load import load_config
    from coin.engine.run import _share_pixel_cache

    cfg = load_config(None, ["model.image_cache_mb=1024"])  # the backbone's option, under model:
    said: list[str] = []
    vlm = tiny_vlm(seed=0)
    full = vlm._pixel_cache.max_bytes
    _share_pixel_cache(vlm, cfg, said.append)  # one process: the cache keeps its bound
    assert vlm._pixel_cache.max_bytes == full and not said
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # two machines of 8: the budget is each machine's
    _share_pixel_cache(vlm, cfg, said.append)
    assert vlm._pixel_cache.max_bytes == 1024 * 2**20 // 8
    assert said == ["preprocessed-image cache: 1024 MiB on this machine, 128 MiB for each of its 8 processes"]
