"""``coin model``: model tools (assemble the pretrain-only LLaVA-1.5 from its released parts)."""

from __future__ import annotations

import argparse
import sys


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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``model assemble``."""
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
