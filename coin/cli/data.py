"""``coin data``: write CoIN-Synth, build CoIN JSON from a source's own files, check and count a run's data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coin.cli.flags import add_set, overrides


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from coin.benchmarks.synth.generator import generate

    out = generate(args.out, seed=args.seed, n_train=args.n_train, n_test=args.n_test, n_pretrain=args.n_pretrain)
    print(f"CoIN-Synth written to {out}")
    return 0


def _data_target(args: argparse.Namespace) -> tuple:
    """(DataConfig, tasks, eval.protocol) a data command looks at: a run config and/or --root, --tasks."""
    import dataclasses

    from coin.config import DataConfig
    from coin.config_load import load_config
    from coin.tasks.orders import resolve_order

    tasks, protocol = None, {}
    words = overrides(args)
    if args.root and not (args.config or words):
        data = DataConfig(benchmark="coin", root=args.root)
    else:  # a config (with no --config, --set or --root: the embedded one, what `coin run` runs); --root joins
        # the overrides, so a benchmark that requires data.root validates
        cfg = load_config(args.config, words + ([f"data.root={args.root}"] if args.root else []))
        data, tasks, protocol = cfg.data, resolve_order(cfg.tasks.order), cfg.eval.protocol
    over = {k: v for k, v in (("root", args.root), ("image_root", args.image_root),
                              ("instructions", args.instructions)) if v is not None}
    if args.root and data.benchmark == "synth":  # --root alone means CoIN; --set data.benchmark=ucit keeps UCIT
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

    from coin.benchmarks.coin.builders import BUILDERS, build_source
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
    from coin.benchmarks.check import check_data

    from coin.options import OptionsError

    try:
        data, tasks, protocol = _data_target(args)
    except OptionsError:
        raise  # a config error: exit 2 with its problems, as ``coin run`` says it
    except ValueError as e:
        raise SystemExit(f"coin data check: {e}") from None
    manifest = check_data(data, tasks, open_images=not args.quick, protocols=protocol)
    print(json.dumps(manifest.to_dict(), indent=1) if args.json else manifest.format(limit=args.limit))
    return 0 if manifest.ok else 1


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from coin.benchmarks.check import format_stats, stats

    try:
        data, tasks, _ = _data_target(args)
    except ValueError as e:
        raise SystemExit(f"coin data stats: {e}") from None
    table = stats(data, tasks)
    print(json.dumps(table, indent=1) if args.json else format_stats(table))
    return 0



def _cmd_data_import_hf(args: argparse.Namespace) -> int:
    from coin.data.hf_import import import_hf

    counts = import_hf(args.source, args.out, args.task_folder, question=args.question, answer=args.answer,
                       image=args.image or None, instruction=args.instruction,
                       splits={"train": args.train_split, "test": args.test_split})
    folder = Path(args.out) / "Instructions_Original" / args.task_folder
    print(f"wrote {folder}/train.json ({counts['train']} records) and test.json ({counts['test']}); images under "
          f"{Path(args.out) / 'images' / args.task_folder}; data.root: {args.out}, data.image_root: "
          f"{Path(args.out) / 'images'}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``data synth``, ``data build``, ``data import-hf``, ``data check`` and ``data stats``."""
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

    h = d.add_parser("import-hf", help="write a Hugging Face datasets dataset (saved folder, parquet files or hub id) "
                                       "as one task's CoIN records (coin.data.hf_import)")
    h.add_argument("source", help="a save_to_disk folder, parquet file(s) named by split, or a hub id (network)")
    h.add_argument("--task-folder", required=True, help="the task's folder under Instructions_Original/ (its TaskSpec's folder)")
    h.add_argument("--out", required=True, help="data root to write into (data.root; images under OUT/images/)")
    h.add_argument("--question", default="question", help="the question's column (default: question)")
    h.add_argument("--answer", default="answer", help="the answer's column (default: answer)")
    h.add_argument("--image", default="image", help="the image's column (default: image; '' for a text-only task)")
    h.add_argument("--instruction", default="", help="the task's instruction line, appended to every question")
    h.add_argument("--train-split", default="train", help="the dataset's split to train on (default: train)")
    h.add_argument("--test-split", default="test", help="the dataset's split to test on (default: test)")
    h.set_defaults(func=_cmd_data_import_hf)
    for name, func, text in (("check", _cmd_data_check, "check every file and image a run will touch; exit 1 on any problem"),
                             ("stats", _cmd_data_stats, "per-task counts, answer lengths and distinct answers")):
        c = d.add_parser(name, help=text)
        c.add_argument("--config", help="run config whose data section and task order to use (default, with no "
                                        "--root: the embedded one, what `coin run` runs)")
        add_set(c, "override a config key")
        c.add_argument("--root", help="CoIN data root (instead of, or overriding, the config's data.root)")
        c.add_argument("--image-root", help="folder the records' image paths are relative to (default: --root)")
        c.add_argument("--instructions", help="instruction family: original, diverse, 10type")
        c.add_argument("--tasks", nargs="+", help="task names, or an order: paper, alphabet, shuffle:SEED")
        c.add_argument("--json", action="store_true")
        c.set_defaults(func=func)
        if name == "check":
            c.add_argument("--quick", action="store_true", help="only check that images exist (do not open them)")
            c.add_argument("--limit", type=int, default=20, help="problems listed per kind and task")
