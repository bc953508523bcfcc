"""The training loader: batches built ahead of the step in workers are the batches of the plain loop."""

from __future__ import annotations

import pytest
import torch

from coin.adapters import attach_adapter
from coin.config import AdapterConfig, TrainConfig
from coin.engine.loader import load_batches, micro_batches
from coin.engine.train import train_stage
from coin.methods import StageContext
from tinyvlm import tiny_samples, tiny_vlm


def _fresh():
    vlm = tiny_vlm(seed=0)
    torch.manual_seed(0)
    attach_adapter(vlm, AdapterConfig(r=4, alpha=8, dropout=0.1))  # dropout: the global RNG must not move
    return vlm


def test_workers_yield_the_same_batches_in_the_same_order(tmp_path):
    vlm = tiny_vlm(seed=0)
    samples = tiny_samples(tmp_path, "ColourA", 11)
    parts = [p for k in range(0, 11, 4) for p, _ in micro_batches(samples[k : k + 4], 0, 4, 2)]
    plain = list(load_batches(parts, vlm.train_batch, num_workers=0))
    ahead = list(load_batches(parts, vlm.train_batch, num_workers=2, prefetch=2))
    assert len(plain) == len(ahead) == len(parts) == 6
    for a, b in zip(plain, ahead):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_with_workers_equals_training_without(tmp_path):
    samples = tiny_samples(tmp_path, "ColourA", 10)
    weights, stats = [], []
    for workers in (0, 2):
        vlm = _fresh()
        torch.manual_seed(3)
        cfg = TrainConfig(batch_size=2, grad_accum=2, lr=1e-3, checkpoint_every=0, num_workers=workers)
        st = train_stage(StageContext(vlm=vlm, task="ColourA", stage=0, tasks=["ColourA"]), samples, cfg, [],
                         seed=1, progress=False)
        weights.append({n: p.detach().clone() for n, p in vlm.model.named_parameters() if p.requires_grad})
        stats.append((st.steps, st.final_loss, st.mean_loss))
    assert stats[0] == stats[1] and stats[0][0] == 3
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])



def test_ctrl_c_with_workers_still_ends_in_a_checkpoint(tmp_path):
    """Ctrl-C reaches the loader's workers too; they must outlive it so the step can finish and the
    loop write its checkpoint (a worker dying of it broke the step with a loader error)."""
    import multiprocessing
    import os
    import signal

    from coin.engine.train import Interrupted
    from coin.methods import Method

    class CtrlC(Method):
        calls = 0

        def loss(self, ctx, batch, outputs, loss):
            CtrlC.calls += 1
            if CtrlC.calls == 3:  # the first micro-batch of the second step: one more follows in it
                for child in multiprocessing.active_children():
                    os.kill(child.pid, signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
            return loss

    samples = tiny_samples(tmp_path, "ColourA", 16)
    cfg = TrainConfig(batch_size=2, grad_accum=2, lr=1e-3, checkpoint_every=0, num_workers=2)
    vlm = _fresh()
    with pytest.raises(Interrupted, match="at step 2 "):
        train_stage(StageContext(vlm=vlm, task="ColourA", stage=0, tasks=["ColourA"]), samples, cfg, [CtrlC()],
                    seed=1, progress=False, checkpoint_dir=tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "step-000002").is_dir()
