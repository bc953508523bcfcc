"""``coin status RUN``: a run's state at a glance, from its folder alone.

Works on a finished run, a killed one and one still running, because it reads only the
small files a run writes as it goes (``config.yaml``, ``DONE`` markers, ``scores.json``,
the last line of ``train_log.jsonl``, checkpoint folder names) and never a weight or
torch. Whether a process is working in the folder is read from the run's lock
(``RUN/.lock``, held with ``flock`` while ``coin run`` works there); who it is from what the
holder wrote into the lock (``coin.engine.run_folder.lock_record``: its pid, host and start, its
launcher, every process of its launch), each pid checked for life on this host.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import yaml

from coin.tracking import STEP_LOG, read_step_log


def lock_holder(run_dir: Path) -> int | bool | None:
    """The pid holding ``run_dir/.lock`` (True when held by an unknown process), or None when free.

    On Linux the lock table (``/proc/locks``) names the holder without touching the lock;
    elsewhere a non-blocking shared lock is tried and released at once.
    """
    path = Path(run_dir) / ".lock"
    if not path.is_file():
        return None
    st = os.stat(path)
    locks = Path("/proc/locks")
    if locks.is_file():
        for line in locks.read_text().splitlines():
            parts = line.split()  # "1: FLOCK  ADVISORY  WRITE 824 fe:00:2238156 0 EOF" ("->" marks a waiter)
            if "FLOCK" in parts and "->" not in parts and len(parts) >= 6:
                pid, ident = parts[-4], parts[-3].split(":")
                if pid.isdigit() and len(ident) == 3 and ident[2] == str(st.st_ino) and \
                        (int(ident[0], 16), int(ident[1], 16)) == (os.major(st.st_dev), os.minor(st.st_dev)):
                    return int(pid)
        return None
    import fcntl

    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (Linux's ``/proc/PID/stat``; None elsewhere or when gone):
    with the pid it names one process, never a later one that reuses the pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: int, start: int | None = None) -> bool:
    """Whether process ``pid`` (started at ``start`` ticks, when known) runs on this host; a zombie is dead."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0] != b"Z" and (start is None or int(fields[19]) == start)
    except FileNotFoundError:
        return False
    except (OSError, IndexError, ValueError):  # no /proc here
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(run_dir: Path) -> dict | None:
    """What the lock's holder recorded (``lock_record``), or None: no lock, an empty one (released, or written
    by a coin that recorded nothing) or one cut short."""
    try:
        record = json.loads((Path(run_dir) / ".lock").read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def _alive(pid, host, start) -> bool | None:
    """Whether the recorded process lives: None when it ran on another host (this one cannot tell)."""
    if not isinstance(pid, int) or host != socket.gethostname():
        return None
    return pid_alive(pid, start if isinstance(start, int) else None)


def holders(run_dir: Path, holder: int | bool | None = None) -> dict:
    """The processes of the run in ``run_dir``: ``holder`` (the lock's holder: pid, host, since when, alive),
    ``launcher`` (its pid and whether it lives, under a launcher) and ``processes`` (every process of the
    launch: rank, pid, host, alive). While no one holds the lock, ``processes`` keeps only those of the last
    launch still alive (left behind, e.g. by a launcher killed under an older coin)."""
    holder = lock_holder(run_dir) if holder is None else holder
    record = read_lock(run_dir)
    if record is not None and holder is not None and holder is not True and record["pid"] != holder:
        record = None  # held by a process that recorded nothing: an older record is not about it
    out: dict = {"holder": None, "launcher": None, "processes": []}
    if record is None:
        if isinstance(holder, int) and holder is not True:
            out["holder"] = {"pid": holder, "host": socket.gethostname(), "started": None,
                             "alive": pid_alive(holder)}
        return out
    procs = [p for p in record.get("processes") or [] if isinstance(p, dict)] or [
        {"rank": 0, "pid": record["pid"], "host": record.get("host"), "start": record.get("start")}]
    out["processes"] = [{"rank": p.get("rank"), "pid": p.get("pid"), "host": p.get("host"),
                         "alive": _alive(p.get("pid"), p.get("host"), p.get("start"))} for p in procs]
    if holder is None:
        out["processes"] = [p for p in out["processes"] if p["alive"]]
        return out
    out["holder"] = {"pid": record["pid"], "host": record.get("host"), "started": record.get("started"),
                     "alive": _alive(record["pid"], record.get("host"), record.get("start"))}
    if isinstance(record.get("launcher"), int):
        out["launcher"] = {"pid": record["launcher"],
                           "alive": _alive(record["launcher"], record.get("host"), record.get("launcher_start"))}
    return out


def describe_holder(run_dir: Path) -> str:
    """`` (pid N on HOST since T)`` for the process holding ``run_dir``, from its record; empty when unknown."""
    record = read_lock(run_dir)
    if record is None:
        return ""
    since = f" since {record['started']}" if record.get("started") else ""
    return f" (pid {record['pid']} on {record.get('host') or '?'}{since})"


def _tasks(run_dir: Path) -> list[str]:
    """The run's task order, from its config (or, failing that, from its stage folders)."""
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        from coin.tasks.orders import resolve_order

        return resolve_order(cfg.get("tasks", {}).get("order", "paper"))
    except Exception:  # a damaged or foreign config: the folders still tell the order
        root = run_dir / "stages"
        return [d.name[3:] for d in sorted(root.iterdir()) if d.name[:2].isdigit() and d.name[:2] != "00"] \
            if root.is_dir() else []


def _score(entry) -> float | None:
    return entry.get("score") if isinstance(entry, dict) else None


def run_status(run_dir: str | os.PathLike) -> dict:
    """The state of the run in ``run_dir``: stages, the stage in progress, the matrix so far, last loss, lock."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a coin run folder (no config.yaml)")
    tasks = _tasks(run_dir)
    stages, matrix, current, last_loss = [], [], None, None
    for j, task in enumerate(tasks):
        d = run_dir / "stages" / f"{j + 1:02d}-{task}"
        rows = read_step_log(d / STEP_LOG)
        if rows and "loss" in rows[-1]:
            last_loss = {"stage": j + 1, "task": task, "step": rows[-1]["step"], "loss": rows[-1]["loss"]}
        if (d / "DONE").is_file():
            state = "done"
        elif (d / "adapter" / "adapter_model.safetensors").is_file():
            state = "evaluating"
        elif rows or (d / "checkpoints").is_dir():
            state = "training"
        else:
            state = "pending"
        entry = {"stage": j + 1, "task": task, "state": state}
        if state == "training":
            ckpts = sorted(p.name for p in (d / "checkpoints").glob("step-*")) if (d / "checkpoints").is_dir() else []
            entry.update(step=rows[-1]["step"] if rows else 0, of=rows[-1]["of"] if rows else None,
                         checkpoint=int(ckpts[-1][5:]) if ckpts else None)
        if state in ("training", "evaluating") and current is None:
            current = entry
        stages.append(entry)
        if state == "done" and (d / "scores.json").is_file():
            scores = json.loads((d / "scores.json").read_text(encoding="utf-8"))
            matrix.append([_score(scores.get(t)) for t in tasks])
    holder = lock_holder(run_dir)
    finished = bool(stages) and all(s["state"] == "done" for s in stages) and (run_dir / "matrix.json").is_file()
    return {"run": str(run_dir), "tasks": tasks, "stages": stages, "current": current, "matrix": matrix,
            "last_loss": last_loss, "running": holder is not None,
            "pid": holder if isinstance(holder, int) and holder is not True else None, "finished": finished,
            "result": _result(run_dir) if finished else None, **holders(run_dir, holder)}


def _result(run_dir: Path) -> dict | None:
    """A finished run's headline, as its ``matrix.json`` has it: MAA, BWT, ACC, the zero-shot row and
    where the report is (None when the file cannot be read)."""
    try:
        mj = json.loads((run_dir / "matrix.json").read_text(encoding="utf-8"))
        metrics = mj.get("metrics") or {}
    except (OSError, ValueError, AttributeError):
        return None
    report = run_dir / "report.md"
    return {"maa": metrics.get("maa"), "bwt": metrics.get("bwt"), "acc": metrics.get("acc"),
            "zero_shot": mj.get("zero_shot"), "report": str(report) if report.is_file() else None}


def _life(alive: bool | None) -> str:
    return {True: "alive", False: "gone", None: "on another host"}[alive]


def _process_lines(st: dict) -> list[str]:
    """The holder, the launcher and the launch's processes, as ``format_status`` prints them."""
    lines, h, launcher = [], st.get("holder"), st.get("launcher")
    procs = st.get("processes") or []
    if h:
        since = f" since {h['started']}" if h.get("started") else ""
        lines.append(f"  held by pid {h['pid']} on {h.get('host') or '?'}{since} ({_life(h['alive'])})")
        if launcher:
            lines.append(f"  launcher pid {launcher['pid']}: {_life(launcher['alive'])}")
        if len(procs) > 1 or launcher:
            lines += [f"  rank {p['rank']}: pid {p['pid']} on {p['host'] or 'another host'} ({_life(p['alive'])})"
                      for p in procs]
        if launcher and launcher["alive"] is False:
            lines.append("  the launcher is gone: stop these processes with kill -TERM PID (during training "
                         "they write a checkpoint first), then rerun the same command to continue")
    elif procs:
        shown = ", ".join(f"rank {p['rank']} pid {p['pid']}" for p in procs)
        lines.append(f"  processes of its last launch still alive: {shown} (they may hold GPUs and write answer "
                     "files): stop them with kill -TERM PID before continuing the run")
    return lines


def format_status(st: dict) -> str:
    """``run_status`` as a few lines of text for the terminal."""
    if st["running"]:
        state = "running" + (f" (pid {st['pid']})" if st["pid"] else "")
    elif st["finished"]:
        state = "finished"
    else:
        state = "stopped (no process holds the run; rerun the same command to continue)"
    lines = [f"{st['run']}: {state}"] + _process_lines(st)
    for s in st["stages"]:
        text = f"  stage {s['stage']}/{len(st['stages'])} {s['task']}: {s['state']}"
        if s["state"] == "training":
            text += f", step {s['step']} of {s['of'] or '?'}"
            text += f", newest checkpoint at step {s['checkpoint']}" if s["checkpoint"] else ", no checkpoint yet"
        lines.append(text)
    if st["last_loss"]:
        ll = st["last_loss"]
        lines.append(f"  last loss {ll['loss']:.4f} (stage {ll['stage']} {ll['task']}, step {ll['step']})")
    result = st.get("result")
    if st["matrix"]:
        width = max(len(t) for t in st["tasks"] + ["zero-shot"])
        done = "matrix" if st["finished"] else "matrix so far"
        lines.append(f"  {done} (rows: after stage; columns: " + ", ".join(st["tasks"]) + ")")
        rows = [(t, row) for t, row in zip(st["tasks"], st["matrix"])]
        if result and result.get("zero_shot") is not None:
            rows.insert(0, ("zero-shot", result["zero_shot"]))
        for label, row in rows:
            cells = " ".join(f"{v:6.1f}" if v is not None else "     -" for v in row)
            lines.append(f"  {label:>{width}} {cells}")
    if result:
        lines.append("  " + "  ".join(f"{k.upper()} {result[k]:.2f}" if result.get(k) is not None else f"{k.upper()} -"
                                      for k in ("maa", "bwt", "acc")))
        if result.get("report"):
            lines.append(f"  report: {result['report']}")
    return "\n".join(lines)


def sweep_status(sweep_dir: str | os.PathLike) -> dict:
    """A ``--launcher slurm`` sweep folder's runs (from its ``jobs.json``): each run's job id, attempts, job
    state (asked from the cluster when submitit is installed, else the one last recorded) and stage."""
    sweep_dir = Path(sweep_dir)
    jobs = json.loads((sweep_dir / "jobs.json").read_text(encoding="utf-8"))
    runs = []
    for name, entry in jobs.items():
        run_dir = sweep_dir / name
        row = {"run": name, "job_id": entry.get("job_id"), "attempts": entry.get("attempts"),
               "state": entry.get("state"), "live": False, "stage": None, "finished": False}
        if (run_dir / "matrix.json").is_file() and (run_dir / "report.md").is_file():
            row.update(state="COMPLETED", finished=True)
        else:
            try:
                from coin.engine.slurm import job_state

                row["state"] = job_state(str(entry["job_id"]), Path(entry.get("folder") or sweep_dir / "submitit"),
                                         entry.get("cluster", "slurm"))
                row["live"] = True
            except Exception:  # no submitit or no sacct here: the state last recorded
                pass
        if (run_dir / "config.yaml").is_file():
            st = run_status(run_dir)
            done = sum(s["state"] == "done" for s in st["stages"])
            cur = st["current"]
            row["stage"] = {"done": done, "of": len(st["stages"]),
                            "current": None if cur is None else {k: cur.get(k) for k in ("stage", "task", "state")}}
        runs.append(row)
    return {"sweep": str(sweep_dir), "runs": runs,
            "report": str(sweep_dir / "report" / "report.md") if (sweep_dir / "report" / "report.md").is_file() else None}


def format_sweep_status(st: dict) -> str:
    """``sweep_status`` as one line per run."""
    lines = [f"{st['sweep']}: {sum(r['finished'] for r in st['runs'])} of {len(st['runs'])} runs finished"]
    width = max((len(r["run"]) for r in st["runs"]), default=0)
    for r in st["runs"]:
        state = (r["state"] or "?") + ("" if r["live"] or r["finished"] else " (last recorded)")
        text = f"  {r['run']:<{width}}  job {r['job_id']} (attempt {r['attempts']}): {state}"
        s = r["stage"]
        if s is None:
            text += ", not started"
        elif not r["finished"]:
            text += f", {s['done']} of {s['of']} stages done"
            if s["current"]:
                c = s["current"]
                text += f", stage {c['stage']} {c['task']} {c['state']}"
        lines.append(text)
    lines.append(f"  comparison report: {st['report']}" if st["report"] else
                 "  no comparison report yet: the sweep's command writes it once every run has finished")
    return "\n".join(lines)
