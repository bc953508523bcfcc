"""A sweep: configs x seeds, each a resumable run, then one comparison report.

``coin sweep configs/synth/*.yaml --seeds 0 1 2 --out runs/sweep`` runs every config with
every seed into ``runs/sweep/<config>-s<seed>/`` (a finished run is skipped, an unfinished
one continues) and writes ``runs/sweep/report/`` with the comparison table (mean ± std over
seeds) sorted by MAA.

``--jobs N`` runs N of them at a time, each a ``coin run`` process with ``cores / N`` threads
(its output in ``runs/sweep/logs/<run>.log``). Small models use a many-core CPU better that
way than with all threads on one run. The caches (CoIN-Synth, the tiny base) are filled
first, once, so the processes do not each build them.

``--reuse runs/methods`` lets a sweep take a finished run from another sweep instead of running
it again, when the two differ only in what names a run (``name``, telemetry, the operational keys)
and were made with the same thread count and one process: a study's baseline point (rank 32,
volume 1.0, the paper order...) is the method table's sequential-LoRA run. The folder is copied,
its config rewritten under the new name, and the run then writes its matrix and report from
the copied stages (no training, no generation), first in the queue; ``reused-from.json`` names the
source, relative to the run's folder.

``--data-seeds`` also varies CoIN-Synth's data: each run sets ``data.synth.seed`` to its seed, so the
seeds' spread covers the test set's sampling error as well as training (by default every run reads the
data of the config's ``data.synth.seed``). The comparison says which its ± covers.

``--launcher slurm`` makes each run a Slurm job through submitit (``coin.engine.slurm``): the job ids
in ``runs/sweep/jobs.json``, the same command again resubmits the failed ones and leaves the running
ones alone, and the report is written once every run has finished.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from coin.config_load import load_config
from coin.errors import SweepError


def _finished(run_dir: Path) -> bool:
    return (run_dir / "matrix.json").is_file() and (run_dir / "report.md").is_file()


def _per_run_threads(jobs: int, threads: int | None) -> int:
    if jobs > 1:
        return threads or max(1, (os.cpu_count() or 1) // jobs)
    import torch  # one at a time, the runs are in this process: its thread count (the CLI sets --threads)

    return torch.get_num_threads()


def _same_run(old: dict, new: dict) -> bool:
    """Whether two resolved configs give the same numbers: equal apart from naming, telemetry and
    the operational keys."""
    from coin.engine.run_folder import OPERATIONAL_KEYS, _diff_keys

    keys = [d.split(":", 1)[0] for d in _diff_keys(old, new)]
    return all(k in OPERATIONAL_KEYS or k == "name" or k.startswith("log.") for k in keys)


def _launches(run_dir: Path) -> list[dict]:
    path = run_dir / "env-history.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return [json.loads(line) for line in lines if line.strip()]


def find_reusable(cfg, threads: int, sources: list[Path], log=print) -> Path | None:
    """A finished run folder under ``sources`` made from the same config (bar its name) with
    ``threads`` threads in one process at every launch, or None."""
    from coin.config_load import upgrade
    from coin.config import read_yaml_mapping

    want = cfg.to_dict()
    for root in sources:
        for cand in sorted(p for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []:
            if not (_finished(cand) and (cand / "config.yaml").is_file()):
                continue
            launches = _launches(cand)
            if not launches or any(e.get("threads") != threads or e.get("processes", 1) != 1 for e in launches):
                continue
            try:
                old = upgrade(read_yaml_mapping(cand / "config.yaml", "run folder config"))
            except Exception as e:  # a damaged folder is not a source: say so, and look further
                log(f"  not reusable: {cand} ({e})")
                continue
            if _same_run(old, want):
                return cand
    return None


def reused_from(src: Path, run_dir: Path, commit: str | None) -> dict:
    """``reused-from.json``: the source run's folder relative to the run that reuses it (``../../methods/lora-s0``),
    so the record holds no machine's paths and still points at the source once both trees are copied side by
    side (``coin export runs/`` into ``results/``)."""
    return {"source": os.path.relpath(src.resolve(), run_dir.resolve()), "source_run": src.name,
            "source_commit": commit}


def _reuse(plans: list, reuse: list[Path], threads: int, log) -> None:
    """Copy each not-yet-started plan's twin from ``reuse`` into its folder, ready for its matrix to be written."""
    from coin.config import dump_config
    from coin.io import atomic_write_json, atomic_write_text

    for _, _, cfg, run_dir in plans:
        if run_dir.exists():
            continue  # finished or started here: it continues as it is
        src = find_reusable(cfg, threads, reuse, log)
        if src is None:
            continue
        tmp = run_dir.with_name(run_dir.name + ".reusing")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("*.lock", "lock"))
        for name in ("matrix.json", "report.md", "report.html"):  # rebuilt under this run's name
            (tmp / name).unlink(missing_ok=True)
        atomic_write_text(tmp / "config.yaml", dump_config(cfg))
        env = _launches(src)
        atomic_write_json(tmp / "reused-from.json", reused_from(src, run_dir, env[0].get("coin_commit") if env else None))
        tmp.rename(run_dir)
        log(f"reused   {run_dir.name} from {src}")


