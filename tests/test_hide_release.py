"""HiDe-LLaVA as released (issue #32): only task t's expert trains, in every layer; below the last layer
the test-time forward applies the summed factors (sum_k B_k)(sum_k A_k) x, cross terms included; the last
layer mixes the experts' outputs per input. Three tasks throughout, so sums and cross terms are not pairs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coin.adapters.bank import AdapterBank
from coin.adapters.routing import MixedVLM, RoutedVLM, instruction_features, vision_features
from coin.errors import OptionsError
from coin.methods import build_method
from tinyvlm import THREE_TASKS as TASKS, learn_stages, randomize_current as _randomize_current, stage_ctx, three_task_stream



@pytest.fixture
def three(tmp_path):
    """A micro LLaVA (two decoder layers) with LoRA r=4, and three tasks of 6 samples with their own prompt."""
    return three_task_stream(tmp_path / "img")


def _ctx(vlm, data, stage: int):
    return stage_ctx(vlm, data, stage, TASKS)


def _learn(method, vlm, data, stages: int) -> AdapterBank:
    """Stages 0..stages-1 through the method's hooks (each task's 'training' draws its expert at random)."""
    return learn_stages(method, vlm, data, stages)


def _module(bank: AdapterBank, layer: int):
    """The first LoRA layer of decoder layer ``layer``."""
    return next((n, m) for n, m in bank.layers if f".layers.{layer}." in n)


def _answer_capturing(model, samples, modules) -> dict:
    """Run ``model.generate`` for one token; each module's input and final output at the prefill (the bank's
    hook registered first, so this later hook sees what the layer hands on)."""
    seen, handles = {}, []
    for name, m in modules:
        def hook(module, args, output, name=name):
            seen.setdefault(name, (args[0].detach().clone(), output.detach().clone()))
        handles.append(m.register_forward_hook(hook))
    try:
        model.generate(samples, 1)
    finally:
        for h in handles:
            h.remove()
    return seen


def _outputs_sum(m, names, x, weights=None) -> torch.Tensor:
    """sum_k w_k * scaling * B_k A_k x: each expert's own output, weighted (per row when ``weights`` is 2-D)."""
    out = torch.zeros(*x.shape[:-1], m.base_layer.out_features)
    for k, n in enumerate(names):
        h = x @ m.lora_A[n].weight.T @ m.lora_B[n].weight.T * m.scaling[n]
        w = 1.0 if weights is None else weights[:, k].view(-1, *([1] * (h.dim() - 1)))
        out = out + w * h
    return out


# --------------------------------------------------------------------------- test time


