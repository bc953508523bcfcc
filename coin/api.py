"""coin from Python: the commands of the CLI as functions, writing the same files, reports included.

    run(cfg, out)           ``coin run``: train and evaluate, then the run's report
    sweep(configs, seeds)   ``coin sweep``: every (config, seed) run, then the comparison report
    judge(run_dir, cfg)     ``coin judge``: the Reasoning-Capability matrix, then the run's report again

The layers below do one thing each: ``coin.engine`` runs (``coin.engine.run.run`` writes the run
folder and draws nothing), ``coin.report`` draws a finished folder (``write_report``,
``write_comparison``); this module and ``coin.cli`` join them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from coin.config import RunConfig

__all__ = ["judge", "run", "sweep"]


def run(cfg: RunConfig, out: str | os.PathLike, *, report: bool = True, **kwargs: Any) -> dict:
    """Run (or continue) ``cfg`` in ``out`` and write its report; returns ``matrix.json``'s content.
    ``kwargs`` go to ``coin.engine.run.run`` (``progress``, ``log``, ``echo``, ``fresh``)."""
    from coin.engine.run import run as run_experiment
    from coin.report import write_report

    return run_experiment(cfg, out, finish=write_report if report else None, **kwargs)


def sweep(configs: list[str], seeds: list[int], out: str | os.PathLike, overrides: list[str] | None = None,
          allow_diff: tuple[str, ...] = (), **kwargs: Any) -> Path | None:
    """Every (config, seed) run, then the comparison report; returns its path (``<out>/report/report.md``).
    ``kwargs`` go to ``coin.engine.sweep.sweep`` (``progress``, ``log``, ``jobs``, ``threads``, ``reuse``,
    ``data_seeds``, ``launcher``, ``slurm``, ``cluster``); ``allow_diff`` to ``write_comparison`` (``allow``).
    Under ``launcher="slurm"`` without waiting (``slurm.wait`` false) the report waits for every run to finish:
    None while some are in flight (call again later)."""
    from coin.engine.sweep import _finished, sweep as run_sweep
    from coin.report import write_comparison, write_report

    runs = run_sweep(configs, seeds, out, overrides, finish=write_report, **kwargs)
    if not all(_finished(r) for r in runs):
        return None
    return write_comparison(runs, Path(out) / "report", allow=allow_diff)


def judge(run_dir: str | os.PathLike, judge_cfg: Any, *, report: bool = True, **kwargs: Any) -> dict:
    """Grade ``run_dir``'s answers with the judge ``judge_cfg`` and rewrite its report; returns
    ``rc_matrix.json``. ``kwargs`` go to ``coin.engine.judging.judge_run``."""
    from coin.engine.judging import judge_run
    from coin.report import write_report

    return judge_run(run_dir, judge_cfg, finish=write_report if report else None, **kwargs)
