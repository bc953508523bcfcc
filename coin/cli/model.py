"""``coin model``: model tools (assemble the pretrain-only LLaVA-1.5 from its released parts; prepare
a config's model ahead of its runs, e.g. pretrain the tiny base at a chosen thread count)."""

from __future__ import annotations

import argparse
import sys

from coin.cli.flags import add_set, overrides


def _cmd_model_assemble(args: argparse.Namespace) -> int:
    from coin.models.llava.parts import PartsError, assemble_to_folder

    try:
        out = assemble_to_folder(args.lm, args.vision, args.projector, args.out, dtype=args.dtype,
                                 trust_remote_code=args.trust_remote_code)
    except PartsError as e:
        print(f"coin: error: {e}", file=sys.stderr)
        return 2
    print(f"LLaVA-1.5 written to {out}; use it with model.name=llava model.path={out}")
    return 0


def _cmd_model_prepare(args: argparse.Namespace) -> int:
    from coin.cli.flags import threads
    from coin.config_load import load_config
    from coin.models import BACKBONES

    cfg = load_config(args.config, overrides(args))
    threads(args.threads)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    BACKBONES.get(cfg.model.name).prepare(cfg.model, log=log, own=True)  # e.g. pretrain the tiny base here
    print(f"model '{cfg.model.name}' ready for {args.config or 'the default config'}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``model assemble``, ``model prepare``."""
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
    pr = mo.add_parser("prepare", help="do a config's once-only model work now (the tiny backbone: pretrain and "
                                       "cache its base; resumable), before runs or a sweep use it")
    pr.add_argument("--config", help="YAML config (default: the embedded CoIN-Synth config)")
    add_set(pr, "override a config key, e.g. model.tiny.lm_width=512")
    pr.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch (the base's weights depend on it, as a run's do)")
    pr.set_defaults(func=_cmd_model_prepare)
