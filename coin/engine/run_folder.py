"""The run folder: its config (and whether a run there may continue), its environment record, its lock.

A run continues in a folder only under the same config. ``prepare_run_dir`` compares the
folder's stored ``config.yaml`` (upgraded: keys added since filled in, see
``coin.config_load.upgrade``) with today's, apart from keys that never change a number
(``OPERATIONAL_KEYS``) or that only change how stored answers are scored (``SCORING_KEYS``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from coin.config import RunConfig, dump_config, read_yaml_mapping
from coin.config_load import upgrade
from coin.engine import dist
from coin.errors import RunFolderError
from coin.io import atomic_write_json, atomic_write_text

__all__ = ["OPERATIONAL_KEYS", "SCORING_KEYS", "FolderLock", "RunFolderError", "clear_run_folder", "environment",
           "prepare_run_dir", "write_environment"]


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return keys


# keys that change how a run works, never its numbers: a folder continues under another value
OPERATIONAL_KEYS = ("data.check_images", "data.max_image_pixels", "train.num_workers", "log.trackers",
                    "log.project", "eval.share_prefix", "eval.cache_vision", "dist.gpu_memory_gib",
                    "train.checkpoint_async", "train.checkpoint_minutes")
# keys that change only how stored answers are scored: every stage is rescored from its outputs when
# the run writes its matrix (write_matrix), so a folder continues under new values and records them in config.yaml
SCORING_KEYS = ("data.answers", "eval.protocol")


def _is_scoring_key(diff: str) -> bool:
    key = diff.split(":", 1)[0]
    return any(key == k or key.startswith(k + ".") for k in SCORING_KEYS)


def prepare_run_dir(out: Path, cfg: RunConfig) -> None:
    """Create ``out`` with the config, or check an existing run there has the same config."""
    cfg_path = out / "config.yaml"
    if cfg_path.is_file():
        old = upgrade(read_yaml_mapping(cfg_path, "run folder config"))  # a damaged one is named
        diff = [d for d in _diff_keys(old, cfg.to_dict()) if d.split(":", 1)[0] not in OPERATIONAL_KEYS]
        numbers = [d for d in diff if not _is_scoring_key(d)]
        _check_effective_batch(out, old, cfg)
        if numbers and not _same_effective_batch(out, old, cfg, numbers):
            raise RunFolderError(
                f"{out} holds a run with a different config; changed keys:\n  " + "\n  ".join(diff)
                + "\nUse another --out, or --fresh to start this folder over.")
        if diff and dist.is_main():  # the scoring changed, or the process count with the effective batch kept
            atomic_write_text(cfg_path, dump_config(cfg))
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg_path, dump_config(cfg))


def _last_processes(out: Path) -> int | None:
    """The process count of the folder's last launch (``env-history.jsonl``); None when not recorded."""
    history = out / "env-history.jsonl"
    lines = history.read_text(encoding="utf-8").splitlines() if history.is_file() else []
    try:
        return json.loads(lines[-1]).get("processes") if lines else None  # older folders did not record it
    except json.JSONDecodeError:  # a line cut by a kill mid-append
        return None


def _training_state(out: Path, stages: int) -> tuple[bool, bool]:
    """(some training happened, every stage is trained) in the run folder ``out`` of ``stages`` tasks."""
    folders = [d for d in (out / "stages").glob("[0-9][0-9]-*") if not d.name.startswith("00-")]
    trained = sum((d / "adapter" / "adapter_model.safetensors").is_file() for d in folders)
    started = trained > 0 or any(d.glob("checkpoints/step-*") for d in folders)
    return started, trained >= stages


def _check_effective_batch(out: Path, old: dict, cfg: RunConfig) -> None:
    """Refuse to continue training under another effective batch (batch x grad_accum x processes).

    Each stage's plan of optimiser steps is drawn for the effective batch: a checkpoint restored
    into another plan, or a later stage trained at another batch, would give numbers that belong
    to no config. Checked on every resume, whether or not a config key changed. A folder that
    has not trained yet, or whose every stage is trained (evaluation left), continues freely.
    """
    from coin.tasks.orders import resolve_order

    before = _last_processes(out)
    try:
        was = int(old["train"]["batch_size"]) * int(old["train"]["grad_accum"])
    except (KeyError, TypeError, ValueError):
        return
    now = cfg.train.batch_size * cfg.train.grad_accum
    if before is None or was * before == now * dist.world():
        return
    started, finished = _training_state(out, len(resolve_order(cfg.tasks.order)))
    if not started or finished:
        return
    hint = f"launch {before} process(es) again"
    if (was * before) % (cfg.train.batch_size * dist.world()) == 0:
        hint += f", or keep {dist.world()} with --set train.grad_accum={was * before // (cfg.train.batch_size * dist.world())}"
    raise RunFolderError(
        f"{out} was trained at {before} process(es) x batch {old['train']['batch_size']} x grad_accum "
        f"{old['train']['grad_accum']} = {was * before} samples per optimiser step; this launch gives "
        f"{dist.world()} x {cfg.train.batch_size} x {cfg.train.grad_accum} = {now * dist.world()}. A resumed run "
        f"keeps its effective batch (its steps were planned for it): {hint}; or use another --out.")