def sweep(configs: list[str], seeds: list[int], out: str | Path, overrides: list[str] | None = None,
          progress: bool = True, log=print, jobs: int = 1, threads: int | None = None,
          reuse: list[str | Path] | None = None, finish: Callable[[Path], object] | None = None,
          launcher: str = "local", slurm=None, cluster: str = "slurm", data_seeds: bool = False) -> list[Path]:
    """Run every (config, seed) pair; returns the run folders, in order (``coin.api.sweep`` and ``coin sweep``
    then write the comparison report). ``finish(run_dir)`` ends each run done in this process (the run's
    report, from ``coin.api.sweep``); a run in its own process (``jobs`` > 1) is ``coin run``, which writes it.

    ``launcher="slurm"``: each run is a Slurm job (``coin.engine.slurm``; ``slurm`` its ``SlurmOptions``,
    ``cluster`` submitit's executor kind, ``"local"`` in tests); with ``slurm.wait`` false the runs may
    still be in flight when this returns. ``data_seeds``: each run's ``data.synth.seed`` is its seed (CoIN-Synth
    configs only)."""
    if launcher not in ("local", "slurm"):
        raise SweepError(f"--launcher must be local or slurm, got {launcher!r}")

    out = Path(out)
    overrides = list(overrides or [])
    plans = []  # (config file, seed, resolved config, run folder)
    for path in configs:  # validate everything before the first run starts
        for seed in seeds:
            cfg = load_config(path, overrides + _seed_words(seed, data_seeds))
            plans.append((path, seed, cfg, out / f"{Path(path).stem}-s{seed}"))
    if data_seeds:
        _check_data_seeds(plans, overrides)
    if reuse:
        _reuse(plans, [Path(r) for r in reuse], _per_run_threads(jobs, threads), log)
    # the reused runs first: they only write their matrix from the copied stages (seconds), so they read as
    # finished to `coin status` and `coin export` from the start instead of when the queue reaches them
    queue = sorted(plans, key=lambda p: not _reused_pending(p[3]))
    if launcher == "slurm":
        from coin.engine.slurm import SlurmOptions, launch

        launch(queue, out, slurm or SlurmOptions(), threads, log, cluster=cluster, finished=_finished,
               warm=_warm_caches)
    elif jobs > 1:
        _parallel(queue, out, overrides, jobs, threads, log, data_seeds)
    else:
        from coin.engine.run import run

        for k, (_, _, cfg, run_dir) in enumerate(queue, 1):
            log(f"[{k}/{len(queue)}] {run_dir.name}")
            if _finished(run_dir):
                log("  finished earlier, skipped")
            else:
                run(cfg, run_dir, progress=progress, log=lambda m: log("  " + m), finish=finish)
    return [p[3] for p in plans]


def _reused_pending(run_dir: Path) -> bool:
    """A run copied by ``--reuse`` whose matrix is not written yet."""
    return (run_dir / "reused-from.json").is_file() and not (run_dir / "matrix.json").is_file()


def _seed_words(seed: int, data_seeds: bool) -> list[str]:
    """The overrides that make a plan's run seed ``seed`` (and its CoIN-Synth data, with ``data_seeds``)."""
    return [f"seed={seed}"] + ([f"data.synth.seed={seed}"] if data_seeds else [])


def _check_data_seeds(plans: list, overrides: list[str]) -> None:
    """``--data-seeds`` needs generated data (a real benchmark's test set is its files) and owns data.synth.seed."""
    from coin.errors import ConfigError

    problems = [f"--data-seeds sets data.synth.seed to each run's seed: drop the override {o!r}"
                for o in overrides if o.split("=", 1)[0].strip() == "data.synth.seed"]
    first = {path: cfg for path, _, cfg, _ in reversed(plans)}  # each config file's first plan
    problems += [f"--data-seeds varies CoIN-Synth's generated data; {path} reads data.benchmark "
                 f"{cfg.data.benchmark!r}, whose test set is its files" for path, cfg in first.items()
                 if cfg.data.benchmark != "synth"]
    if problems:
        raise ConfigError(problems)


def _warm_caches(plans: list, log) -> None:
    """Build each distinct CoIN-Synth once and let each backbone prepare (the tiny one pretrains its
    cached base), here, before the processes start."""
    import json

    from coin.benchmarks.load import load_benchmark
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


def _parallel(plans: list, out: Path, overrides: list[str], jobs: int, threads: int | None, log,
              data_seeds: bool = False) -> None:
    todo = [p for p in plans if not _finished(p[3])]
    log(f"{len(plans) - len(todo)} of {len(plans)} runs finished earlier; {len(todo)} to run, {jobs} at a time")
    if not todo:
        return
    per = _per_run_threads(jobs, threads)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(jobs * per)  # no run has started: the caches get the sweep's whole CPU budget
    try:
        _warm_caches(todo, log)
    finally:
        torch.set_num_threads(before)
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
                for o in overrides + _seed_words(seed, data_seeds)[1:]:
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
