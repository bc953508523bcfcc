"""``coin report``: one run's report, or a comparison of several runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_report(args: argparse.Namespace) -> int:
    from coin.report import write_comparison, write_report

    if len(args.runs) == 1 and not args.out:
        path = write_report(args.runs[0])
    else:
        path = write_comparison(args.runs, args.out or "report")
    print(f"report written: {path} (and {Path(path).with_suffix('.html')})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``report``."""
    rep = sub.add_parser("report", help="write the report of one run, or a comparison of several")
    rep.add_argument("runs", nargs="+")
    rep.add_argument("--out", help="folder for a comparison report")
    rep.set_defaults(func=_cmd_report)