def _same_effective_batch(out: Path, old: dict, cfg: RunConfig, numbers: list[str]) -> bool:
    """Whether the one number-changing difference is ``train.grad_accum``, with batch x accumulation x
    processes what the folder's last launch had: a run moved to another number of GPUs keeps its
    seeded plan of optimiser steps, so it continues (docs/distributed.md)."""
    if [d.split(":", 1)[0] for d in numbers] != ["train.grad_accum"]:
        return False
    t = cfg.train  # a task with its own batch or grad_accum (train.per_task) would change its effective batch
    if any((t.for_task(task).batch_size, t.for_task(task).grad_accum) != (t.batch_size, t.grad_accum)
           for task in t.per_task):
        return False
    before = _last_processes(out)
    return before is not None and old["train"]["grad_accum"] * before == cfg.train.grad_accum * dist.world()


def git_state(folder: Path) -> tuple[str | None, bool | None]:
    """The commit checked out where ``folder`` lies, and whether its tracked files differ from it (None, None
    outside a git checkout or without git): a run made from edited code says so beside the commit."""
    import subprocess

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = (git("rev-parse", "HEAD") or "").strip() or None
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return commit, None if status is None else bool(status.strip())


def environment(cfg: RunConfig) -> dict:
    """Versions, device, seed and coin's git commit: what a reader needs to trust the numbers."""
    import platform

    import accelerate
    import peft
    import torch
    import transformers

    import coin
    from coin.lock import lock_status
    from coin.machine import cpu_identity

    commit, dirty = git_state(Path(coin.__file__).parent)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()})"
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "accelerate": accelerate.__version__, "coin": coin.__version__,
            "coin_commit": commit, "coin_dirty": dirty, "device": device, "threads": torch.get_num_threads(), "processes": dist.world(),
            "seed": cfg.seed,
            "platform": platform.platform(), "cpu": cpu_identity(), "lock": lock_status()}


def write_environment(out: Path, cfg: RunConfig) -> None:
    """Record the environment in ``env.json`` (each restart appends to ``env-history.jsonl``)."""
    env = environment(cfg)
    if not (out / "env.json").is_file():
        atomic_write_json(out / "env.json", env)
    with open(out / "env-history.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **env}) + "\n")


def clear_run_folder(out: Path, check_only: bool = False) -> None:
    """Empty the run folder ``out`` for ``--fresh``; the caller holds its lock, which stays in place.

    Only a coin run folder (one holding ``config.yaml``) or an empty one is emptied: ``--fresh
    --out DIR`` on any other folder is refused with what it holds, so a mistyped path never
    deletes a user's files. ``check_only``: refuse such a folder, delete nothing (before the lock is taken,
    so a refused folder does not even get a lock file).
    """
    import shutil

    if not out.is_dir():
        return
    entries = [p for p in out.iterdir() if p.name != ".lock"]
    if entries and not (out / "config.yaml").is_file():
        shown = ", ".join(sorted(p.name for p in entries)[:5]) + (", ..." if len(entries) > 5 else "")
        raise RunFolderError(f"{out} is not a coin run folder (no config.yaml; it holds {shown}); --fresh "
                             "deletes only run folders: choose another --out")
    if check_only:
        return
    for p in entries:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def lock_record() -> dict:
    """What ``FolderLock`` writes into ``.lock``: who holds the folder (pid, host, since when), the launcher
    (under accelerate launch / torchrun) and every process of the launch (``dist.processes``), so that
    ``coin status`` can name them and say whether each one is still alive. Older lock files are empty."""
    import os
    import socket

    from coin.engine.status import start_ticks

    launcher = os.getppid() if dist.launched() else None
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "start": start_ticks(os.getpid()), "launcher": launcher,
            "launcher_start": start_ticks(launcher) if launcher else None, "processes": dist.processes()}


class FolderLock:
    """An exclusive lock on ``out/.lock`` while a run works there (the kernel drops it if the process dies).

    The holder writes ``lock_record()`` into the file once it holds it (``coin status`` reads it) and empties
    it on release; a refused process names the holder from it.
    """

    def __init__(self) -> None:
        self._file = None

    def acquire(self, out: Path) -> None:
        import fcntl

        f = open(out / ".lock", "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            from coin.engine.status import describe_holder

            raise RunFolderError(f"{out} is in use by another coin process{describe_holder(out)}; wait for it to "
                                 "finish or use another --out (coin status shows its processes)") from None
        f.truncate(0)
        f.write(json.dumps(lock_record()) + "\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            try:
                self._file.truncate(0)  # still held: no one reads a half-emptied record
            except OSError:
                pass
            self._file.close()
            self._file = None
