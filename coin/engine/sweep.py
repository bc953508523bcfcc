"""A sweep: configs x seeds, each a resumable run, then one comparison report.

``coin sweep configs/synth/*.yaml --seeds 0 1 2 --out runs/sweep`` runs every config with
every seed into ``runs/sweep/<config>-s<seed>/`` (a finished run is skipped, an unfinished
one continues) and writes ``runs/sweep/report/`` with the comparison table (mean ± std over
seeds) sorted by MAA.

``--jobs N`` runs N of them at a time, each a ``coin run`` process with ``cores / N`` threads
(its output in ``runs/sweep/logs/<run>.log``). Small models use a many-core CPU better that
way than with all threads on one run. The caches (CoIN-Synth, the tiny base) are filled
first, once, so the processes do not each build them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from coin.configure import load_config


class SweepError(RuntimeError):
    """Some runs of a parallel sweep failed; the message names them and their logs."""


def _finished(run_dir: Path) -> bool:
    return (run_dir / "matrix.json").is_file() and (run_dir / "report.md").is_file()


def sweep(configs: list[str], seeds: list[int], out: str | Path, overrides: list[str] | None = None,
          progress: bool = True, log=print, jobs: int = 1, threads: int | None = None) -> Path:
    """Run every (config, seed) pair and write the comparison report; returns its path."""
    from coin.report import write_comparison

    out = Path(out)
    overrides = list(overrides or [])
    plans = []  # (config file, seed, resolved config, run folder)
    for path in configs:  # validate everything before the first run starts
        for seed in seeds:
            cfg = load_config(path, overrides + [f"seed={seed}"])
            plans.append((path, seed, cfg, out / f"{Path(path).stem}-s{seed}"))
    if jobs > 1:
        _parallel(plans, out, overrides, jobs, threads, log)
    else:
        from coin.engine.run import run

        for k, (_, _, cfg, run_dir) in enumerate(plans, 1):
            log(f"[{k}/{len(plans)}] {run_dir.name}")
            if _finished(run_dir):
                log("  finished earlier, skipped")
            else:
                run(cfg, run_dir, progress=progress, log=lambda m: log("  " + m))
    return write_comparison([p[3] for p in plans], out / "report")


def _warm_caches(plans: list, log) -> None:
    """Build each distinct CoIN-Synth once and let each backbone prepare (the tiny one pretrains its
    cached base), here, before the processes start."""
    import json

    from coin.data.benchmark import load_benchmark
    from coin.models import BACKBONES
    from coin.tasks.orders import resolve_order

    seen = set()
    for _, _, cfg, _ in plans:
        key = json.dumps([cfg.to_dict()["data"], cfg.to_dict()["model"]], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        load_benchmark(cfg.data, resolve_order(cfg.tasks.order), cfg.seed)
        BACKBONES.get(cfg.model.name).prepare(cfg.model, log=lambda m: log("  " + m))


def _parallel(plans: list, out: Path, overrides: list[str], jobs: int, threads: int | None, log) -> None:
    todo = [p for p in plans if not _finished(p[3])]
    log(f"{len(plans) - len(todo)} of {len(plans)} runs finished earlier; {len(todo)} to run, {jobs} at a time")
    if not todo:
        return
    _warm_caches(todo, log)
    per = threads or max(1, (os.cpu_count() or 1) // jobs)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(per)}
    queue, running, failed = list(todo), {}, []
    try:
        while queue or running:
            while queue and len(running) < jobs:
                path, seed, _, run_dir = queue.pop(0)
                cmd = [sys.executable, "-m", "coin.cli", "run", "--config", str(path), "--out", str(run_dir),
                       "--quiet", "--threads", str(per), "--set", f"seed={seed}"]
                for o in overrides:
                    cmd += ["--set", o]
                sink = open(logs / f"{run_dir.name}.log", "a")
                running[subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)] = (run_dir, sink)
                log(f"started  {run_dir.name} ({per} thread{'s' if per > 1 else ''})")
            time.sleep(0.2)
            for proc in [p for p in running if p.poll() is not None]:
                run_dir, sink = running.pop(proc)
                sink.close()
                if proc.returncode == 0:
                    log(f"finished {run_dir.name}")
                else:
                    failed.append(run_dir.name)
                    log(f"FAILED   {run_dir.name} (exit {proc.returncode}; see {logs / (run_dir.name + '.log')})")
    except KeyboardInterrupt:  # each run checkpoints on SIGTERM; the same command resumes them all
        for proc in running:
            proc.terminate()
        for proc in running:
            proc.wait()
        raise
    if failed:
        raise SweepError(f"{len(failed)} run(s) failed: {', '.join(failed)}; logs in {logs}")
