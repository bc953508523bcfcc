"""The ``coin`` command line: thin shells over library functions, one module per group of commands.

    coin --version
    coin run [--config FILE] [--out DIR] [--seed N] [key=value | ~key ...] [--set key=value ...]
    coin data synth --out DIR [--seed N] [--n-train N] [--n-test N]
    coin data build SOURCE --raw DIR --out DIR [--seed N] [--option key=value ...]
    coin data check|stats [--config FILE] [key=value ...] [--root DIR] [--image-root DIR] [--tasks T ...] [--json]
    coin sweep CONFIG [CONFIG ...] [--seeds 0 1 2] [--out DIR]
    coin report RUN [RUN ...] [--out DIR]
    coin table SWEEP [SWEEP ...] [--out FILE]
    coin findings [--methods DIR] [--studies DIR] [--out FILE]
    coin export SWEEP --out DIR [--seeds N ...]
    coin status RUN [--json]
    coin score --task TASK [--protocol paper|strict] --predictions P.jsonl --ground-truth T.json [--answers A.json]
    coin metrics MATRIX.json [--json]
    coin judge RUN [--config JUDGE.yaml] [--model M --base-url URL ...] [--stages S ...] [--tasks T ...]
    coin model assemble --lm DIR --vision DIR --projector FILE --out DIR [--dtype fp16]
    coin model prepare [--config RUN.yaml] [--set K=V ...] [--threads N]
    coin ls [KIND ...] [--plugin FILE] [--json]
    coin cp [NAME [DEST]] [--force]

A command module has ``add_commands(sub)``, which adds its subcommands with their handlers;
``COMMANDS`` lists the modules in the order ``coin --help`` shows them.
"""

from __future__ import annotations

import argparse
import sys

from coin.cli import cp, data, judge, ls, model, report, run, score
from coin.errors import ERRORS

COMMANDS = (run, data, report, score, judge, model, ls, cp)

# Errors that end a command with a message instead of a traceback: coin's own (coin.errors), each
# class carrying its ``exit_code`` (2: the user's to fix; 3: a run stopped on purpose; 130:
# interrupted; None: not caught), and these builtins. coin.errors imports nothing heavy, so a
# light command such as ``coin score`` or ``coin metrics`` never loads torch just to catch errors.
EXIT_CODES: dict[type[BaseException], int] = {
    **{cls: cls.exit_code for cls in ERRORS if cls.exit_code is not None},
    FileNotFoundError: 2,
    KeyboardInterrupt: 130,
}
INTERRUPTED = 130  # the exit code of an interrupted command; the message says how to resume


def exit_code(e: BaseException) -> int | None:
    """The exit code for ``e`` (None: not an error the command line catches, let it raise): a coin
    error's own ``exit_code``, else that of the nearest class in ``EXIT_CODES`` it is an instance of."""
    if isinstance(e, ERRORS):
        return type(e).exit_code
    return next((EXIT_CODES[cls] for cls in type(e).__mro__ if cls in EXIT_CODES), None)


def build_parser() -> argparse.ArgumentParser:
    """The ``coin`` argument parser, every command module's subcommands added in ``COMMANDS`` order."""
    from coin import __version__

    p = argparse.ArgumentParser(prog="coin", description="Continual instruction tuning of multimodal LLMs (CoIN).")
    p.add_argument("--version", action="version", version=f"coin {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_commands(sub)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``argv`` parsed; the bare ``KEY=VALUE`` / ``~KEY`` words of a command that takes overrides may stand
    anywhere among its options (argparse alone takes one run of positional words)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(word.startswith("-") for word in extra):
            parser.error("unrecognized arguments: " + " ".join(extra))
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the ``coin`` command ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = parse_args(argv)
    try:
        return args.func(args)
    except BaseException as e:
        code = exit_code(e)
        if code == INTERRUPTED:
            again = "coin " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]) if a != "--fresh")
            print(f"\ncoin: {e or 'interrupted'}. Resume with the same command: {again}", file=sys.stderr)
            return INTERRUPTED
        if code is None:
            from coin.io import write_error

            if (w := write_error(e)) is None:  # a full disk or an unwritable file outside coin.io's writers
                raise
            e, code = w, 2
        print(f"coin: {'error' if code == 2 else 'stopped'}: {e}", file=sys.stderr)
        return code
