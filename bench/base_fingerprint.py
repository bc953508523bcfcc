"""A one-minute check that this machine trains the tiny base as the README's machine did.

The default matrix is bit-for-bit repeatable on the same CPU kind, torch thread count and library
versions; the first ``coin run`` spends about 10 minutes pretraining the tiny base before it can
show whether it does. This script runs the same pretraining code, shortened (``--steps`` vision
and language steps, 15 each by default), and prints a hash of the weights it ends with, with the
CPU kind and thread count. Equal hashes at the same thread count: this machine computes the
README's bits (the full pretraining is the same code run longer). A different hash: expect a
different base and matrix, and compare against a run made here.

    python bench/base_fingerprint.py                # at torch's default thread count
    python bench/base_fingerprint.py --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import tempfile
import time
from pathlib import Path

import torch


def fingerprint(steps: int) -> str:
    from safetensors.torch import load_file

    from coin.config_load import load_config
    from coin.models.tiny.pretrain import _pretrain

    model = load_config(None).model
    short = dataclasses.replace(model.options.pretrain, steps=steps, vision_steps=steps)
    model = dataclasses.replace(model, options=dataclasses.replace(model.options, pretrain=short))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "base"
        _pretrain(model, work, log=lambda *_: None, progress=False)
        state = load_file(str(work / "model.safetensors"))
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].float().numpy().tobytes())
    return digest.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    from coin.machine import cpu_identity

    t0 = time.time()
    value = fingerprint(args.steps)
    print(json.dumps({"fingerprint": value, "steps": args.steps, "threads": torch.get_num_threads(),
                      "cpu": cpu_identity(), "torch": torch.__version__, "transformers": transformers.__version__,
                      "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
