"""The flags several commands share: ``--threads`` (torch's CPU thread count) and ``--set KEY=VALUE``."""

from __future__ import annotations

import argparse


def threads(n: int | None) -> None:
    """Let torch use ``n`` CPU threads (None: torch's own default)."""
    import torch

    if n:
        torch.set_num_threads(n)


def add_set(parser: argparse.ArgumentParser, text: str) -> None:
    """The repeatable ``--set KEY=VALUE`` of the commands that read a run config."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=text)
