"""O-LoRA's loss as released, over three tasks: every stored LoRA is penalised, and the L2 term is unsquared.

At the third task two LoRAs are stored; the orthogonality term must count both (a loss that
penalised only the last stored one would pass a two-task test), and the L2 term is each of the
new LoRA's tensors' unsquared norm, summed (O-LoRA's released ``torch.norm(param, p=2)``).
"""

from __future__ import annotations

import pytest
import torch

from coin.adapters import attach_adapter
from coin.adapters.bank import CURRENT, AdapterBank
from coin.config import AdapterConfig
from coin.methods import StageContext, build_method
from tinyvlm import tiny_samples, tiny_vlm, randomize_current as _randomize_current

TASKS = ["taskA", "taskB", "taskC"]


@pytest.fixture
def third_task(tmp_path):
    """Two tasks stored (random LoRAs standing for their training), the third's fresh LoRA randomised too."""
    vlm = tiny_vlm(seed=0)
    attach_adapter(vlm, AdapterConfig(type="lora", r=4, alpha=8.0, dropout=0.0, train_projector=True))
    data = {t: tiny_samples(tmp_path / "img", t, 4) for t in TASKS}
    method = build_method("olora", {"lambda_1": 0.5, "lambda_2": 0.1})
    bank = AdapterBank.of(vlm.model)
    for stage, task in enumerate(TASKS):
        ctx = StageContext(vlm=vlm, task=task, stage=stage, tasks=TASKS,
                           train_data={t: data[t] for t in TASKS[: stage + 1]}, seed=0)
        method.before_task(ctx)
        _randomize_current(bank, seed=stage)
        if stage < 2:
            method.after_task(ctx)
    return method, bank, ctx


def test_the_orthogonality_term_counts_every_stored_lora(third_task):
    method, bank, ctx = third_task
    assert bank.names == ["task01", "task02"]
    with torch.no_grad():
        orth = sum((m.lora_A[CURRENT].weight @ m.lora_A[old].weight.T).abs().sum()
                   for _, m in bank.layers for old in ("task01", "task02"))
        only_last = sum((m.lora_A[CURRENT].weight @ m.lora_A["task02"].weight.T).abs().sum() for _, m in bank.layers)
        method.loss(ctx, {}, None, torch.zeros(()))
    assert orth > 1.5 * only_last  # the first stored LoRA's share is not negligible
    assert method.last_terms()["orthogonal"] == pytest.approx(0.5 * orth.item(), rel=1e-5)


def test_the_l2_term_is_the_unsquared_norm_of_each_new_tensor(third_task):
    method, bank, ctx = third_task
    with torch.no_grad():
        norms = sum(torch.linalg.vector_norm(m.lora_A[CURRENT].weight) + torch.linalg.vector_norm(m.lora_B[CURRENT].weight)
                    for _, m in bank.layers)
        squared = sum(m.lora_A[CURRENT].weight.pow(2).sum() + m.lora_B[CURRENT].weight.pow(2).sum()
                      for _, m in bank.layers)
        total = method.loss(ctx, {}, None, torch.zeros(())).item()
    assert method.last_terms()["l2"] == pytest.approx(0.1 * norms.item(), rel=1e-5)
    assert abs(norms.item() - squared.item()) > 0.1 * norms.item()  # the two forms differ here
    assert total == pytest.approx(method.last_terms()["orthogonal"] + method.last_terms()["l2"], rel=1e-5)
    # only the current LoRA is penalised: the stored ones are frozen and out of the L2 term
    assert all(not a.requires_grad and not b.requires_grad for n in bank.names for _, a, b in bank.pairs(n))
