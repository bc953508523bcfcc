"""Processes: one under ``coin run``, several under ``accelerate launch`` (or torchrun).

Every process runs the same control flow over the same files; only the main process writes
run files (config, checkpoints, adapters, scores, reports), and the others wait for it at
barriers. The process group comes from accelerate's ``PartialState``: NCCL on GPUs, gloo on
a machine without one (so a 2-process run works on a laptop's CPU).

A launcher starts its workers in their own process groups, so killing the launcher (or its
process group) used to leave them running, holding the run folder and their GPUs. Under a
launcher every process now stops when its launcher dies (``exit_with_launcher``, installed by
``init``): see docs/distributed.md, "Stopping a run".
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable

import torch

from coin.engine.status import start_ticks  # torch-free: coin status reads the same numbers
from coin.errors import UnsupportedLaunch

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


def local_world() -> int:
    """Processes on this machine (the launcher's ``LOCAL_WORLD_SIZE``; every process where it says none)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world()))


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
    ``timeout`` (None: the backend's default). Under a launcher, first make this process stop when the
    launcher dies (``exit_with_launcher``); once joined, every process learns every other's pid (``processes``)."""
    exit_with_launcher()
    if world() > 1:
        state(timeout)
        _gather_processes()


# --------------------------------------------------------------------------- the launcher's death

ORPHAN_POLL = 1.0
"""Seconds between two checks of the parent's pid (the portable half of ``watch_parent``)."""
ORPHAN_GRACE = 120.0
"""Seconds a process whose launcher died gets to stop by itself (SIGTERM: during training, a checkpoint
first) before it exits hard: a process waiting on a collective whose peers are gone would wait forever."""

_watched: int | None = None  # the parent's pid once watch_parent ran


def launched() -> bool:
    """Whether a launcher (accelerate launch, torchrun) started this process: it sets LOCAL_RANK and WORLD_SIZE."""
    return "LOCAL_RANK" in os.environ or "WORLD_SIZE" in os.environ


def exit_with_launcher() -> bool:
    """Under a launcher, make this process stop when the launcher dies (``watch_parent``); a plain
    ``coin run`` is left alone. Returns whether a watch is installed. Safe to call more than once."""
    return watch_parent() if launched() else False


def _set_pdeathsig(sig: int) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(sig), 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError, TypeError):
        return False


def watch_parent(pdeathsig: bool = True, poll: float = ORPHAN_POLL, grace: float = ORPHAN_GRACE) -> bool:
    """Stop this process when its parent (the launcher) dies, however it dies (SIGKILL included).

    Two mechanisms: on Linux the kernel sends SIGTERM at the parent's death (``PR_SET_PDEATHSIG``,
    when ``pdeathsig``); everywhere a daemon thread compares ``os.getppid()`` with the parent seen now,
    every ``poll`` seconds, and sends SIGTERM itself when it changed and the kernel could not. SIGTERM
    stops coin as Ctrl-C does (during training: a checkpoint, then exit); a process still alive
    ``grace`` seconds later exits hard. Returns whether a watch is installed (idempotent: the first wins).
    """
    global _watched
    if _watched is not None:
        return True
    parent = os.getppid()
    if parent <= 1:  # started by init, or orphaned already: no launcher left to follow
        return False
    kernel = pdeathsig and _set_pdeathsig(signal.SIGTERM)
    if os.getppid() != parent:  # it died before the kernel was told: the thread signals at once
        kernel = False
    _watched = parent
    threading.Thread(target=_watch, args=(parent, kernel, poll, grace), name="coin-launcher-watch",
                     daemon=True).start()
    return True


def _watch(parent: int, kernel: bool, poll: float, grace: float) -> None:
    while os.getppid() == parent:
        time.sleep(poll)
    if not kernel:  # the kernel has sent it already otherwise: a second one would cut the checkpoint short
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    os._exit(128 + signal.SIGTERM)


# --------------------------------------------------------------------------- who is who

_processes: list[dict] | None = None  # every process of this launch, once init gathered them


def host_id(host: str) -> int:
    """A host name as a number a float64 carries exactly (52 bits of its SHA-1), for the all-reduce below."""
    return int(hashlib.sha1(host.encode()).hexdigest()[:13], 16)


def _me() -> dict:
    return {"rank": rank(), "pid": os.getpid(), "host": socket.gethostname(), "start": start_ticks(os.getpid())}


def _gather_processes() -> None:
    """Every process's rank, pid, host and start time, on every process (one all-reduce, at startup)."""
    global _processes
    import torch.distributed as tdist

    if _processes is not None or not tdist.is_initialized():
        return
    me = _me()
    on = device() if tdist.get_backend() == "nccl" else "cpu"
    t = torch.zeros(world(), 3, dtype=torch.float64, device=on)
    t[rank()] = torch.tensor([me["pid"], host_id(me["host"]), -1 if me["start"] is None else me["start"]],
                             dtype=torch.float64)
    tdist.all_reduce(t)
    rows = t.cpu().tolist()
    _processes = [{"rank": r, "pid": int(pid), "host": me["host"] if int(h) == host_id(me["host"]) else None,
                   "start": None if start < 0 else int(start)} for r, (pid, h, start) in enumerate(rows)]


def processes() -> list[dict]:
    """This launch's processes as ``{"rank", "pid", "host", "start"}`` (``host`` None: another machine than
    this process's); just this one for a single process or before ``init``."""
    return list(_processes) if _processes is not None else [_me()]


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


def gather_objects(obj) -> list:
    """``obj`` of every process in rank order, on every process (``[obj]`` for one process). For small
    values that every process computes at the same point (each one's generator states at a checkpoint)."""
    import torch.distributed as tdist

    if world() == 1 or not tdist.is_initialized():
        return [obj]
    out = [None] * world()
    tdist.all_gather_object(out, obj)
    return out


def any_true(flag: bool) -> bool:
    """True on every process when ``flag`` is true on at least one."""
    return _all_reduce(1.0 if flag else 0.0, "max") > 0


def sum_over_processes(value: float) -> float:
    return _all_reduce(value, "sum")


SUPPORTED = ("NO", "MULTI_GPU", "MULTI_CPU")


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
