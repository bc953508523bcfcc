"""``coin report``: one run's report, or a comparison of several runs; ``coin table``: a sweep's method table;
``coin findings``: CoIN's findings measured; ``coin export``: keep a sweep's small files."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_report(args: argparse.Namespace) -> int:
    from coin.config import read_yaml_mapping
    from coin.config_load import UntrustedPlugins, trusted_plugins
    from coin.registry import UnknownNameError
    from coin.report import write_comparison, write_report

    configs = [Path(r) / "config.yaml" for r in args.runs]
    if args.trust_plugins:  # only on request: a run folder's code never runs by opening it
        for path in configs:
            if path.is_file():
                trusted_plugins(read_yaml_mapping(path, "run folder config"), path, True)
    try:
        return _write(args, write_comparison, write_report)
    except UnknownNameError as e:  # an entry only the run's plugins register
        named = [str(p) for p in configs if p.is_file() and read_yaml_mapping(p, "run folder config").get("plugins")]
        if not named or args.trust_plugins:
            raise
        raise UntrustedPlugins(f"{e}; it may be registered by the plugins that {', '.join(named)} names: "
                               "pass --trust-plugins to import them (their code runs)") from None


def _write(args: argparse.Namespace, write_comparison, write_report) -> int:
    if len(args.runs) == 1 and not args.out:
        path = write_report(args.runs[0])
    else:
        path = write_comparison(args.runs, args.out or "report", allow=args.allow_diff)
    print(f"report written: {path} (and {Path(path).with_suffix('.html')})")
    return 0


def _emit(text: str, out: str | None, what: str) -> int:
    """Write a generated Markdown page to ``out`` (atomically), or print it."""
    if out:
        from coin.io import atomic_write_text

        atomic_write_text(out, text)
        print(f"{what} written: {out}")
    else:
        print(text, end="")
    return 0


def _cmd_findings(args: argparse.Namespace) -> int:
    from coin.findings import findings, findings_markdown

    return _emit(findings_markdown(findings(args.methods, args.studies, alpha=args.alpha)), args.out, "findings")


def _cmd_table(args: argparse.Namespace) -> int:
    from coin.report.method_table import method_table

    return _emit(method_table(args.sweep, baseline=args.baseline, alpha=args.alpha, allow=args.allow_diff), args.out,
                 "table")


def _cmd_export(args: argparse.Namespace) -> int:
    from coin.engine.export import export

    done = export(args.src, args.out, seeds=args.seeds)
    print(done.summary(args.out))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``report``, ``table``, ``findings`` and ``export``."""
    rep = sub.add_parser("report", help="write the report of one run, or a comparison of several")
    rep.add_argument("runs", nargs="+")
    rep.add_argument("--out", help="folder for a comparison report")
    rep.add_argument("--allow-diff", nargs="+", default=[], metavar="KEY",
                     help="config keys (or sections) the compared runs may differ in besides their seeds, their method "
                          "and one studied variable, e.g. eval.zero_shot (the zeroshot config's); the report lists "
                          "their values. Without it, runs of other tasks, data or recipe are refused by name")
    rep.add_argument("--trust-plugins", action="store_true",
                     help="import the plugins the runs' config.yaml name (their code runs; never done without this)")
    rep.set_defaults(func=_cmd_report)

    tb = sub.add_parser("table", help="a sweep's method table as Markdown: metrics over seeds, routing accuracy, "
                                      "Welch tests against a baseline, cost")
    tb.add_argument("sweep", nargs="+", help="sweep folders (coin sweep --out) and run folders (a baseline's "
                                             "runs/methods/lora-s*): their <config>-s<seed> runs")
    tb.add_argument("--baseline", help="the configuration the ACC tests compare with (default: the one that runs the "
                                       "sequential method with the default adapter)")
    tb.add_argument("--alpha", type=float, default=0.05, help="significance level of the bold cells (default 0.05)")
    tb.add_argument("--allow-diff", nargs="+", default=[], metavar="KEY",
                    help="config keys (or sections) the configurations may differ in besides their seeds, their method "
                         "and one studied variable (as coin report --allow-diff); the table lists their values")
    tb.add_argument("--out", help="write the Markdown here instead of printing it")
    tb.set_defaults(func=_cmd_table)

    fd = sub.add_parser("findings", help="CoIN's findings measured on the method and study sweeps: paper, ours, test, verdict")
    fd.add_argument("--methods", default="runs/methods", help="the method sweep's folder (its lora-s* runs)")
    fd.add_argument("--studies", default="runs/studies", help="the folder holding one sweep folder per study")
    fd.add_argument("--alpha", type=float, default=0.05, help="significance level of the verdicts (default 0.05)")
    fd.add_argument("--out", help="write the Markdown table here instead of printing it")
    fd.set_defaults(func=_cmd_findings)

    ex = sub.add_parser("export", help="copy the small files of a sweep's finished runs (matrix.json, config.yaml, "
                                       "env.json, routing.json) to a folder to keep, each configuration only once "
                                       "all its seeds are finished",
                        description="The tables and the findings can be written again from the copy (coin table, "
                                    "coin findings); weights, predictions and logs stay behind.")
    ex.add_argument("src", help="a sweep folder (coin sweep --out), or a folder of them (runs/studies)")
    ex.add_argument("--out", required=True, help="the folder to copy into; each run keeps its path below SRC")
    ex.add_argument("--seeds", nargs="+", type=int, metavar="N",
                    help="the seeds every configuration must have finished (default: every seed found in its folder)")
    ex.set_defaults(func=_cmd_export)
