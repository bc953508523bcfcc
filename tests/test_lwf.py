"""LwF's two forms over three tasks.

Exemplar-free (``method_options.inputs: current``): the teacher is the model as the task starts
(not the stage-0 model, not the live student), it answers the new task's own batch, and no
earlier task's sample is kept. With a memory (``inputs: memory``, CoIN's row): at the third task
the memory holds M samples of each earlier task, answered by the model as the task starts.
"""

from __future__ import annotations

import copy

import pytest
import torch

from coin.adapters import attach_adapter
from coin.config import AdapterConfig, TrainConfig
from coin.config_load import from_dict
from coin.engine.lm_loss import forward_with_loss
from coin.engine.train import train_stage
from coin.methods import StageContext, build_method
from coin.methods.lwf import distillation_loss
from tinyvlm import tiny_samples, tiny_vlm

TASKS = ["taskA", "taskB", "taskC"]


def _ctx(vlm, data, stage: int) -> StageContext:
    return StageContext(vlm=vlm, task=TASKS[stage], stage=stage, tasks=TASKS,
                        train_data={t: data[t] for t in TASKS[: stage + 1]}, seed=0)


@pytest.fixture
def third(tmp_path):
    """A micro LLaVA trained through two tasks with exemplar-free LwF, the third task begun."""
    vlm = tiny_vlm(seed=0)
    attach_adapter(vlm, AdapterConfig(type="lora", r=4, alpha=8.0, dropout=0.0, train_projector=True))
    data = {t: tiny_samples(tmp_path / "img", t, 8) for t in TASKS}
    lwf = build_method("lwf", {"inputs": "current", "lambda_": 1.0})
    snapshots = []
    for stage in range(3):
        ctx = _ctx(vlm, data, stage)
        lwf.before_task(ctx)
        snapshots.append(copy.deepcopy(vlm.model))
        if stage < 2:
            train_stage(ctx, data[ctx.task], TrainConfig(batch_size=4, lr=1e-2, epochs=1.0), [lwf], seed=stage,
                        progress=False)
            lwf.after_task(ctx)
    return vlm, data, lwf, ctx, snapshots


def _move(model, seed: int = 5) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def _answer_logits(model, batch):
    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    model.eval()
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    return logits[keep]


def test_the_teacher_is_the_model_as_the_third_task_starts_on_its_own_batch(third):
    vlm, data, lwf, ctx, snapshots = third
    assert lwf.memory == [] and lwf.teacher  # nothing of taskA or taskB is kept, only the teacher's weights
    batch = vlm.train_batch(data["taskC"][:4])
    outputs = forward_with_loss(vlm.model, batch)
    assert lwf.loss(ctx, batch, outputs, torch.zeros(())).item() == pytest.approx(0.0, abs=1e-6)  # student = teacher
    _move(vlm.model)  # the student learns; the teacher stays as the task started
    vlm.model.train()
    outputs = forward_with_loss(vlm.model, batch)
    added = lwf.loss(ctx, batch, outputs, torch.zeros(()))
    student = _answer_logits(vlm.model, batch)
    expected = distillation_loss(student, _answer_logits(snapshots[2], batch), 2.0).item()
    stale = distillation_loss(student, _answer_logits(snapshots[1], batch), 2.0).item()
    assert expected > 1e-4 and abs(stale - expected) > 0.1 * expected  # the stage-2 teacher would differ
    assert added.item() == pytest.approx(expected, rel=1e-4)
    assert added.requires_grad  # the gradient flows into the student only
    added.backward()
    assert all(t.grad is None for t in lwf.teacher.values())


def test_the_first_task_distils_nothing_and_the_form_is_checked(third, tmp_path):
    vlm, data, _, _, _ = third
    lwf = build_method("lwf", {"inputs": "current"})
    ctx = _ctx(vlm, data, 0)
    lwf.before_task(ctx)
    batch = vlm.train_batch(data["taskA"][:2])
    assert lwf.loss(ctx, batch, forward_with_loss(vlm.model, batch), torch.tensor(1.5)).item() == 1.5
    with pytest.raises(ValueError, match="inputs must be one of memory, current"):
        build_method("lwf", {"inputs": "new"})
    with pytest.raises(Exception, match="method_options.inputs: lwf's exemplar-free form"):
        from_dict({"method": "lwf", "method_options": {"inputs": "current"}, "dist": {"strategy": "fsdp"}})


def test_the_memory_form_keeps_every_earlier_task_answered_by_the_model_as_the_task_starts(tmp_path):
    vlm = tiny_vlm(seed=0)
    attach_adapter(vlm, AdapterConfig(type="lora", r=4, alpha=8.0, dropout=0.0, train_projector=True))
    data = {t: tiny_samples(tmp_path / "img", t, 8) for t in TASKS}
    lwf = build_method("lwf", {"samples": 3, "lambda_": 1.0})
    for stage in range(3):
        ctx = _ctx(vlm, data, stage)
        lwf.before_task(ctx)
        if stage < 2:
            train_stage(ctx, data[ctx.task], TrainConfig(batch_size=4, lr=1e-2, epochs=1.0), [lwf], seed=stage,
                        progress=False)
    assert sorted(s.task for s, _ in lwf.memory) == ["taskA"] * 3 + ["taskB"] * 3
    samples = [s for s, _ in lwf.memory]
    now = _answer_logits(vlm.model, vlm.train_batch(samples))
    torch.testing.assert_close(torch.cat([t for _, t in lwf.memory]), now, rtol=1e-5, atol=1e-5)
