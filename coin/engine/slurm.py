"""``coin sweep --launcher slurm``: each (config, seed) run as one Slurm job, through submitit.

Every run's resolved config is written to ``<out>/configs/<run>.yaml`` and one job runs
``coin run --config <that> --out <out>/<run>`` (under ``accelerate launch`` with ``--gpus-per-run`` > 1).
``<out>/jobs.json`` records each run's job id, last known state and attempts. Running the same command
again skips the finished runs, leaves the pending and running jobs alone (their state asked from the
cluster) and submits again those whose job failed, was cancelled, timed out or was preempted: the run
folder continues where it stopped. By default the command waits for the jobs; ``--no-wait`` submits and
returns, and a later run of the same command writes the comparison report once every run is done.

submitit is optional (``pip install 'coin-cl[slurm]'``); this module is imported only for ``--launcher slurm``.
The executor's kind is a parameter (``cluster``): ``"slurm"`` on a cluster, ``"local"`` in the tests.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from coin.errors import SweepError

ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
          "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "READY"}
POLL_S = 30.0  # how often a waiting sweep asks the cluster for its jobs' states
UNKNOWN_GRACE_S = 600  # a job just submitted may not be in sacct yet: UNKNOWN counts as active this long


@dataclass
class SlurmOptions:
    """What each run's job asks of the cluster (``coin sweep --launcher slurm`` flags)."""

    partition: str | None = None
    gpus_per_run: int = 1
    nodes: int = 1
    time: int | None = None  # minutes
    account: str | None = None
    slurm_args: dict = field(default_factory=dict)  # extra sbatch arguments
    folder: str | Path | None = None  # submitit's folder (default <out>/submitit)
    wait: bool = True

    def validate(self) -> None:
        from coin.config import ConfigError

        errors = []
        if not isinstance(self.gpus_per_run, int) or self.gpus_per_run < 0:
            errors.append(f"--gpus-per-run must be >= 0, got {self.gpus_per_run}")
        if not isinstance(self.nodes, int) or self.nodes < 1:
            errors.append(f"--nodes must be >= 1, got {self.nodes}")
        elif isinstance(self.gpus_per_run, int) and self.gpus_per_run > 0 and self.gpus_per_run % self.nodes:
            errors.append(f"--gpus-per-run ({self.gpus_per_run}) must be a multiple of --nodes ({self.nodes}): "
                          "each node gets the same number of GPUs")
        if self.time is not None and (not isinstance(self.time, int) or self.time < 1):
            errors.append(f"--time is in minutes and must be >= 1, got {self.time}")
        for name, value in (("--partition", self.partition), ("--account", self.account)):
            if value is not None and (not str(value).strip() or any(c.isspace() for c in str(value))):
                errors.append(f"{name} must be a name without spaces, got {value!r}")
        for key in self.slurm_args:
            if not key or any(c.isspace() for c in key) or key.startswith("-"):
                errors.append(f"--slurm-arg: {key!r} is not an sbatch option name (KEY=VALUE, e.g. qos=high)")
        if errors:
            raise ConfigError(errors)


def parse_slurm_args(items: list[str] | None) -> dict:
    """``--slurm-arg KEY=VALUE`` items as a dict (``slurm_additional_parameters``)."""
    from coin.config import ConfigError

    out, errors = {}, []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            errors.append(f"--slurm-arg expects KEY=VALUE (e.g. qos=high), got {item!r}")
            continue
        out[key.strip()] = value
    if errors:
        raise ConfigError(errors)
    return out


def require_submitit():
    try:
        import submitit
    except ImportError:
        raise SweepError("--launcher slurm needs submitit: pip install 'submitit>=1.5' "
                         "(or pip install -e '.[slurm]')") from None
    return submitit


