"""``coin run``, ``coin sweep`` and ``coin status``: run experiments and look at a run folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from coin.cli.flags import add_set, overrides, threads



def _progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: not with --quiet, and only on a terminal, so a log file (a batch job's,
    ``coin sweep > sweep.log``) holds no carriage-return lines; transformers' own bars follow."""
    progress = not args.quiet and sys.stderr.isatty()
    if not progress:  # transformers' own bars (loading and saving weights) too
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    return progress

def _cmd_run(args: argparse.Namespace) -> int:
    from coin.api import run
    from coin.config_load import load_config
    from coin.report import summary_table

    cfg = load_config(args.config, overrides(args))
    out = Path(args.out) if args.out else Path("runs") / (cfg.name or (Path(args.config).stem if args.config else "default"))
    if args.dry_run:
        from coin.engine.plan import describe

        text, missing = describe(cfg, out)
        print(text)
        return 1 if missing else 0
    from coin.engine import dist

    dist.exit_with_launcher()  # under accelerate launch / torchrun: stop with the launcher, from the data check on
    threads(args.threads)
    progress = _progress(args)

    def log(message: str) -> None:
        if not args.quiet or message.startswith("warning"):
            print(message, file=sys.stderr, flush=True)

    result = run(cfg, out, progress=progress, log=log, echo=lambda m: print(m, flush=True), fresh=args.fresh)
    if not dist.is_main():
        return 0
    if not args.quiet:
        print(f"\n{summary_table(result)}\n")
    print(f"report: {out / 'report.md'}  (and report.html, heatmap.png, loss.png)")
    return 0


def _split_sweep_words(items: list[str]) -> tuple[list[str], list[str]]:
    """``coin sweep``'s positional words: config files, and overrides (``KEY=VALUE``, ``~KEY``) that are not files."""
    from coin.config import ConfigError

    configs, words = [], []
    for item in items:
        is_word = not Path(item).is_file() and ("=" in item or item.startswith("~"))
        (words if is_word else configs).append(item)
    if not configs:
        raise ConfigError(["coin sweep: give at least one config file"])
    return configs, words


