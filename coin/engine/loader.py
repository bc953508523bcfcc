"""Training input: which samples each process's micro-batches hold, and the loader that builds them.

Two rules make a step safe and reproducible under any number of processes and workers:

- **Every process runs the same number of micro-batches per step.** Each micro-batch calls
  collectives (the non-finite-loss check; the gradient all-reduce on the step's last one), so a
  process that ran one micro-batch fewer would pair its all-reduce with another process's check
  (gloo aborts; NCCL hangs). A process whose share of a short last step is smaller pads it with
  one-sample micro-batches weighted zero.
- **The plan is fixed before any worker starts, and the loader only maps it in order** through
  the model's ``train_batch``: image decoding, preprocessing and tokenising run ahead of the
  step in worker processes, and the batches (hence the losses, hence the matrix) are the same
  with 0 or 8 workers for a given seed and process count.

Should ``train_batch`` draw random numbers (augmentation), a worker reseeds torch, ``random`` and
NumPy before each micro-batch from (the stage's seed, the micro-batch's place in the stage), so
what it draws does not depend on the number of workers, on which worker builds it, or on whether
the stage was resumed from a checkpoint (which starts the stream part-way). With no workers,
``train_batch`` draws from the training process's generators, which a checkpoint restores.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import sys
from typing import Callable, Iterator

import torch

from coin.models.backbone import CachesPixels


def rank_share(chunk: list, rank: int, per_rank: int) -> list:
    """This process's contiguous slice of one optimizer step's samples (empty when there are too few)."""
    return chunk[rank * per_rank : (rank + 1) * per_rank]


def micro_batches(chunk: list, rank: int, per_rank: int, batch_size: int) -> list[tuple[list, float]]:
    """This process's micro-batches of one step as ``(samples, weight)``; the same count on every process.

    The count is what the fullest share (rank 0's, the first slice) needs; a process with fewer
    samples pads with ``(chunk[:1], 0.0)``: a real sample, so the forward and backward passes
    touch every parameter (DDP's all-reduce needs their gradients), weighted zero.
    """
    count = math.ceil(min(per_rank, len(chunk)) / batch_size)
    share = rank_share(chunk, rank, per_rank)
    parts = [(share[k : k + batch_size], 1.0) for k in range(0, len(share), batch_size)]
    return parts + [(chunk[:1], 0.0)] * (count - len(parts))


def default_workers(device: torch.device) -> int:
    """``train.num_workers: null``: 4 loader workers next to a GPU, none on a CPU (where they compete
    with the training threads for the same cores)."""
    return 4 if device.type == "cuda" else 0


def item_seed(*tags: object) -> int:
    """A 64-bit seed from ``tags`` (stable across processes and Python runs, unlike ``hash``)."""
    digest = hashlib.sha256(":".join(map(str, ("coin-loader", *tags))).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def seed_all(seed: int) -> None:
    """Seed torch's CPU generator, Python's ``random`` and NumPy's global generator with a 64-bit ``seed``."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
    except ImportError:
        return
    np.random.seed([seed & 0xFFFFFFFF, seed >> 32])


class _Batches(torch.utils.data.Dataset):
    """Item ``i`` is micro-batch ``i`` of the plan, as the model's input tensors.

    In a worker process, the generators are reseeded from ``(seed, keys[i])`` first."""

    def __init__(self, parts: list[list], make: Callable[[list], dict], seed: int | str = 0,
                 keys: list[int] | None = None) -> None:
        self.parts, self.make, self.seed = parts, make, seed
        self.keys = list(range(len(parts))) if keys is None else list(keys)
        if len(self.keys) != len(parts):
            raise ValueError(f"{len(keys)} keys for {len(parts)} micro-batches")

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, i: int) -> dict:
        if torch.utils.data.get_worker_info() is not None:
            seed_all(item_seed(self.seed, self.keys[i]))
        return self.make(self.parts[i])


def _as_is(item: dict) -> dict:
    return item


def _worker_init(worker_id: int) -> None:
    import signal

    torch.set_num_threads(1)  # each worker builds one batch at a time; the cores belong to the training
    # Ctrl-C reaches the whole process group: the training loop turns it into a checkpoint at the
    # end of the step, which needs the step's remaining batches, so a worker must not die of it
    # (it still exits when the loader shuts down or the main process dies)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class WorkerBatches:
    """``make`` as a loader worker calls it: the worker's copy of the model wrapper keeps no
    preprocessed images. A worker lives for one stage and builds each micro-batch once per epoch, so
    its cache would save little, and 4 workers x 8 processes x ``model.image_cache_mb`` (2 GiB) held
    64 GiB of host memory beside the processes' own 16; the main process keeps its cache."""

    def __init__(self, make: Callable[[list], dict]) -> None:
        self.make = make
        self._limited = False

    def __call__(self, part: list) -> dict:
        if not self._limited:
            owner = getattr(self.make, "__self__", None)
            if isinstance(owner, CachesPixels):
                owner.limit_pixel_cache(0)
            self._limited = True
        return self.make(part)


def load_batches(parts: list[list], make: Callable[[list], dict], num_workers: int = 0,
                 pin_memory: bool = False, prefetch: int = 4, seed: int | str = 0,
                 keys: list[int] | None = None) -> Iterator[dict]:
    """``make(part)`` for every part, in order: in this process (``num_workers`` 0) or ahead of use
    in ``num_workers`` worker processes, each keeping ``prefetch`` batches ready.

    ``seed`` and ``keys`` (one per part, default its index; a resumed stage passes the parts'
    places in the whole stage) fix what a worker's generators hold when it builds each part.

    Workers are forked where the platform allows (Linux), so the model behind ``make`` is not
    copied. The loader has its own seeded generator: creating it draws nothing from the global
    RNG, so dropout masks and the like are the same with and without workers.
    """
    if num_workers <= 0:
        return (make(p) for p in parts)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # fast tokenizers warn (and serialise) after a fork
    import multiprocessing

    fork = sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
    loader = torch.utils.data.DataLoader(
        _Batches(parts, make, seed, keys), batch_size=None, shuffle=False, num_workers=num_workers, collate_fn=_as_is,
        pin_memory=pin_memory, prefetch_factor=prefetch, worker_init_fn=_worker_init,
        multiprocessing_context="fork" if fork else None,
        generator=torch.Generator().manual_seed(item_seed(seed, "workers")))
    return iter(loader)
