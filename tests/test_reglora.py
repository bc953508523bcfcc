"""SEFE's RegLoRA penalty is normalised as released: averaged over the adapted layers, then times lambda.

The released code (and MCITlib's port) takes each adapted layer's mean |(BA)[recorded]| and
averages over layers before multiplying by lambda = 2.5e3. A sum over layers makes one lambda
as many times stronger as the model has adapted layers (28 on the tiny model, 224 on
LLaVA-1.5-7B). These tests pin the mean on a plain PEFT model and over three tasks of the micro LLaVA.
"""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from coin.adapters import attach_adapter
from coin.adapters.merge import lora_layers
from coin.config import AdapterConfig, TrainConfig
from coin.engine.train import train_stage
from coin.methods import StageContext, build_method
from coin.methods.reglora import masked_mean_abs
from tinyvlm import tiny_samples, tiny_vlm

TASKS = ["taskA", "taskB", "taskC"]


class _Stack(torch.nn.Module):
    def __init__(self, layers: int) -> None:
        super().__init__()
        self.fc = torch.nn.ModuleList(torch.nn.Linear(6, 5, bias=False) for _ in range(layers))

    def forward(self, x):
        for f in self.fc:
            x = x + f(x)[..., :1]
        return x


def _peft(layers: int):
    torch.manual_seed(0)
    model = get_peft_model(_Stack(layers), LoraConfig(r=2, lora_alpha=4, target_modules=["0", "1"][:layers]))
    with torch.no_grad():  # every layer the same B A and the same recorded positions
        for layer in lora_layers(model).values():
            layer.lora_A["default"].weight.copy_(torch.arange(12.0).view(2, 6) / 10)
            layer.lora_B["default"].weight.copy_(torch.arange(10.0).view(5, 2) / 7 - 0.5)
    return model


def _record_first_entries(method, model, k: int = 4) -> None:
    method.records[0] = {name: torch.arange(k, dtype=torch.int32) for name in lora_layers(model)}
    method._masks = {}


def test_one_layer_and_two_identical_layers_give_the_same_penalty():
    penalties = []
    for layers in (1, 2):
        model = _peft(layers)
        method = build_method("reglora")
        _record_first_entries(method, model)
        penalties.append(method.penalty(model).item())
    assert penalties[0] > 0
    assert penalties[1] == pytest.approx(penalties[0], rel=1e-6)  # a sum over layers doubles it


def test_the_loss_adds_lambda_times_the_mean_over_layers_after_three_tasks(tmp_path):
    """Three tasks on the micro LLaVA: at the third, the records are the union of two tasks' and the
    loss term is lambda x the mean over the adapted layers of each layer's masked mean |BA|."""
    data = {t: tiny_samples(tmp_path / "img", t, 8) for t in TASKS}
    vlm = tiny_vlm(seed=0)
    attach_adapter(vlm, AdapterConfig(type="lora", r=4, alpha=8, dropout=0.0, train_projector=True))
    lam = 2.5e3
    method = build_method("reglora", {"lambda_": lam})
    for stage, task in enumerate(TASKS):
        ctx = StageContext(vlm=vlm, task=task, stage=stage, tasks=TASKS,
                           train_data={t: data[t] for t in TASKS[: stage + 1]}, seed=0)
        method.before_task(ctx)
        train_stage(ctx, data[task], TrainConfig(batch_size=4, lr=5e-3, epochs=1.0), [method], seed=stage,
                    progress=False)
        if stage < 2:
            method.after_task(ctx)
    assert sorted(method.records) == [0, 1]
    layers = lora_layers(vlm.model)
    terms = []
    with torch.no_grad():
        for name, layer in layers.items():
            mask = torch.zeros(layer.get_base_layer().weight.numel(), dtype=torch.bool)
            for stage in (0, 1):
                mask[method.records[stage][name].long()] = True
            b, a = layer.lora_B["default"].weight, layer.lora_A["default"].weight
            terms.append(masked_mean_abs(b, a, mask.view(layer.get_base_layer().weight.shape)))
        expected = lam * torch.stack(terms).mean()
        added = method.loss(ctx, {}, None, torch.zeros(())).item()
    assert len(terms) > 1 and expected.item() > 0
    assert added == pytest.approx(expected.item(), rel=1e-5)
    assert method.last_terms()["penalty"] == pytest.approx(expected.item(), rel=1e-5)