@torch.no_grad()
def test_a_lower_layer_applies_the_summed_factors_with_their_cross_terms(three):
    vlm, data = three
    method = build_method("hide")
    assert method.opts.fusion == "factors"  # the released fusion is the default
    bank = _learn(method, vlm, data, 3)
    assert bank.names == ["task01", "task02", "task03"]
    lower, last = _module(bank, 0), _module(bank, bank.last_layer)
    samples = [data[t][1] for t in TASKS]
    seen = _answer_capturing(method.eval_model(_ctx(vlm, data, 2), vlm), samples, [lower, last])

    name, m = lower
    x, y = seen[name]
    A = sum(m.lora_A[n].weight for n in bank.names)  # by hand from the stored tensors
    B = sum(m.lora_B[n].weight for n in bank.names)
    scaling = m.scaling["task01"]
    assert all(m.scaling[n] == scaling for n in bank.names)
    fused = scaling * (x @ A.T @ B.T)  # (B1 + B2 + B3)(A1 + A2 + A3) x: B_j A_k for j != k included
    torch.testing.assert_close(y, m.base_layer(x) + fused, atol=1e-5, rtol=1e-5)
    cross = fused - _outputs_sum(m, bank.names, x)
    assert cross.abs().max() > 1e-2  # the cross terms are there, and large enough to tell apart

    name, m = last  # the last layer: each row's softmax(sim / 0.1) mix of the experts' outputs
    x, y = seen[name]
    w = method.weights(vlm, samples)
    sim = (F.normalize(vision_features(vlm, samples), dim=-1) @ F.normalize(method.vision, dim=-1).T
           + F.normalize(instruction_features(vlm, samples), dim=-1) @ F.normalize(method.text, dim=-1).T) / 2
    torch.testing.assert_close(w, torch.softmax(sim / 0.1, dim=-1))
    assert w.argmax(-1).tolist() == [0, 1, 2]
    torch.testing.assert_close(y, m.base_layer(x) + _outputs_sum(m, bank.names, x, w), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_fusion_outputs_keeps_coins_former_sum_of_expert_outputs(three):
    vlm, data = three
    method = build_method("hide", {"fusion": "outputs"})
    bank = _learn(method, vlm, data, 3)
    lower = _module(bank, 0)
    seen = _answer_capturing(method.eval_model(_ctx(vlm, data, 2), vlm), [data[t][2] for t in TASKS], [lower])
    name, m = lower
    x, y = seen[name]
    torch.testing.assert_close(y, m.base_layer(x) + _outputs_sum(m, bank.names, x), atol=1e-5, rtol=1e-5)


def test_the_fusion_option_is_checked_by_name():
    with pytest.raises(OptionsError, match=r"method_options\.fusion must be one of factors, outputs, got 'sum'"):
        build_method("hide", {"fusion": "sum"})


@torch.no_grad()
def test_the_bank_fuses_the_factors_of_the_adapters_it_is_given(three):
    """``set_mix(..., fuse=True)``: the adapters with weight 1 fused, those with 0 left out; other weights refused."""
    vlm, _ = three
    bank = AdapterBank.of(vlm.model)
    for k in range(3):
        _randomize_current(bank, seed=20 + k)
        bank.store(f"task0{k + 1}")
    bank.clear_current()
    bank.set_mix([1.0, 0.0, 1.0], fuse=True)
    _, m = _module(bank, 0)
    x = torch.randn(2, 5, m.in_features, generator=torch.Generator().manual_seed(0))
    A = m.lora_A["task01"].weight + m.lora_A["task03"].weight
    B = m.lora_B["task01"].weight + m.lora_B["task03"].weight
    torch.testing.assert_close(m(x), m.base_layer(x) + m.scaling["task01"] * (x @ A.T @ B.T), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="fused adapters take weights 0 or 1"):
        bank.set_mix([1.0, 0.5, 1.0], fuse=True)


# --------------------------------------------------------------------------- training


@torch.no_grad()
def test_while_the_third_task_trains_only_its_own_expert_is_in_the_forward(three):
    """At stage 3 the training forward equals the model with only ``default`` active, in every layer."""
    vlm, data = three
    method = build_method("hide")
    bank = _learn(method, vlm, data, 2)
    method.before_task(_ctx(vlm, data, 2))
    _randomize_current(bank, seed=7)  # task C's expert, part-way through its training
    batch = {k: v for k, v in vlm.train_batch(data["taskC"][:3]).items() if k != "labels"}
    vlm.model.train()  # the training forward (dropout is 0)
    got = vlm.model(**batch).logits
    saved = {n: [m.lora_B[n].weight.detach().clone() for _, m in bank.layers] for n in bank.names}
    try:  # the same model with the stored experts written out of it: only `default` acts
        for n in bank.names:
            for _, m in bank.layers:
                m.lora_B[n].weight.zero_()
        alone = vlm.model(**batch).logits
    finally:
        for n, weights in saved.items():
            for (_, m), w in zip(bank.layers, weights):
                m.lora_B[n].weight.copy_(w)
    torch.testing.assert_close(got, alone, atol=1e-6, rtol=1e-6)
    bank.set_mix(1.0)  # the test can fail: adding the stored experts changes the output
    assert not torch.allclose(vlm.model(**batch).logits, alone, atol=1e-3)


# --------------------------------------------------------------------------- routing record


@torch.no_grad()
def test_the_evaluator_records_each_inputs_top_last_layer_expert_by_its_test_task(three):
    """``RoutedVLM.take``: per test task, how many inputs had each expert as their largest last-layer weight."""
    vlm, data = three
    method = build_method("hide")
    _learn(method, vlm, data, 3)
    model = method.eval_model(_ctx(vlm, data, 2), vlm)
    assert isinstance(model, MixedVLM) and isinstance(model, RoutedVLM)
    samples = [data["taskA"][0], data["taskC"][1], data["taskA"][2], data["taskB"][3]]
    model.generate(samples, 1)
    assert model.take("taskA") == {"taskA": 2, "taskB": 0, "taskC": 0}
    assert model.take("taskC") == {"taskA": 0, "taskB": 0, "taskC": 1}
    assert model.take("taskA") == {"taskA": 0, "taskB": 0, "taskC": 0}  # taken: counted once
