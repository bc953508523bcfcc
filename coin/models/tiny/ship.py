"""The pretrained tiny base shipped inside the package, so a first ``coin run`` skips its pretraining.

The default tiny base (the default ``model.tiny`` and ``model.pretrain``) takes about 11 minutes
to pretrain on 2 CPU cores: most of a first run. Its weights (safetensors), tokenizer and
processor live in ``coin/models/tiny/base/``, with ``SHIPPED.json`` recording

- ``key``: the recipe's cache key (``pretrain.base_key``): a config whose recipe differs does not use it;
- ``sha256``: of every shipped file, checked before the base is used;
- ``trace``: the losses of the first steps of both pretraining stages (``pretrain.recipe_trace``),
  which a test recomputes with the code as it stands, so a change to the recipe that the key does
  not see (the data generator, the loss, the optimiser) is caught;
- the machine and thread count it was pretrained on, and the command that made it::

      python -m coin.models.tiny.ship --threads 2

  (pretrains from scratch in a temporary cache, as ``coin model prepare`` does, and rewrites the folder).

``load_or_pretrain`` looks in the cache first (a base you pretrained yourself wins), then here,
then pretrains. ``coin model prepare`` still pretrains from scratch into the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from coin.models.tiny.base_files import FOLDER, RECORD, _sha256, record, shipped_base  # noqa: F401 (re-exported)

TRACE_STEPS = 3


def ship(threads: int, work: Path | None = None) -> Path:
    """Pretrain the default base from scratch and write it, with its record, into ``FOLDER``.

    ``work``: the folder to pretrain in (a killed pretraining there resumes; one already finished is
    taken as it is), default a fresh temporary one.
    """
    import torch

    from coin.config import ModelConfig
    from coin.machine import cpu_identity
    from coin.models.tiny.backbone import TinyOptions
    from coin.models.tiny.pretrain import base_key, pretrain, recipe_trace

    torch.set_num_threads(threads)
    cfg = ModelConfig(name="tiny", options=TinyOptions())  # the default run's model: the default tiny base
    with tempfile.TemporaryDirectory(prefix="coin-ship-") as tmp:
        out = Path(work) if work is not None else Path(tmp) / "base"
        if not (out / "COMPLETE").is_file():
            pretrain(cfg, out, log=print, progress=True)
        done = json.loads((out / "COMPLETE").read_text())
        staged = FOLDER.with_name(FOLDER.name + ".partial")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(out, staged, ignore=shutil.ignore_patterns("COMPLETE"))
    files = sorted(p.name for p in staged.iterdir() if p.is_file())
    rec = {"key": base_key(cfg), "sha256": {name: _sha256(staged / name) for name in files},
           "trace": recipe_trace(cfg, TRACE_STEPS), "final_loss": done["loss"],
           "pretrain_seconds": round(done["seconds"]), "threads": threads, "cpu": cpu_identity(),
           "torch": torch.__version__, "command": f"python -m coin.models.tiny.ship --threads {threads}"}
    (staged / RECORD).write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(FOLDER, ignore_errors=True)
    os.replace(staged, FOLDER)
    return FOLDER


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m coin.models.tiny.ship", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch threads (the weights' bits depend on it)")
    p.add_argument("--work", type=Path, help="pretrain in this folder (resumes a killed pretraining there); "
                                             "default: a fresh temporary folder")
    args = p.parse_args(argv)
    print(f"wrote {ship(args.threads, args.work)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
