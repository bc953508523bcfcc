"""``coin judge``: grade a run's answers with an LLM judge (the Reasoning-Capability matrix)."""

from __future__ import annotations

import argparse
import sys

from coin.cli.flags import threads


def _cmd_judge(args: argparse.Namespace) -> int:
    from coin.api import judge
    from coin.engine.judging import JudgeError
    from coin.scoring.judge import judge_config

    flags = {k: getattr(args, k) for k in _JUDGE_FLAGS}
    cfg = judge_config(path=args.config, **flags)
    threads(args.threads)
    if args.extract:
        return _extract(args, cfg)
    try:
        result = judge(args.run, cfg, stages=args.stages, tasks=args.tasks, report=not args.no_report,
                           progress=not args.quiet, trust_plugins=args.trust_plugins)
    except JudgeError as e:
        print(f"coin: error: {e}", file=sys.stderr)
        return 2
    m = result["metrics"]
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"Reasoning Capability ({result['judge']['name']}): MAA {fmt(m['maa'])}  BWT {fmt(m['bwt'])}  "
          f"ACC {fmt(m['acc'])}")
    return 0


def _extract(args: argparse.Namespace, cfg) -> int:
    """``--extract TASK``: rescore a task's stored answers with its LLM extraction step (MathVista's)."""
    from pathlib import Path

    from coin.benchmarks.mllm_cl import mathvista
    from coin.engine.judging import _test_records

    from coin.tasks import TASKS

    run = Path(args.run)
    extractable = [t for t in TASKS.names() if TASKS.get(t).scorer == "mathvista"]
    if args.extract not in extractable:
        print(f"coin: error: --extract takes a task scored by MathVista's rules ({', '.join(extractable)}), "
              f"got {args.extract!r}", file=sys.stderr)
        return 2
    if not list(run.glob(f"stages/*/predictions/{args.extract}.jsonl")):
        print(f"coin: error: {run} has no predictions of task {args.extract!r}", file=sys.stderr)
        return 2
    records = list(_test_records(run, [args.extract], args.trust_plugins)[args.extract].values())
    table = mathvista.llm_rescore_run(run, args.extract, cfg, records)
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    for stage, row in table["stages"].items():
        print(f"{stage:<16} rules {fmt(row['rules']):>7}   with the LLM step {fmt(row['llm']):>7}")
    print(f"written to {run / 'extract' / cfg.folder_name / (args.extract + '.json')}")
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
    "protocol": (str, "coin (default: greedy, strict parsing, reproducible) or paper (the original as run: "
                      "sampled at temperature 0.7, loose parsing, rounded task scores)"),
    "max_tokens": (int, "reply length limit of the coin protocol (default 16; paper sends 20)"),
    "prompt_version": (str, "judge prompt version (default coin-v1)"),
    "batch_size": (int, "hf: prompts per generate call (default 8)"),
    "device": (str, "hf: auto, cpu, cuda, cuda:N"),
    "dtype": (str, "hf: auto, float32, bfloat16, float16"),
    "revision": (str, "judge weights' version: hf hub revision, else a label (part of the cache key)"),
    "name": (str, "folder under RUN/judge/ (default: from the model)"),
    "cache": (str, "sqlite cache file (default RUN/judge/cache.sqlite)"),
}


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``judge``."""
    j = sub.add_parser("judge", help="grade a run's answers with an LLM judge: the Reasoning-Capability matrix")
    j.add_argument("run", help="run folder")
    j.add_argument("--config", help="judge YAML (keys of JudgeConfig, at the top level or under 'judge:')")
    for key, (tp, text) in _JUDGE_FLAGS.items():
        j.add_argument("--" + key.replace("_", "-"), dest=key, type=tp, default=None, help=text)
    j.add_argument("--stages", nargs="+", help="stages to judge: 0/zeroshot, a stage number, a task name")
    j.add_argument("--tasks", nargs="+", help="tasks (columns) to judge")
    j.add_argument("--extract", metavar="TASK",
                   help="instead of judging: rescore TASK's answers with its LLM extraction step (MLLM-CL's Math, "
                        "MathVista's protocol) on this judge backend; writes RUN/extract/<name>/TASK.json")
    j.add_argument("--no-report", action="store_true", help="do not rewrite the run's report")
    j.add_argument("--threads", type=int, default=None, help="CPU threads for torch (hf backend)")
    j.add_argument("--quiet", action="store_true", help="no progress bar")
    j.add_argument("--trust-plugins", action="store_true",
                   help="import the plugins the run's config.yaml names (their code runs; never done without this)")
    j.set_defaults(func=_cmd_judge)
