"""The flags several commands share: ``--threads`` (torch's CPU thread count) and the config overrides
(``KEY=VALUE`` or ``~KEY`` as bare words, as Hydra and torchtune take them, or after ``--set``)."""

from __future__ import annotations

import argparse


def threads(n: int | None) -> None:
    """Let torch use ``n`` CPU threads (None: torch's own default)."""
    import torch

    if n:
        torch.set_num_threads(n)


def add_set(parser: argparse.ArgumentParser, text: str, positional: bool = True) -> None:
    """The overrides of the commands that read a run config: bare ``KEY=VALUE`` / ``~KEY`` words (where
    the command takes no other positional argument) and the repeatable ``--set``."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=text + " (or ~KEY to remove one)")
    if positional:
        parser.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                            help="config overrides as bare words, e.g. train.lr=1e-4 ~model.lm_path (the same as --set)")


def overrides(args: argparse.Namespace) -> list[str]:
    """The command's overrides in the order they apply: ``--set`` ones, then the bare words, then ``--seed``."""
    bare = list(getattr(args, "overrides", None) or [])
    words = [*(getattr(args, "set", None) or []), *bare]
    for word in bare:
        if "=" not in word and not word.startswith("~"):
            from coin.config import ConfigError

            raise ConfigError([f"{word!r} is not an override: write KEY=VALUE (e.g. train.lr=1e-4) or ~KEY"])
    if getattr(args, "seed", None) is not None:
        words.append(f"seed={args.seed}")
    return words
