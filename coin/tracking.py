"""Watching a run: experiment trackers (TensorBoard by default) and a light per-step loss log.

Two records are kept, by the main process only:

* ``RUN/stages/NN-<task>/train_log.jsonl``: one JSON line per optimiser step (loss, learning
  rate, gradient norm, the methods' extra loss terms). Plain text, so the report and
  ``coin status`` read loss curves without any tracker installed.
* the trackers named in ``log.trackers``, through accelerate's tracker API: TensorBoard event
  files in ``RUN/logs/``; W&B and MLflow when listed (optional extras, never required).

Step numbers are global across stages (stage 2's first step follows stage 1's last), so the
curves of all stages line up. A killed run may have logged steps past its last checkpoint;
when it resumes, those steps run again. Both records drop the stale ones: the step log keeps
only rows before the first step this process writes, and the TensorBoard writer opens with
``purge_step`` at that step, so TensorBoard's reader discards the older events from there on
and shows each step once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from coin import install_hint
from coin.io import atomic_write_jsonl, atomic_write_text, write_error
from coin.registry import Registry

STEP_LOG = "train_log.jsonl"


@dataclass(frozen=True)
class TrackerKind:
    """A tracker coin can feed (``name``, as ``log.trackers`` gives it): the module it needs, the extra that
    installs it, its factory."""

    name: str
    module: str
    extra: str
    build: Callable[[Path, str, str, int], object]  # (run folder, run name, project, purge step) -> GeneralTracker
    # whether the tracker drops the values a resumed run logs again (TensorBoard's purge_step); for one that
    # does not, coin logs each step once: it keeps the last step logged in RUN/logs/<name>.steps.json
    purges: bool = False
    # called once the tracker has started, to note what a resumed run needs to continue the same tracker run
    started: Callable[[object, Path], None] | None = None


def _tensorboard(out: Path, name: str, project: str, purge_step: int):
    from accelerate.tracking import TensorBoardTracker

    return TensorBoardTracker("", out / "logs", purge_step=purge_step)


def _wandb(out: Path, name: str, project: str, purge_step: int):
    from accelerate.tracking import WandBTracker

    # the same id for the same folder: a resumed run continues its W&B run (steps it already has are ignored)
    return WandBTracker(project, name=name, id=_stable_id(out), resume="allow", dir=str(out / "logs"))


MLFLOW_RUN_ID = "mlflow_run_id"  # in RUN/logs/: a resumed run continues the MLflow run it started


def _mlflow(out: Path, name: str, project: str, purge_step: int):
    from accelerate.tracking import MLflowTracker

    saved = out / "logs" / MLFLOW_RUN_ID
    run_id = saved.read_text(encoding="utf-8").strip() if saved.is_file() else None
    return MLflowTracker(experiment_name=project, run_name=name, run_id=run_id or None)


def _mlflow_started(tracker, out: Path) -> None:
    run = getattr(tracker, "active_run", None)
    if run is not None:
        atomic_write_text(out / "logs" / MLFLOW_RUN_ID, run.info.run_id + "\n")


TRACKERS: Registry[TrackerKind] = Registry("tracker")
TRACKERS.register(TrackerKind(name="tensorboard", module="tensorboard", extra="tensorboard", build=_tensorboard,
                              purges=True))
TRACKERS.register(TrackerKind(name="wandb", module="wandb", extra="wandb", build=_wandb))
TRACKERS.register(TrackerKind(name="mlflow", module="mlflow", extra="mlflow", build=_mlflow, started=_mlflow_started))


def hyperparameters(config: dict) -> dict[str, bool | int | float | str]:
    """A run config (nested dicts, as ``coin.options.flat_dict`` gives it) as the flat ``section.key`` ->
    scalar mapping trackers take as hyperparameters: lists and mappings as JSON text, None as "none"."""
    out: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (bool, int, float, str)):
            out[prefix] = value
        elif value is None:
            out[prefix] = "none"
        else:
            out[prefix] = json.dumps(value, sort_keys=True, default=str)

    walk("", config)
    return out


def _stable_id(out: Path) -> str:
    import hashlib

    return hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:16]


def tracker_problems(names: object, key: str = "log.trackers") -> list[str]:
    """Every problem with a ``log.trackers`` value: unknown names, and listed trackers not installed."""
    if not isinstance(names, list):
        return [f"{key} must be a list of tracker names, got {names!r}"]
    problems = []
    for k, name in enumerate(names):
        if name not in TRACKERS:
            problems.append(f"{key}[{k}]: {TRACKERS.unknown_message(str(name))}")
        elif importlib.util.find_spec(TRACKERS.get(name).module) is None:
            extra = TRACKERS.get(name).extra
            problems.append(f"{key}[{k}]: {name!r} is not installed; {install_hint(extra)} "
                            f"(or remove it from {key})")
    return problems


class RunTracker:
    """The run's trackers, opened at the first value logged (so a resume knows where it restarts).

    ``step`` logs one optimiser step's values and purges from that step; ``stage`` logs
    end-of-stage values at the stage's last step, which a resume never repeats, so it purges
    from the step after. Only the main process should call it.
    """

    def __init__(self, names: list[str], out: Path, run_name: str, project: str = "coin",
                 config: dict | None = None) -> None:
        self.names, self.out, self.run_name, self.project = list(names), Path(out), run_name, project
        self.config = config  # the resolved run config: each tracker stores it once per run as hyperparameters
        self._trackers: list | None = None
        self._marks: dict[str, dict] = {}

    def _mark_path(self, name: str) -> Path:
        return self.out / "logs" / f"{name}.steps.json"

    def _open(self, purge_step: int) -> list:
        if self._trackers is None:
            self._trackers = []
            for name in self.names:
                kind = TRACKERS.get(name)
                tracker = kind.build(self.out, self.run_name, self.project, purge_step)
                tracker.start()
                if kind.started is not None:
                    kind.started(tracker, self.out)
                mark = self._mark_path(name)
                try:
                    self._marks[name] = json.loads(mark.read_text(encoding="utf-8")) if mark.is_file() else {}
                except (OSError, ValueError):
                    self._marks[name] = {}
                if self.config is not None and not self._marks[name].get("config"):
                    tracker.store_init_configuration(hyperparameters(self.config))
                    self._note(name, "config", True)
                self._trackers.append((kind, tracker))
        return self._trackers

    def _note(self, name: str, key: str, value) -> None:
        self._marks.setdefault(name, {})[key] = value
        atomic_write_text(self._mark_path(name), json.dumps(self._marks[name], sort_keys=True) + "\n")

    def step(self, global_step: int, values: dict[str, float]) -> None:
        for kind, t in self._open(global_step):
            last = self._marks.get(kind.name, {}).get("step")
            if not kind.purges and last is not None and global_step <= last:
                continue  # a tracker that keeps what a killed run logged: each step once
            t.log(values, step=global_step)
            if not kind.purges:
                self._note(kind.name, "step", global_step)

    def stage(self, global_step: int, values: dict[str, float], key: str | None = None) -> None:
        """End-of-stage values at ``global_step``; ``key`` names them (e.g. "zero-shot", "stage 3") so that
        a tracker that does not purge gets them once even when a resumed run logs them again."""
        for kind, t in self._open(global_step + 1):
            done = self._marks.get(kind.name, {}).get("stages", [])
            if not kind.purges and key is not None and key in done:
                continue
            t.log(values, step=global_step)
            if not kind.purges and key is not None:
                self._note(kind.name, "stages", [*done, key])

    def close(self) -> None:
        for _, t in self._trackers or []:
            t.finish()
        self._trackers = None


class StepLog:
    """``train_log.jsonl`` of one stage: one line per optimiser step, appended with one write.

    The first row this process writes drops the rows at or after its step (written by a killed
    run past its last checkpoint), so the file holds each step once, in order.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._checked = False

    def append(self, row: dict) -> None:
        if not self._checked:
            self._checked = True
            old = read_step_log(self.path)
            if any(r["step"] >= row["step"] for r in old):
                atomic_write_jsonl(self.path, [r for r in old if r["step"] < row["step"]])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:  # one write per line: a kill leaves whole lines and at most one torn last line
                os.write(fd, (json.dumps({**row, "time": round(time.time(), 3)}) + "\n").encode())
            finally:
                os.close(fd)
        except OSError as e:  # a full disk, an unwritable folder: the file named (coin.io.WriteError)
            raise (write_error(e, self.path) or e) from e


def read_step_log(path: Path) -> list[dict]:
    """The rows of a ``train_log.jsonl``; a torn last line (a kill mid-write) is skipped, a missing file is []."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def stage_dirs(run_dir: Path) -> list[Path]:
    """The run's trained-stage folders in order (``NN-<task>``, not the zero-shot one)."""
    root = Path(run_dir) / "stages"
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and d.name[:2].isdigit() and d.name[:2] != "00")


def loss_curves(run_dir: Path) -> list[dict]:
    """Per trained stage: its task, global steps and losses from the step logs (for the report's figure)."""
    curves = []
    for d in stage_dirs(run_dir):
        rows = [r for r in read_step_log(d / STEP_LOG) if "loss" in r]
        if rows:
            curves.append({"task": d.name[3:], "steps": [r["global_step"] for r in rows],
                           "loss": [r["loss"] for r in rows]})
    return curves
