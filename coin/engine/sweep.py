"""A sweep: configs x seeds, each a resumable run, then one comparison report.

``coin sweep configs/synth/*.yaml --seeds 0 1 2 --out runs/sweep`` runs every config with
every seed into ``runs/sweep/<config>-s<seed>/`` (a finished run is skipped, an unfinished
one continues) and writes ``runs/sweep/report/`` with the comparison table (mean ± std over
seeds) sorted by MAA.
"""

from __future__ import annotations

from pathlib import Path

from coin.config import load_config


def sweep(configs: list[str], seeds: list[int], out: str | Path, overrides: list[str] | None = None,
          progress: bool = True, log=print) -> Path:
    """Run every (config, seed) pair and write the comparison report; returns its path."""
    from coin.engine.run import run
    from coin.report import write_comparison

    out = Path(out)
    plans = []
    for path in configs:  # validate everything before the first run starts
        for seed in seeds:
            cfg = load_config(path, list(overrides or []) + [f"seed={seed}"])
            plans.append((cfg, out / f"{Path(path).stem}-s{seed}"))
    run_dirs = []
    for k, (cfg, run_dir) in enumerate(plans, 1):
        log(f"[{k}/{len(plans)}] {run_dir.name}")
        if (run_dir / "matrix.json").is_file() and (run_dir / "report.md").is_file():
            log("  finished earlier, skipped")
        else:
            run(cfg, run_dir, progress=progress, log=lambda m: log("  " + m))
        run_dirs.append(run_dir)
    return write_comparison(run_dirs, out / "report")
