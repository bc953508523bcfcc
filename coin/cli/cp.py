"""``coin cp NAME [DEST]``: copy a shipped config to edit (torchtune's ``tune cp``); without NAME, list them."""

from __future__ import annotations

import argparse


def _cmd_cp(args: argparse.Namespace) -> int:
    from coin import shipped

    if args.name is None:
        print("\n".join(shipped.names()))
        return 0
    target = shipped.copy(args.name, args.dest, force=args.force)
    print(f"wrote {target}; run it with: coin run --config {target}")
    print("  (relative paths in it are read against its folder; the PLACEHOLDER values point at your data)")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``cp``."""
    cp = sub.add_parser("cp", help="copy a shipped config to edit (without NAME: list the shipped configs)",
                        description="Shipped configs are named by their path under coin/configs/ without .yaml, "
                                    "e.g. synth/lora, coin/llava-1.5-7b/lora, ucit/olora. coin run --config NAME "
                                    "runs one as it is.")
    cp.add_argument("name", nargs="?", metavar="NAME", help="a shipped config (coin cp alone lists them)")
    cp.add_argument("dest", nargs="?", metavar="DEST", help="a file, or a folder to copy into (default: here)")
    cp.add_argument("-f", "--force", action="store_true", help="overwrite DEST when it exists")
    cp.set_defaults(func=_cmd_cp)