def _cmd_sweep(args: argparse.Namespace) -> int:
    from coin.config import ConfigError
    from coin.api import sweep

    if args.jobs < 1:
        raise ConfigError([f"--jobs must be >= 1, got {args.jobs}"])
    extra = {}
    if args.launcher == "slurm":
        from coin.engine.slurm import SlurmOptions, parse_slurm_args

        opts = SlurmOptions(partition=args.partition, gpus_per_run=1 if args.gpus_per_run is None else args.gpus_per_run,
                            nodes=1 if args.nodes is None else args.nodes,
                            time=args.time, account=args.account, slurm_args=parse_slurm_args(args.slurm_arg),
                            folder=args.submitit_folder, wait=not args.no_wait)
        opts.validate()
        if args.jobs > 1:
            raise ConfigError(["--jobs is for --launcher local (under slurm every run is a job of its own)"])
        extra = {"launcher": "slurm", "slurm": opts}
    else:
        given = [flag for flag, value in (("--partition", args.partition), ("--gpus-per-run", args.gpus_per_run),
                                          ("--nodes", args.nodes), ("--time", args.time), ("--account", args.account),
                                          ("--slurm-arg", args.slurm_arg), ("--submitit-folder", args.submitit_folder),
                                          ("--no-wait", args.no_wait or None)) if value is not None]
        if given:
            raise ConfigError([f"{flag} needs --launcher slurm" for flag in given])
    configs, words = _split_sweep_words(args.configs)
    threads(args.threads)
    path = sweep(configs, args.seeds, args.out, [*args.set, *words], progress=_progress(args), jobs=args.jobs,
                 threads=args.threads, reuse=args.reuse, data_seeds=args.data_seeds, allow_diff=args.allow_diff,
                 **extra)
    if path is None:
        print(f"jobs submitted: {Path(args.out) / 'jobs.json'}; `coin status {args.out}` shows them, and the same "
              "command writes the comparison report once every run has finished")
        return 0
    print(f"comparison report: {path} (and {Path(path).with_suffix('.html')})")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from coin.engine.status import format_status, format_sweep_status, run_status, sweep_status

    if (Path(args.run) / "jobs.json").is_file() and not (Path(args.run) / "config.yaml").is_file():
        st = sweep_status(args.run)
        print(json.dumps(st, indent=1) if args.json else format_sweep_status(st))
        return 0
    st = run_status(args.run)
    print(json.dumps(st, indent=1) if args.json else format_status(st))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``run``, ``sweep`` and ``status``."""
    r = sub.add_parser("run", help="run one continual-tuning experiment (default: CoIN-Synth, tiny model)")
    r.add_argument("--config", help="YAML config (default: the embedded CoIN-Synth config)")
    r.add_argument("--out", help="run folder (default: runs/<name>); an existing run there is continued")
    add_set(r, "override a config key, e.g. train.lr=1e-4")
    r.add_argument("--seed", type=int, default=None, help="the run's seed (the same as seed=N)")
    r.add_argument("--fresh", action="store_true", help="empty the run folder first and start over (only a coin run folder, once no other run holds it)")
    r.add_argument("--dry-run", action="store_true", help="print the plan and the files it reads (missing ones marked); load nothing")
    r.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    r.add_argument("--quiet", action="store_true",
                   help="one line per stage (and warnings); without it, progress bars show on a terminal only")
    r.set_defaults(func=_cmd_run)

    sw = sub.add_parser("sweep", help="run configs x seeds and write one comparison report")
    sw.add_argument("configs", nargs="+", help="YAML configs")
    sw.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="the runs' seeds (training: initialisation, batch order, the data.volume subsample)")
    sw.add_argument("--data-seeds", action="store_true",
                    help="draw CoIN-Synth's data anew for each seed too: each run sets data.synth.seed to its seed, "
                         "so the comparison's mean ± std covers the test set's sampling as well as training (without "
                         "it every run reads the data of the config's data.synth.seed, 0 by default, and the report "
                         "says its ± is over training seeds only); CoIN-Synth configs only")
    sw.add_argument("--allow-diff", nargs="+", default=[], metavar="KEY",
                    help="config keys the comparison report may find differing between configs besides the method "
                         "and one studied variable, e.g. eval.zero_shot (see coin report --allow-diff)")
    sw.add_argument("--out", default="runs/sweep")
    add_set(sw, "override a key in every config (KEY=VALUE and ~KEY words among the configs do the same)",
            positional=False)
    sw.add_argument("--threads", type=int, default=None, help="torch threads per run (with --jobs: default cores / jobs)")
    sw.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process (default 1)")
    sw.add_argument("--reuse", nargs="+", default=None, metavar="DIR",
                    help="sweep folders whose finished runs may stand in for a run here when the configs differ "
                         "only in name (same thread count, one process); copied, then assembled under the new name")
    sw.add_argument("--quiet", action="store_true")
    sl = sw.add_argument_group("Slurm (--launcher slurm; needs submitit: pip install 'coin-cl[slurm]'; "
                               "see docs/distributed.md, Sweeps on a Slurm cluster)")
    sl.add_argument("--launcher", choices=["local", "slurm"], default="local",
                    help="local: the runs on this machine (default); slurm: each run one Slurm job, via submitit")
    sl.add_argument("--partition", default=None, help="sbatch --partition")
    sl.add_argument("--gpus-per-run", type=int, default=None,
                    help="GPUs of each run (default 1; > 1: the job runs accelerate launch --num_processes N)")
    sl.add_argument("--nodes", type=int, default=None, help="nodes of each run (sbatch --nodes; default 1)")
    sl.add_argument("--time", type=int, default=None, help="time limit of each job in minutes (sbatch --time)")
    sl.add_argument("--account", default=None, help="sbatch --account")
    sl.add_argument("--slurm-arg", action="append", default=None, metavar="KEY=VALUE",
                    help="a further sbatch argument, e.g. qos=high or constraint=a100 (repeatable)")
    sl.add_argument("--submitit-folder", default=None, help="submitit's folder: job scripts and logs "
                                                            "(default OUT/submitit)")
    sl.add_argument("--no-wait", action="store_true",
                    help="submit and return; the same command later writes the report once all runs are done")
    sw.set_defaults(func=_cmd_sweep)

    st = sub.add_parser("status", help="a run's state: stages done, the one in progress, matrix so far, last loss, lock")
    st.add_argument("run", help="run folder (finished, running or killed), or a --launcher slurm sweep folder "
                                "(each run's job state, job id and stage)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_cmd_status)
