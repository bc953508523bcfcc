"""The ``coin`` command line: thin shells over library functions.

    coin run [--config FILE] [--out DIR] [--set key=value ...]
    coin data synth --out DIR [--seed N] [--n-train N] [--n-test N]
    coin report RUN [RUN ...] [--out DIR]
    coin score --scorer NAME --predictions P.jsonl --ground-truth T.json [--json]
    coin metrics MATRIX.json [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_run(args: argparse.Namespace) -> int:
    from coin.config import load_config
    from coin.engine.run import run
    from coin.report import summary_table

    cfg = load_config(args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / (cfg.name or (Path(args.config).stem if args.config else "default"))
    if args.fresh and out.exists():
        import shutil

        shutil.rmtree(out)
    _threads(args.threads)
    result = run(cfg, out, progress=not args.quiet)
    print()
    print(summary_table(result))
    print(f"\nreport: {out / 'report.md'}  (and report.html, heatmap.png)")
    return 0


def _threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from coin.data.synth import generate

    out = generate(args.out, seed=args.seed, n_train=args.n_train, n_test=args.n_test, n_captions=args.n_captions)
    print(f"CoIN-Synth written to {out}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from coin.report import write_comparison, write_report

    if len(args.runs) == 1 and not args.out:
        path = write_report(args.runs[0])
    else:
        path = write_comparison(args.runs, args.out or "report")
    print(f"report written: {path} (and {Path(path).with_suffix('.html')})")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from coin.eval.normalize import normalize_answer
    from coin.eval.scorers import score_task
    from coin.io import read_json, read_jsonl

    if args.normalize is not None:
        print(normalize_answer(args.normalize))
        return 0
    if not (args.scorer and args.predictions and args.ground_truth):
        raise SystemExit("coin score: --scorer, --predictions and --ground-truth are required (or --normalize TEXT)")
    preds = read_jsonl(args.predictions)
    outputs = {}
    for k, p in enumerate(preds, 1):
        if "question_id" not in p or "text" not in p:
            raise SystemExit(f"{args.predictions}:{k}: a prediction needs 'question_id' and 'text'")
        outputs[str(p["question_id"])] = str(p["text"])
    records = [{**r, "question_id": str(r["question_id"])} for r in read_json(args.ground_truth)]
    result = score_task(args.scorer, outputs, records)
    if args.json:
        print(json.dumps({"score": result.score, "n": result.n, **result.tags}))
    else:
        print(f"score {result.score:.2f} over {result.n} samples")
        for tag, n in sorted(result.tags.items()):
            print(f"  {tag:14s} {n}")
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    from coin import metrics
    from coin.io import read_json

    data = read_json(args.matrix)
    matrix, zero = (data.get("matrix"), data.get("zero_shot")) if isinstance(data, dict) else (data, None)
    summary = metrics.summarize(matrix, zero_shot=zero, bwt_denominator=args.bwt_denominator)
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k:16s} {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coin", description="Continual instruction tuning of multimodal LLMs (CoIN).")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run one continual-tuning experiment (default: CoIN-Synth, tiny model)")
    r.add_argument("--config", help="YAML config (default: the embedded CoIN-Synth config)")
    r.add_argument("--out", help="run folder (default: runs/<name>); an existing run there is continued")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. train.lr=1e-4")
    r.add_argument("--fresh", action="store_true", help="delete the run folder first and start over")
    r.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=_cmd_run)

    d = sub.add_parser("data", help="data tools").add_subparsers(dest="data_command", required=True)
    s = d.add_parser("synth", help="write the CoIN-Synth benchmark")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n-train", type=int, default=400)
    s.add_argument("--n-test", type=int, default=100)
    s.add_argument("--n-captions", type=int, default=0, help="also write N pretraining captions")
    s.set_defaults(func=_cmd_data_synth)

    rep = sub.add_parser("report", help="write the report of one run, or a comparison of several")
    rep.add_argument("runs", nargs="+")
    rep.add_argument("--out", help="folder for a comparison report")
    rep.set_defaults(func=_cmd_report)

    sc = sub.add_parser("score", help="score predictions against a CoIN test file")
    sc.add_argument("--scorer")
    sc.add_argument("--predictions")
    sc.add_argument("--ground-truth")
    sc.add_argument("--json", action="store_true")
    sc.add_argument("--normalize", metavar="TEXT", help="print the normalised form of TEXT and exit")
    sc.set_defaults(func=_cmd_score)

    m = sub.add_parser("metrics", help="MAA, BWT, ACC and more from an accuracy matrix")
    m.add_argument("matrix")
    m.add_argument("--json", action="store_true")
    m.add_argument("--bwt-denominator", choices=["T", "T-1"], default="T")
    m.set_defaults(func=_cmd_metrics)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from coin.config import ConfigError
    from coin.data.coin_json import DataError
    from coin.engine.run import RunFolderError
    from coin.models.vlm import ImageError
    from coin.registry import UnknownNameError

    try:
        return args.func(args)
    except (ConfigError, DataError, RunFolderError, ImageError, UnknownNameError, FileNotFoundError) as e:
        print(f"coin: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
