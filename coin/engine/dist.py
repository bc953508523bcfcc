"""Processes: one under ``coin run``, several under ``accelerate launch`` (or torchrun).

Every process runs the same control flow over the same files; only the main process writes
run files (config, checkpoints, adapters, scores, reports), and the others wait for it at
barriers. The process group comes from accelerate's ``PartialState``: NCCL on GPUs, gloo on
a machine without one (so a 2-process run works on a laptop's CPU).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable

import torch

STARTUP_TIMEOUT = timedelta(hours=3)
"""How long a collective may wait while the main process works alone at startup (generating
CoIN-Synth, pretraining the tiny base, loading a 13B model from network storage) and the others
wait at a barrier. The data check is not in it: it runs before the group exists. Training and
evaluation get the backend's default back (``end_startup``), so a real hang shows in minutes."""


def world() -> int:
    """Number of processes (1 unless launched by accelerate/torchrun)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def is_main() -> bool:
    return rank() == 0


def state(timeout: timedelta | None = None):
    """accelerate's ``PartialState`` (initialises the process group on first use when world > 1;
    ``timeout`` counts only then)."""
    from accelerate import PartialState

    cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return PartialState(cpu=cpu, **({"timeout": timeout} if timeout is not None else {}))


def init(timeout: timedelta | None = None) -> None:
    """Join the process group now (a no-op for a single process), its collectives waiting up to
    ``timeout`` (None: the backend's default)."""
    if world() > 1:
        state(timeout)


def end_startup() -> None:
    """Give the process group the backend's default timeout again (NCCL 10 min, gloo 30 min)."""
    import torch.distributed as tdist

    if world() == 1 or not tdist.is_initialized():
        return
    from torch.distributed import distributed_c10d as c10d

    nccl = tdist.get_backend() == "nccl"
    default = (getattr(c10d, "default_pg_nccl_timeout", None) if nccl else None) or c10d.default_pg_timeout
    setter = getattr(c10d, "_set_pg_timeout", None)  # torch >= 2.3; older ones keep the startup timeout
    if setter is not None:
        setter(default)


def device() -> torch.device:
    """This process's device: its own GPU under a launcher, else cuda:0 when present, else the CPU."""
    if world() > 1:
        return state().device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_drain: Callable[[], None] | None = None


def set_drain(fn: Callable[[], None] | None) -> Callable[[], None] | None:
    """Install what ``barrier`` runs first (returns the previous one). A sharded model's evaluation sets it
    (``coin.engine.fsdp.lockstep``): a process that reaches a barrier has no forward left, and serves
    the others' until they have none either, since each forward of a sharded model is a collective."""
    global _drain
    previous, _drain = _drain, fn
    return previous


def barrier() -> None:
    import torch.distributed as dist

    if world() > 1 and dist.is_available() and dist.is_initialized():
        if _drain is not None:
            _drain()
        dist.barrier()


@contextmanager
def main_first():
    """The main process runs the block first (e.g. fills a cache); the others run it after."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def _all_reduce(value: float, op: str) -> float:
    """``value`` reduced over every process (``op``: "sum" or "max"); itself for a single process."""
    import torch.distributed as tdist

    if world() == 1 or not tdist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device() if tdist.get_backend() == "nccl" else "cpu")
    tdist.all_reduce(t, op={"sum": tdist.ReduceOp.SUM, "max": tdist.ReduceOp.MAX}[op])
    return float(t.item())


def any_true(flag: bool) -> bool:
    """True on every process when ``flag`` is true on at least one."""
    return _all_reduce(1.0 if flag else 0.0, "max") > 0


def sum_over_processes(value: float) -> float:
    return _all_reduce(value, "sum")


SUPPORTED = ("NO", "MULTI_GPU", "MULTI_CPU")


class UnsupportedLaunch(RuntimeError):
    """A launcher setting coin's training loop does not support (the message says what to use)."""


_REFUSED = {
    "FSDP": ("accelerate's FSDP plugin, which coin does not use: coin shards the model itself. Launch with "
             "configs/accelerate/fsdp.yaml (or ddp.yaml, or torchrun) and set dist.strategy: fsdp in the run config"),
    "DEEPSPEED": ("DeepSpeed, which coin does not support: to shard the model over GPUs set dist.strategy: fsdp "
                  "and launch with configs/accelerate/fsdp.yaml (FSDP2: the frozen base sharded, the adapter "
                  "replicated); for data parallel use configs/accelerate/ddp.yaml"),
}


def check_supported(distributed_type) -> None:
    """Refuse accelerate's FSDP plugin and DeepSpeed launches, naming what to use (docs/distributed.md)."""
    name = getattr(distributed_type, "name", str(distributed_type))
    if name not in SUPPORTED:
        what = _REFUSED.get(name, "a launch coin's training loop does not support; use configs/accelerate/ddp.yaml "
                                  "or configs/accelerate/fsdp.yaml with dist.strategy: fsdp")
        raise UnsupportedLaunch(f"this launch uses {name}: {what}. See docs/distributed.md.")
