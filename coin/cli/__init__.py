"""The ``coin`` command line: thin shells over library functions, one module per group of commands.

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
    coin model prepare [--config RUN.yaml] [--set K=V ...] [--threads N]
    coin ls [KIND ...] [--plugin FILE] [--json]

A command module has ``add_commands(sub)``, which adds its subcommands with their handlers;
``COMMANDS`` lists the modules in the order ``coin --help`` shows them.
"""

from __future__ import annotations

import argparse
import sys

from coin.cli import data, judge, ls, model, report, run, score

COMMANDS = (run, data, report, score, judge, model, ls)

# Errors that end a command with a message instead of a traceback: the user's to fix (exit 2)
# or a run stopped on purpose (exit 3), as (module, class). A class is looked up only when its
# module is already imported (an error cannot come from a module that never loaded), so a
# light command such as ``coin score`` or ``coin metrics`` never loads torch just to catch errors.
EXIT_CODES: dict[tuple[str, str], int] = {
    ("coin.config", "ConfigError"): 2,
    ("coin.options", "OptionsError"): 2,
    ("coin.data.coin_json", "DataError"): 2,
    ("coin.io", "FileFormatError"): 2,  # a file not UTF-8, not JSON, nested too deeply: named in one line
    ("coin.io", "WriteError"): 2,  # a full disk, a read-only folder: the file named in one line
    ("coin.engine.run_folder", "RunFolderError"): 2,
    ("coin.config_load", "UntrustedPlugins"): 2,
    ("coin.models.vlm", "ImageError"): 2,
    ("coin.registry", "UnknownNameError"): 2,
    ("builtins", "FileNotFoundError"): 2,
    ("coin.models.errors", "PartsError"): 2,  # incl. a missing part, a tokenizer folder
    ("coin.engine.dist", "UnsupportedLaunch"): 2,
    ("coin.engine.train", "NonFiniteLossError"): 3,
    ("coin.engine.checkpoint", "CheckpointError"): 3,
    ("coin.engine.sweep", "SweepError"): 3,
}
_INTERRUPTS = (("coin.engine.train", "Interrupted"), ("builtins", "KeyboardInterrupt"))


def _loaded(module: str, name: str) -> type | None:
    """The class ``module.name`` if that module is already imported, else None."""
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def exit_code(e: BaseException) -> int | None:
    """The exit code for an error listed in ``EXIT_CODES`` (None: not one of them, let it raise)."""
    for (module, name), code in EXIT_CODES.items():
        cls = _loaded(module, name)
        if cls is not None and isinstance(e, cls):
            return code
    return None


def build_parser() -> argparse.ArgumentParser:
    """The ``coin`` argument parser, every command module's subcommands added in ``COMMANDS`` order."""
    p = argparse.ArgumentParser(prog="coin", description="Continual instruction tuning of multimodal LLMs (CoIN).")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the ``coin`` command ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BaseException as e:
        if any((cls := _loaded(m, n)) is not None and isinstance(e, cls) for m, n in _INTERRUPTS):
            again = "coin " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]) if a != "--fresh")
            print(f"\ncoin: {e or 'interrupted'}. Resume with the same command: {again}", file=sys.stderr)
            return 130
        code = exit_code(e) if isinstance(e, Exception) else None
        if code is None:
            from coin.io import write_error

            if (w := write_error(e)) is None:  # a full disk or an unwritable file outside coin.io's writers
                raise
            e, code = w, 2
        print(f"coin: {'error' if code == 2 else 'stopped'}: {e}", file=sys.stderr)
        return code
