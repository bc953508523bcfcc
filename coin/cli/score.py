"""``coin score`` and ``coin metrics``: score predictions and summarise an accuracy matrix, from any tool's files."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_score(args: argparse.Namespace) -> int:
    from coin.scoring.normalize import get_normalizer
    from coin.tasks.protocol_sets import COLUMNS, missing_ten_answers, resolve, task_protocols
    from coin.scoring.scorers import SCORERS, score_task
    from coin.io import read_json, read_jsonl

    if args.card:
        from coin.tasks.protocol_sets import format_card

        print("protocol card (per task: the rule, scorer, normaliser, answers; then each deliberate difference "
              "from the original CoIN code):\n" + format_card())
        return 0
    if args.normalize is not None:
        print(get_normalizer(args.normalizer or "vqa")(args.normalize))
        return 0
    if not (args.predictions and args.ground_truth) or not (args.task or args.scorer):
        raise SystemExit("coin score: --predictions, --ground-truth and --task (or --scorer) are required "
                         "(or --normalize TEXT)")
    preds = read_jsonl(args.predictions)
    outputs = {}
    for k, p in enumerate(preds, 1):
        text = p.get("text", p.get("output")) if isinstance(p, dict) else None
        if not isinstance(p, dict) or "question_id" not in p or text is None:
            raise SystemExit(f"{args.predictions}:{k}: a prediction needs 'question_id' and 'text' (or 'output')")
        outputs[str(p["question_id"])] = str(text)
    from coin.data.sample import TestItem

    records = [TestItem.from_row(r) for r in read_json(args.ground_truth)]  # the user's JSON rows, typed here
    if args.answers:
        from coin.data.answers import AnswerSourceError, join_answers, read_answer_file

        try:
            records, report = join_answers(records, read_answer_file(args.answers))
        except AnswerSourceError as e:
            raise SystemExit(f"coin score: {e}") from None
        for line in report.problems(args.answers, args.task or "task") + report.notes(args.answers, args.task or "task"):
            print(line, file=sys.stderr)
    if args.task:
        protocol = (resolve(args.task, None)[args.protocol] if args.protocol in COLUMNS
                    else task_protocols(args.task).get(args.protocol))
        if protocol.answers == "ten" and (bad := missing_ten_answers(records)):
            raise SystemExit(f"coin score: {args.task} protocol {protocol.name!r} needs ten answers per question; "
                             f"{len(bad)} record(s) of {args.ground_truth} have none (e.g. {', '.join(bad[:3])}). "
                             f"Give --answers PATH/TextVQA_0.5.1_val.json or another --protocol")
        scorer, label = protocol.scorer_fn(), f"{args.task} {args.protocol} ({protocol.name}: {protocol.rule})"
    else:
        from functools import partial

        fn = SCORERS.get(args.scorer)
        scorer = partial(fn, norm=get_normalizer(args.normalizer)) if args.normalizer else fn
        label = f"scorer {args.scorer}" + (f", normaliser {args.normalizer}" if args.normalizer else "")
    result = score_task(scorer, outputs, records)
    if args.json:
        print(json.dumps({"scored_by": label, "score": result.score, "n": result.n, **result.tags}))
    else:
        shown = "none (no public answers: unscored)" if result.score is None else f"{result.score:.2f}"
        print(f"{label}\nscore {shown} over {result.n} samples")
        for tag, n in sorted(result.tags.items()):
            print(f"  {tag:14s} {n}")
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    from coin import metrics
    from coin.io import read_json

    data = read_json(args.matrix)
    matrix, zero = (data.get("matrix"), data.get("zero_shot")) if isinstance(data, dict) else (data, None)
    summary = metrics.summarize(matrix, zero_shot=zero, bwt_denominator=args.bwt_denominator)
    others = {}  # a run's matrix.json also holds the strict and knowledge matrices
    for column in ("strict", "knowledge"):
        part = data.get(column) if isinstance(data, dict) else None
        if isinstance(part, dict) and part.get("matrix") is not None:
            others[column] = metrics.summarize(part["matrix"], zero_shot=part.get("zero_shot"),
                                               bwt_denominator=args.bwt_denominator)
    if args.json:
        print(json.dumps({**summary, **others} if others else summary))
    else:
        for k, v in summary.items():
            print(f"{k:16s} {v}")
        for column, part in others.items():
            print(f"\n{column}:")
            for k, v in part.items():
                print(f"{k:16s} {v}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``score`` and ``metrics``."""
    sc = sub.add_parser("score", help="score predictions against a CoIN test file",
                        epilog="coin score --card prints the protocol card: per task, the rule, scorer, normaliser "
                               "and answers of each protocol, then each deliberate difference from the original "
                               "CoIN code.")
    sc.add_argument("--card", action="store_true", help="print the protocol card and exit")
    sc.add_argument("--task", help="CoIN task whose protocol to use, e.g. TextVQA")
    sc.add_argument("--protocol", default="paper",
                    help="paper (default: the original rule, its bugs fixed), strict (coin's own) or a task's "
                         "other protocol by name (TextVQA: single)")
    sc.add_argument("--scorer", help="instead of --task: a scorer by name (vqa, exact, substring, letter, "
                                     "classification, grounding)")
    sc.add_argument("--normalizer", help="with --scorer or --normalize: vqa (default), m4c, lower, gqa, strip")
    sc.add_argument("--predictions", help="JSONL rows with question_id and text (or output)")
    sc.add_argument("--ground-truth", help="the CoIN test file (a JSON list of records)")
    sc.add_argument("--answers", help="official annotation file joined by question_id (TextVQA_0.5.1_val.json)")
    sc.add_argument("--json", action="store_true")
    sc.add_argument("--normalize", metavar="TEXT", help="print the normalised form of TEXT and exit")
    sc.set_defaults(func=_cmd_score)

    m = sub.add_parser("metrics", help="MAA, BWT, ACC and more from an accuracy matrix")
    m.add_argument("matrix")
    m.add_argument("--json", action="store_true")
    m.add_argument("--bwt-denominator", choices=["T", "T-1"], default="T")
    m.set_defaults(func=_cmd_metrics)
