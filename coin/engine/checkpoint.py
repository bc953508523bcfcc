"""In-stage checkpoints: trainable weights, optimizer, scheduler, RNG and data position.

A checkpoint is a folder ``step-NNNNNN/`` with ``state.safetensors`` (tensors) and
``meta.json`` (step, scheduler state, RNG state, the tensors' sha256) written last. It is
built aside and renamed into place, so a kill mid-write leaves no folder that looks
complete. On load the checksum is verified; a truncated or corrupt newest checkpoint is
reported and the previous good one is used.

The RNG state is every generator a step may draw from: torch's CPU generator, every CUDA
device's (LoRA dropout on a GPU draws there), Python's ``random`` and NumPy's global one (a
method's hooks may use either), of every process: each draws its own numbers, so each restores
its own (``with_processes``, ``of_process``). All are stored in ``meta.json`` as plain ints and
floats, so reading a checkpoint unpickles nothing. A checkpoint written before a generator was
saved leaves that generator as it is on restore.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Callable

import torch

from coin.errors import CheckpointError
from coin.io import atomic_write_bytes, atomic_write_json


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def snapshot(step: int, named_params: dict[str, torch.Tensor], opt, sched, plan: dict | None = None,
             rng: dict | None = None) -> dict:
    """Everything a checkpoint holds, copied to host memory now: what ``write_snapshot`` writes later,
    however the training has moved on meanwhile (the copies share no storage with the live tensors).
    ``rng``: the generators to keep (default this process's; ``with_processes`` for several)."""
    tensors = {f"param.{k}": v.detach().to("cpu", copy=True).contiguous() for k, v in named_params.items()}
    opt_tensors, opt_meta = _flatten_optimizer(opt)
    tensors.update({k: v.clone() for k, v in opt_tensors.items()})
    meta = {"step": step, "scheduler": sched.state_dict(), "optimizer": opt_meta,
            "rng": rng if rng is not None else rng_state(), "plan": plan}
    return {"tensors": tensors, "meta": json.loads(json.dumps(meta))}  # a deep copy of plain values


def check_free_space(folder: Path, snap: dict) -> None:
    """``CheckpointError`` before anything is written when the disk cannot hold twice the snapshot."""
    need = 2 * sum(t.numel() * t.element_size() for t in snap["tensors"].values())
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise CheckpointError(f"not enough free disk in {folder} for a checkpoint: need about "
                              f"{need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free")


def write_snapshot(folder: Path, snap: dict, free_space_check: bool = True) -> Path:
    """Write ``snap`` as ``folder/step-NNNNNN`` atomically (built aside, renamed) and return its path."""
    from safetensors.torch import save

    if free_space_check:
        check_free_space(folder, snap)
    blob = save(snap["tensors"])
    folder.mkdir(parents=True, exist_ok=True)
    step = snap["meta"]["step"]
    final = folder / f"step-{step:06d}"
    tmp = folder / f".step-{step:06d}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_bytes(tmp / "state.safetensors", blob)
    meta = {**snap["meta"], "sha256": hashlib.sha256(blob).hexdigest()}
    atomic_write_json(tmp / "meta.json", meta, indent=None)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def save_checkpoint(folder: Path, step: int, named_params: dict[str, torch.Tensor], opt, sched,
                    free_space_check: bool = True, plan: dict | None = None, rng: dict | None = None) -> Path:
    """Write ``folder/step-NNNNNN`` atomically, now, and return its path.

    ``plan``: what the step counter means (the stage's steps and samples per step), checked on restore.
    ``rng``: as for ``snapshot``.
    """
    return write_snapshot(folder, snapshot(step, named_params, opt, sched, plan, rng), free_space_check)


class AsyncCheckpointer:
    """Checkpoints written by a background thread while training goes on (``train.checkpoint_async``).

    ``submit`` takes a ``snapshot`` (the copy to host memory is the only wait: on 8 GPUs the other
    processes no longer wait for a multi-GB write to disk), checks the free space at once, and writes
    in a thread: the same atomic folder and checksum as ``save_checkpoint``, then ``prune``. One write
    at a time: a ``submit`` first waits for the previous one. ``wait`` joins the write in flight and
    raises its error, if any (a full disk is named as it is written); the stage calls it before it
    ends, before an interruption is reported, and on the way out of an error. A kill mid-write leaves
    only a ``.partial`` folder, which ``latest_good`` never reads.
    """

    def __init__(self, folder: Path, keep: int = 2) -> None:
        self.folder, self.keep = folder, keep
        self._thread = None
        self._error: BaseException | None = None

    def submit(self, snap: dict) -> None:
        self.wait()
        check_free_space(self.folder, snap)

        def work() -> None:
            try:
                write_snapshot(self.folder, snap, free_space_check=False)
                prune(self.folder, self.keep)
            except BaseException as e:  # re-raised by wait() on the training thread
                self._error = e

        self._thread = threading.Thread(target=work, name=f"coin-checkpoint-{snap['meta']['step']}", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def load_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and verify one checkpoint folder; raise ``CheckpointError`` if it is damaged."""
    from safetensors.torch import load

    try:
        meta = json.loads((path / "meta.json").read_text())
        blob = (path / "state.safetensors").read_bytes()
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e})") from None
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"{path}: checksum mismatch (truncated or corrupt file)")
    return meta, load(blob)


def latest_good(folder: Path, log: Callable[[str], None] = print) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """The newest checkpoint in ``folder`` that verifies; damaged newer ones are reported and skipped."""
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("step-*"), reverse=True):
        try:
            return load_checkpoint(path)
        except CheckpointError as e:
            log(f"warning: {e}; falling back to the previous checkpoint")
    return None


def restore(meta: dict, tensors: dict[str, torch.Tensor], named_params: dict[str, torch.nn.Parameter], opt, sched,
            plan: dict | None = None, rng: bool = True) -> int:
    """Load weights, optimizer, scheduler and RNG from a checkpoint; returns the step to continue at.

    ``plan``: today's stage plan; a checkpoint written under another one (another effective batch,
    so another count of steps) is refused rather than restored into a plan it does not belong to.
    ``rng=False``: leave the generators for the caller to restore (``set_rng_state(meta["rng"])``)
    right before the first step, after any set-up that might draw.
    """
    saved = meta.get("plan")
    if plan is not None and saved is not None and saved != plan:
        changed = ", ".join(f"{k} {saved.get(k)} -> {plan.get(k)}" for k in sorted(set(saved) | set(plan))
                            if saved.get(k) != plan.get(k))
        raise CheckpointError(f"checkpoint at step {meta.get('step')} was written for another stage plan ({changed}); "
                              "resume with the batch size, grad_accum and process count it was written with")
    with torch.no_grad():
        for k, p in named_params.items():
            p.copy_(tensors[f"param.{k}"])
    opt.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    sched.load_state_dict(meta["scheduler"])
    if rng:
        set_rng_state(meta["rng"])
    return int(meta["step"])


def rng_state() -> dict:
    """Every global generator's state as JSON-safe plain types (see ``set_rng_state``)."""
    import random

    version, words, gauss = random.getstate()
    rng = {"torch": torch.get_rng_state().tolist(),
           "python": {"version": version, "state": list(words), "gauss_next": gauss}}
    if torch.cuda.is_available():
        rng["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    try:
        import numpy as np
    except ImportError:
        return rng
    kind, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    rng["numpy"] = {"kind": kind, "key": [int(k) for k in key], "pos": int(pos), "has_gauss": int(has_gauss),
                    "cached_gaussian": float(cached)}
    return rng


def with_processes(states: list[dict]) -> dict:
    """The generators of a checkpoint written by several processes (``states``: each one's ``rng_state``,
    in rank order): the main process's, as one process's checkpoint holds them, and every process's under
    ``processes``. Each process draws its own numbers (LoRA dropout over its own rows, a method's hooks),
    so each restores its own (``of_process``)."""
    return states[0] if len(states) == 1 else {**states[0], "processes": states}


def of_process(rng: dict, rank: int, world: int) -> dict:
    """Process ``rank``'s generators in a checkpoint's ``rng``: its own where the checkpoint kept every
    process's and was written by as many processes; else the main process's (a checkpoint of one process,
    one written before every process's were kept, or a relaunch on another process count, which draws
    differently anyway)."""
    every = rng.get("processes")
    return every[rank] if every and len(every) == world else rng


def set_rng_state(rng: dict) -> None:
    """Restore what ``rng_state`` saved; a generator missing from ``rng`` (an older checkpoint, a
    checkpoint written without CUDA or NumPy) is left as it is. CUDA states are restored to as many
    devices as both the checkpoint and this machine have."""
    import random

    torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
    if "python" in rng:
        py = rng["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    if "cuda" in rng and torch.cuda.is_available():
        states = [torch.tensor(s, dtype=torch.uint8) for s in rng["cuda"]][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    if "numpy" in rng:
        try:
            import numpy as np
        except ImportError:
            return
        st = rng["numpy"]
        np.random.set_state((st["kind"], np.array(st["key"], dtype=np.uint32), st["pos"], st["has_gauss"],
                             st["cached_gaussian"]))


def prune(folder: Path, keep: int = 2) -> None:
    """Keep only the newest ``keep`` checkpoints (the previous one is the fallback)."""
    for path in sorted(folder.glob("step-*"), reverse=True)[keep:]:
        shutil.rmtree(path, ignore_errors=True)