def run_command(config: str | Path, run_dir: str | Path, gpus: int = 1, nodes: int = 1, threads: int | None = None,
                machine_rank: int = 0, main_ip: str | None = None, main_port: int = 29500) -> list[str]:
    """The command a run's job runs: ``coin run``, under ``accelerate launch`` for more than one GPU."""
    tail = ["run", "--config", str(config), "--out", str(run_dir), "--quiet"]
    if threads:
        tail += ["--threads", str(threads)]
    if gpus <= 1 and nodes <= 1:
        return [sys.executable, "-m", "coin.cli", *tail]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(gpus)]
    if nodes > 1:
        cmd += ["--num_machines", str(nodes), "--machine_rank", str(machine_rank),
                "--main_process_ip", str(main_ip), "--main_process_port", str(main_port)]
    return [*cmd, "-m", "coin.cli", *tail]


class RunJob:
    """What a job executes (pickled by submitit): the run's command as a subprocess; fails with it."""

    def __init__(self, config: str, run_dir: str, gpus: int, nodes: int, threads: int | None):
        self.config, self.run_dir, self.gpus, self.nodes, self.threads = config, run_dir, gpus, nodes, threads

    def command(self) -> list[str]:
        rank, ip = 0, None
        if self.nodes > 1:  # one task per node: this node's rank and the first node's address
            import submitit

            env = submitit.JobEnvironment()
            rank = env.node
            ip = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
                                capture_output=True, text=True, check=True).stdout.split()[0]
        return run_command(self.config, self.run_dir, self.gpus, self.nodes, self.threads, rank, ip)

    def __call__(self) -> str:
        cmd = self.command()
        print(" ".join(cmd), flush=True)
        code = subprocess.run(cmd).returncode
        if code != 0:
            raise RuntimeError(f"coin run exited with {code} ({self.run_dir})")
        return self.run_dir


def make_executor(opts: SlurmOptions, folder: Path, cluster: str = "slurm"):
    """A submitit executor for the runs' jobs (``cluster="local"``: processes on this machine, for tests)."""
    submitit = require_submitit()
    try:
        ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    except RuntimeError as e:  # no srun on this machine
        raise SweepError(f"--launcher slurm: {e} (run coin sweep on a machine that submits Slurm jobs)") from None
    per_node = opts.gpus_per_run // opts.nodes if opts.gpus_per_run else 0
    params = {"timeout_min": opts.time or (24 * 60 if cluster == "local" else None), "nodes": opts.nodes,
              "tasks_per_node": 1}
    if cluster != "local":
        params["gpus_per_node"] = per_node
    params = {k: v for k, v in params.items() if v is not None}
    if cluster == "slurm":
        params.update(slurm_partition=opts.partition, slurm_account=opts.account,
                      slurm_additional_parameters=dict(opts.slurm_args) or None)
        params = {k: v for k, v in params.items() if v is not None}
    if cluster == "local":
        params.pop("nodes")
    ex.update_parameters(**params)
    return ex


