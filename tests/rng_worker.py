"""What tests/test_rng_resume.py launches under torchrun (gloo on the CPU): a stage trained by several
processes with LoRA dropout and a method whose draws differ by process (as dropout's do on GPUs, where
each process's rows have their own lengths), once uninterrupted, once interrupted at its third step and
resumed from the checkpoint. Each process writes OUT/rank<r>.json: whether it ended with the
uninterrupted run's weights, bit for bit. Its helpers (``Draws``, ``seed``, ``fresh``, ``weights``) serve the
single-process tests there too."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tinyvlm import tiny_samples, tiny_vlm  # noqa: E402

from coin.adapters import attach_adapter  # noqa: E402
from coin.config import AdapterConfig, TrainConfig  # noqa: E402
from coin.engine import dist  # noqa: E402
from coin.engine.train import train_stage  # noqa: E402
from coin.methods import Method, StageContext  # noqa: E402


class Draws(Method):
    """Scales the loss by draws from torch's, Python's and NumPy's generators, as a method's hook may, their
    number depending on the process (1 in a single one); raises (as a kill would) at micro-batch ``stop_at``,
    before drawing. tests/test_rng_resume.py uses it in one process too."""

    name = "draws"

    def __init__(self, stop_at: int = 0) -> None:
        super().__init__()
        self.stop_at, self.calls = stop_at, 0

    def loss(self, ctx, batch, outputs, loss):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        k = 1 + 3 * dist.rank()
        draw = torch.rand(k).mean().item() + sum(random.random() for _ in range(k)) / k + float(np.random.rand(k).mean())
        return loss * (1.0 + draw)


def seed(s: int) -> None:  # what coin.engine.run.seed_everything does at the start of every process
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def fresh():
    vlm = tiny_vlm(seed=0)
    torch.manual_seed(0)
    attach_adapter(vlm, AdapterConfig(r=4, alpha=8, dropout=0.1))  # dropout draws from torch's generator
    return vlm


def weights(vlm) -> dict:
    return {n: p.detach().clone() for n, p in vlm.model.named_parameters() if p.requires_grad}


def main(out: Path) -> None:
    import torch.distributed as tdist

    tdist.init_process_group("gloo")
    rank = dist.rank()
    samples = tiny_samples(out / f"images-{rank}", "ColourA", 16)  # 4 steps of 2 x 2 processes
    cfg = TrainConfig(batch_size=2, lr=1e-3, checkpoint_every=1, num_workers=0)

    def ctx(vlm):
        return StageContext(vlm=vlm, task="ColourA", stage=0, tasks=["ColourA"])

    seed(5)
    ref = fresh()
    train_stage(ctx(ref), samples, cfg, [Draws()], seed=1, progress=False)

    seed(5)
    vlm = fresh()
    try:
        train_stage(ctx(vlm), samples, cfg, [Draws(stop_at=3)], seed=1, progress=False,
                    checkpoint_dir=out / "checkpoints")
        raise AssertionError("the stage was not interrupted")
    except KeyboardInterrupt:
        pass
    dist.barrier()

    seed(5)  # a relaunched process seeds everything from the run's seed again
    resumed = fresh()
    logs: list[str] = []
    train_stage(ctx(resumed), samples, cfg, [Draws()], seed=1, progress=False, checkpoint_dir=out / "checkpoints",
                log=logs.append)
    a, b = weights(ref), weights(resumed)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    (out / f"rank{rank}.json").write_text(json.dumps({"equal": all(torch.equal(a[k], b[k]) for k in a),
                                                      "max_diff": diff, "log": logs}))
    tdist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
