"""The ``coin`` command line: thin shells over library functions.

    coin run [--config FILE] [--out DIR] [--set key=value ...]
    coin data synth --out DIR [--seed N] [--n-train N] [--n-test N]
    coin data build SOURCE --raw DIR --out DIR [--seed N] [--option key=value ...]
    coin data check|stats [--config FILE] [--root DIR] [--image-root DIR] [--tasks T ...] [--json]
    coin sweep CONFIG [CONFIG ...] [--seeds 0 1 2] [--out DIR]
    coin report RUN [RUN ...] [--out DIR]
    coin status RUN [--json]
    coin score --task TASK [--protocol paper|strict] --predictions P.jsonl --ground-truth T.json [--answers A.json]
    coin metrics MATRIX.json [--json]
    coin judge RUN [--config JUDGE.yaml] [--model M --base-url URL ...] [--stages S ...] [--tasks T ...]
    coin model assemble --lm DIR --vision DIR --projector FILE --out DIR [--dtype fp16]
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
    if args.dry_run:
        from coin.engine.plan import describe

        text, missing = describe(cfg, out)
        print(text)
        return 1 if missing else 0
    from coin.engine import dist

    # no collective here: the run checks its data before joining the process group; the other
    # processes touch ``out`` only after the main process's first barrier, past this removal
    if args.fresh and out.exists() and dist.is_main():
        import shutil

        shutil.rmtree(out)
    _threads(args.threads)
    # progress (bars, messages) goes to stderr, results (a line per stage, the summary) to stdout; bars only
    # on a terminal, so a batch job's log holds no carriage-return lines; --quiet keeps one line per stage
    progress = not args.quiet and sys.stderr.isatty()
    if not progress:  # transformers' own bars (loading and saving weights) too
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

    def log(message: str) -> None:
        if not args.quiet or message.startswith("warning"):
            print(message, file=sys.stderr, flush=True)

    result = run(cfg, out, progress=progress, log=log, echo=lambda m: print(m, flush=True))
    if not dist.is_main():
        return 0
    if not args.quiet:
        print(f"\n{summary_table(result)}\n")
    print(f"report: {out / 'report.md'}  (and report.html, heatmap.png, loss.png)")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from coin.engine.status import format_status, run_status

    st = run_status(args.run)
    print(json.dumps(st, indent=1) if args.json else format_status(st))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from coin.config import ConfigError
    from coin.engine.sweep import sweep

    if args.jobs < 1:
        raise ConfigError([f"--jobs must be >= 1, got {args.jobs}"])
    _threads(args.threads)
    path = sweep(args.configs, args.seeds, args.out, args.set, progress=not args.quiet, jobs=args.jobs,
                 threads=args.threads)
    print(f"comparison report: {path} (and {Path(path).with_suffix('.html')})")
    return 0


def _threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from coin.data.synth import generate

    out = generate(args.out, seed=args.seed, n_train=args.n_train, n_test=args.n_test, n_pretrain=args.n_pretrain)
    print(f"CoIN-Synth written to {out}")
    return 0


def _data_target(args: argparse.Namespace):
    """(DataConfig, tasks, eval.protocol) a data command looks at: a run config and/or --root, --tasks."""
    import dataclasses

    from coin.config import DataConfig, load_config
    from coin.data.orders import resolve_order

    tasks, protocol = None, {}
    if args.config or args.set:
        cfg = load_config(args.config, args.set)
        data, tasks, protocol = cfg.data, resolve_order(cfg.tasks.order), cfg.eval.protocol
    elif args.root:
        data = DataConfig(benchmark="coin", root=args.root)
    else:
        raise SystemExit(f"coin data {args.data_command}: give --config FILE or --root DIR")
    over = {k: v for k, v in (("root", args.root), ("image_root", args.image_root),
                              ("instructions", args.instructions)) if v is not None}
    if args.root:
        over["benchmark"] = "coin"
    data = dataclasses.replace(data, **over)
    if args.tasks:
        from coin.tasks import TASKS

        names = [t for item in args.tasks for t in item.split(",") if t]
        is_order = len(names) == 1 and names[0] not in TASKS  # "paper", "alphabet", "shuffle:3"
        tasks = resolve_order(names[0] if is_order else names)
    return data, tasks, protocol


def _cmd_data_build(args: argparse.Namespace) -> int:
    import yaml

    from coin.data.builders import BUILDERS, build_source
    from coin.tasks import get_task

    options = {}
    for item in args.option:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"coin data build: --option {item!r} must look like key=value")
        options[key.strip().replace("-", "_")] = yaml.safe_load(raw)
    counts = build_source(args.source, args.raw, args.out, seed=args.seed, image_prefix=args.image_prefix, **options)
    folder = Path(args.out) / "Instructions_Original" / get_task(BUILDERS.get(args.source).task).folder
    print(f"{args.source}: {counts['train']:,} train and {counts['test']:,} test records written to {folder}")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from coin.data.check import check_data

    try:
        data, tasks, protocol = _data_target(args)
    except ValueError as e:
        raise SystemExit(f"coin data check: {e}") from None
    manifest = check_data(data, tasks, open_images=not args.quick, protocols=protocol)
    print(json.dumps(manifest.to_dict(), indent=1) if args.json else manifest.format(limit=args.limit))
    return 0 if manifest.ok else 1


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from coin.data.check import format_stats, stats

    try:
        data, tasks, _ = _data_target(args)
    except ValueError as e:
        raise SystemExit(f"coin data stats: {e}") from None
    table = stats(data, tasks)
    print(json.dumps(table, indent=1) if args.json else format_stats(table))
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
    from coin.eval.normalize import get_normalizer
    from coin.eval.protocols import COLUMNS, missing_ten_answers, resolve, task_protocols
    from coin.eval.scorers import SCORERS, score_task
    from coin.io import read_json, read_jsonl

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
    records = [{**r, "question_id": str(r["question_id"])} for r in read_json(args.ground_truth)]
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
        print(f"{label}\nscore {result.score:.2f} over {result.n} samples")
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


def _cmd_judge(args: argparse.Namespace) -> int:
    from coin.eval.judge import judge_config, judge_run
    from coin.eval.judge.run import JudgeError

    flags = {k: getattr(args, k) for k in _JUDGE_FLAGS}
    cfg = judge_config(path=args.config, **flags)
    _threads(args.threads)
    try:
        result = judge_run(args.run, cfg, stages=args.stages, tasks=args.tasks, report=not args.no_report,
                           progress=not args.quiet)
    except JudgeError as e:
        print(f"coin: error: {e}", file=sys.stderr)
        return 2
    m = result["metrics"]
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"Reasoning Capability ({result['judge']['name']}): MAA {fmt(m['maa'])}  BWT {fmt(m['bwt'])}  "
          f"ACC {fmt(m['acc'])}")
    return 0


def _cmd_model_assemble(args: argparse.Namespace) -> int:
    from coin.models.llava_parts import PartsError, assemble_to_folder

    try:
        out = assemble_to_folder(args.lm, args.vision, args.projector, args.out, dtype=args.dtype,
                                 trust_remote_code=args.trust_remote_code)
    except PartsError as e:
        print(f"coin: error: {e}", file=sys.stderr)
        return 2
    print(f"LLaVA-1.5 written to {out}; use it with model.name=llava model.path={out}")
    return 0


# JudgeConfig fields settable by flag (``--base-url`` -> base_url); unset flags keep the YAML's values.
_JUDGE_FLAGS = {
    "backend": (str, "openai (any OpenAI-compatible endpoint) or hf (a local causal LM)"),
    "model": (str, "served model name, or a local folder / hub id for hf"),
    "base_url": (str, "endpoint, e.g. http://127.0.0.1:8000/v1"),
    "api_key_env": (str, "NAME of the environment variable holding the API key"),
    "concurrency": (int, "openai: requests in flight (default 8)"),
    "timeout": (float, "openai: seconds per request (default 60)"),
    "retries": (int, "openai: retries after a failed request (default 3)"),
    "backoff": (float, "openai: first retry delay in seconds, doubling (default 1)"),
    "max_tokens": (int, "reply length limit (default 16)"),
    "prompt_version": (str, "judge prompt version (default coin-v1)"),
    "batch_size": (int, "hf: prompts per generate call (default 8)"),
    "device": (str, "hf: auto, cpu, cuda, cuda:N"),
    "dtype": (str, "hf: auto, float32, bfloat16, float16"),
    "revision": (str, "judge weights' version: hf hub revision, else a label (part of the cache key)"),
    "name": (str, "folder under RUN/judge/ (default: from the model)"),
    "cache": (str, "sqlite cache file (default RUN/judge/cache.sqlite)"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coin", description="Continual instruction tuning of multimodal LLMs (CoIN).")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run one continual-tuning experiment (default: CoIN-Synth, tiny model)")
    r.add_argument("--config", help="YAML config (default: the embedded CoIN-Synth config)")
    r.add_argument("--out", help="run folder (default: runs/<name>); an existing run there is continued")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. train.lr=1e-4")
    r.add_argument("--fresh", action="store_true", help="delete the run folder first and start over")
    r.add_argument("--dry-run", action="store_true", help="print the plan and the files it reads (missing ones marked); load nothing")
    r.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    r.add_argument("--quiet", action="store_true",
                   help="one line per stage (and warnings); without it, progress bars show on a terminal only")
    r.set_defaults(func=_cmd_run)

    sw = sub.add_parser("sweep", help="run configs x seeds and write one comparison report")
    sw.add_argument("configs", nargs="+", help="YAML configs")
    sw.add_argument("--seeds", type=int, nargs="+", default=[0])
    sw.add_argument("--out", default="runs/sweep")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key in every config")
    sw.add_argument("--threads", type=int, default=None, help="torch threads per run (with --jobs: default cores / jobs)")
    sw.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process (default 1)")
    sw.add_argument("--quiet", action="store_true")
    sw.set_defaults(func=_cmd_sweep)

    d = sub.add_parser("data", help="data tools").add_subparsers(dest="data_command", required=True)
    s = d.add_parser("synth", help="write the CoIN-Synth benchmark")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n-train", type=int, default=400)
    s.add_argument("--n-test", type=int, default=100)
    s.add_argument("--n-pretrain", type=int, default=0, help="also write N pretraining samples (captions and sentence answers)")
    s.set_defaults(func=_cmd_data_synth)

    b = d.add_parser("build", help="turn one source dataset's own files into CoIN JSON (Original family)")
    b.add_argument("source", help="vqav2, gqa, textvqa, vizwiz, scienceqa, ocrvqa, imagenet, refcoco, refcoco+, refcocog")
    b.add_argument("--raw", required=True, help="the source's folder (its annotation files; ImageNet: train/ and val/)")
    b.add_argument("--out", required=True, help="CoIN data root; writes Instructions_Original/<Task>/{train,test}.json")
    b.add_argument("--seed", type=int, default=0, help="ImageNet class subset, RefCOCO expression draw")
    b.add_argument("--image-prefix", help="where the source's images lie under the image root (default: CoIN layout)")
    b.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="builder option, e.g. classes=100, test_split=val2014, test_splits=val,testA")
    b.set_defaults(func=_cmd_data_build)
    for name, func, text in (("check", _cmd_data_check, "check every file and image a run will touch; exit 1 on any problem"),
                             ("stats", _cmd_data_stats, "per-task counts, answer lengths and distinct answers")):
        c = d.add_parser(name, help=text)
        c.add_argument("--config", help="run config whose data section and task order to use")
        c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
        c.add_argument("--root", help="CoIN data root (instead of, or overriding, the config's data.root)")
        c.add_argument("--image-root", help="folder the records' image paths are relative to (default: --root)")
        c.add_argument("--instructions", help="instruction family: original, diverse, 10type")
        c.add_argument("--tasks", nargs="+", help="task names, or an order: paper, alphabet, shuffle:SEED")
        c.add_argument("--json", action="store_true")
        c.set_defaults(func=func)
        if name == "check":
            c.add_argument("--quick", action="store_true", help="only check that images exist (do not open them)")
            c.add_argument("--limit", type=int, default=20, help="problems listed per kind and task")

    st = sub.add_parser("status", help="a run's state: stages done, the one in progress, matrix so far, last loss, lock")
    st.add_argument("run", help="run folder (finished, running or killed)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_cmd_status)

    rep = sub.add_parser("report", help="write the report of one run, or a comparison of several")
    rep.add_argument("runs", nargs="+")
    rep.add_argument("--out", help="folder for a comparison report")
    rep.set_defaults(func=_cmd_report)

    from coin.eval.protocols import format_card

    sc = sub.add_parser("score", help="score predictions against a CoIN test file",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="protocol card (per task: the rule, scorer, normaliser, answers; then each "
                               "deliberate difference from the original CoIN code):\n" + format_card())
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

    j = sub.add_parser("judge", help="grade a run's answers with an LLM judge: the Reasoning-Capability matrix")
    j.add_argument("run", help="run folder")
    j.add_argument("--config", help="judge YAML (keys of JudgeConfig, at the top level or under 'judge:')")
    for key, (tp, text) in _JUDGE_FLAGS.items():
        j.add_argument("--" + key.replace("_", "-"), dest=key, type=tp, default=None, help=text)
    j.add_argument("--stages", nargs="+", help="stages to judge: 0/zeroshot, a stage number, a task name")
    j.add_argument("--tasks", nargs="+", help="tasks (columns) to judge")
    j.add_argument("--no-report", action="store_true", help="do not rewrite the run's report")
    j.add_argument("--threads", type=int, default=None, help="CPU threads for torch (hf backend)")
    j.add_argument("--quiet", action="store_true", help="no progress bar")
    j.set_defaults(func=_cmd_judge)

    mo = sub.add_parser("model", help="model tools").add_subparsers(dest="model_command", required=True)
    a = mo.add_parser("assemble", help="build the pretrain-only LLaVA-1.5 from its parts as a llava-hf folder")
    a.add_argument("--lm", required=True, help="the LM folder with its tokenizer (e.g. vicuna-7b-v1.5)")
    a.add_argument("--vision", required=True, help="the CLIP folder (e.g. clip-vit-large-patch14-336)")
    a.add_argument("--projector", required=True, help="LLaVA's stage-1 mm_projector.bin (or .safetensors)")
    a.add_argument("--out", required=True, help="new folder to write; load it with model.name=llava")
    a.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16",
                   help="weights' dtype (default fp16, the parts' own precision)")
    a.add_argument("--trust-remote-code", action="store_true", help="only when you trust the LM's own code")
    a.set_defaults(func=_cmd_model_assemble)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from coin.config import ConfigError
    from coin.data.coin_json import DataError
    from coin.engine.checkpoint import CheckpointError
    from coin.engine.run import RunFolderError
    from coin.engine.train import Interrupted, NonFiniteLossError
    from coin.engine.dist import UnsupportedLaunch
    from coin.engine.sweep import SweepError
    from coin.models.llava_parts import PartsError
    from coin.models.vlm import ImageError
    from coin.registry import UnknownNameError

    try:
        return args.func(args)
    except (ConfigError, DataError, RunFolderError, ImageError, UnknownNameError, FileNotFoundError, PartsError,
            UnsupportedLaunch) as e:
        print(f"coin: error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, CheckpointError, SweepError) as e:
        print(f"coin: stopped: {e}", file=sys.stderr)
        return 3
    except (Interrupted, KeyboardInterrupt) as e:
        again = "coin " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]) if a != "--fresh")
        print(f"\ncoin: {e or 'interrupted'}. Resume with the same command: {again}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