def job_state(job_id: str, folder: Path, cluster: str = "slurm") -> str:
    """The job's state in Slurm's words (first word: ``CANCELLED by N`` is ``CANCELLED``)."""
    submitit = require_submitit()
    if cluster == "local":  # a local job's id is its controller's pid; its outcome is the result pickle
        if job_id.isdigit() and _pid_alive(int(job_id)):
            return "RUNNING"
        result = submitit.core.utils.JobPaths(folder, job_id, 0).result_pickle
        try:
            with open(result, "rb") as f:
                outcome = pickle.load(f)[0]
        except (OSError, EOFError, pickle.UnpicklingError, IndexError, TypeError):
            return "FAILED"
        return "COMPLETED" if outcome == "success" else "FAILED"
    state = submitit.SlurmJob(folder, job_id).get_info(mode="force").get("State") or "UNKNOWN"
    return str(state).split()[0].upper()


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` lives on this host (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc here
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _active(entry: dict, state: str) -> bool:
    if state in ACTIVE:
        return True
    return state == "UNKNOWN" and time.time() - entry.get("submitted", 0) < UNKNOWN_GRACE_S


def read_jobs(out: Path) -> dict:
    path = Path(out) / "jobs.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def launch(plans: list, out: Path, opts: SlurmOptions, threads: int | None = None, log=print,
           cluster: str = "slurm", finished=None, warm=None) -> bool:
    """Submit the runs of ``plans`` ((config file, seed, resolved config, run folder)) not finished nor
    in flight; with ``opts.wait``, wait for them all. Returns whether every run has finished; raises
    ``SweepError`` naming the runs whose job failed (after waiting). ``finished(run_dir)`` tells a finished run
    folder and ``warm(plans, log)`` fills the caches before the first submission (``coin.engine.sweep`` passes
    its own: this module does not import it back)."""
    from coin.config import dump_config
    from coin.io import atomic_write_json, atomic_write_text

    _finished = finished or (lambda d: (d / "matrix.json").is_file() and (d / "report.md").is_file())

    opts.validate()
    require_submitit()
    out = Path(out)
    folder = Path(opts.folder) if opts.folder else out / "submitit"
    jobs = read_jobs(out)
    save = lambda: atomic_write_json(out / "jobs.json", jobs)  # noqa: E731
    todo, waiting = [], []
    for _, _, cfg, run_dir in plans:
        name, entry = run_dir.name, jobs.get(run_dir.name)
        if _finished(run_dir):
            log(f"finished {name} (skipped)")
            if entry is not None and entry.get("state") != "COMPLETED":
                entry["state"] = "COMPLETED"
            continue
        if entry is not None:
            state = job_state(entry["job_id"], Path(entry.get("folder") or folder), cluster)
            entry["state"] = state
            if _active(entry, state):
                log(f"in flight {name}: job {entry['job_id']} {state}, left alone")
                waiting.append(name)
                continue
            log(f"job {entry['job_id']} of {name} ended {state}: submitting it again (the run continues)")
        todo.append((cfg, run_dir))
    if todo:
        executor = make_executor(opts, folder, cluster)  # no Slurm here: said before the caches are filled
        if warm is not None:
            warm([(None, None, cfg, d) for cfg, d in todo], log)
        for cfg, run_dir in todo:
            config = out / "configs" / f"{run_dir.name}.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(config, dump_config(cfg))
            executor.update_parameters(name=f"coin-{run_dir.name}")
            job = executor.submit(RunJob(str(config.resolve()), str(run_dir.resolve()), opts.gpus_per_run,
                                         opts.nodes, threads))
            old = jobs.get(run_dir.name) or {}
            jobs[run_dir.name] = {"job_id": str(job.job_id), "state": "PENDING", "cluster": cluster,
                                  "folder": str(folder),
                                  "attempts": old.get("attempts", 0) + 1, "submitted": time.time(),
                                  "previous_job_ids": old.get("previous_job_ids", []) +
                                  ([old["job_id"]] if old.get("job_id") else [])}
            save()  # after each submission: an interrupted sweep still knows its jobs
            waiting.append(run_dir.name)
            log(f"submitted {run_dir.name}: job {job.job_id} (attempt {jobs[run_dir.name]['attempts']})")
    save()
    if not opts.wait:
        if waiting:
            log(f"{len(waiting)} job(s) in flight; rerun the same command to wait or write the report "
                f"(coin status {out})")
        return not waiting and all(_finished(p[3]) for p in plans)
    failed = []
    while waiting:
        time.sleep(POLL_S)
        for name in list(waiting):
            entry = jobs[name]
            state = job_state(entry["job_id"], Path(entry.get("folder") or folder), cluster)
            if _active(entry, state):
                if entry.get("state") != state:
                    entry["state"] = state
                    save()
                continue
            waiting.remove(name)
            entry["state"] = "COMPLETED" if state == "COMPLETED" and _finished(out / name) else \
                ("FAILED" if state == "COMPLETED" else state)
            save()
            if entry["state"] == "COMPLETED":
                log(f"finished {name}")
            else:
                failed.append(name)
                log(f"FAILED   {name} (job {entry['job_id']} {state}; see {folder})")
    if failed:
        raise SweepError(f"{len(failed)} run(s) failed: {', '.join(failed)}; job logs in {folder} "
                         "(rerun the same command to submit them again)")
    return all(_finished(p[3]) for p in plans)
