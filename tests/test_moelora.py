"""MoELoRA: N = 1 is LoRA, the fused layer is the per-expert loop, and PEFT save/load is exact."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from torch import nn

from coin.adapters import attach_adapter, load_adapter
from coin.adapters.moelora import MoELoRA
from coin.adapters.moelora_layer import (DEFAULT_EXPERTS, MoELoraConfig, MoELoraLinear, count_experts,
                                         load_moelora, moelora_config)
from coin.config import ConfigError
from coin.config_load import from_dict, section
from tinyvlm import tiny_samples, tiny_vlm


class Block(nn.Module):
    """Two linear layers, enough to see adapters compose through a non-linearity."""

    def __init__(self, d_in: int = 24, d_hidden: int = 40, d_out: int = 16) -> None:
        super().__init__()
        self.up = nn.Linear(d_in, d_hidden)
        self.down = nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


def _randomise_b(model: nn.Module, seed: int = 0) -> None:
    """PEFT initialises B = 0 (a no-op adapter); give it values so the tests see the update."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1)


def reference_moelora(x, A, B, Wg, n: int, scaling: float, x_experts=None) -> torch.Tensor:
    """The paper's formula as the original code computes it: one expert at a time.

    ``x_experts`` is the experts' input when it differs from the gate's (dropout)."""
    k = A.shape[0] // n
    xe = x if x_experts is None else x_experts
    gate = torch.softmax(x @ Wg.T, dim=-1) if n > 1 else torch.ones(*x.shape[:-1], 1, dtype=x.dtype)
    out = 0
    for i in range(n):
        A_i, B_i = A[i * k : (i + 1) * k], B[:, i * k : (i + 1) * k]
        out = out + gate[..., i : i + 1] * ((xe @ A_i.T) @ B_i.T)
    return out * scaling


def test_one_expert_is_lora():
    torch.manual_seed(0)
    base = Block()
    lora = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=["up", "down"]))
    moe = get_peft_model(copy.deepcopy(base), moelora_config(r=8, alpha=16, num_experts=1, target_modules=["up", "down"]))
    _randomise_b(lora)
    assert set(lora.state_dict()) == set(moe.state_dict())  # no gate: same parameters, same checkpoint
    moe.load_state_dict(lora.state_dict())
    x = torch.randn(3, 5, 24)
    y_lora, y_moe = lora(x), moe(x)
    torch.testing.assert_close(y_moe, y_lora, rtol=1e-6, atol=1e-6)
    y_lora.square().sum().backward()
    y_moe.square().sum().backward()
    grads = {n: p.grad for n, p in lora.named_parameters() if p.requires_grad}
    for n, p in moe.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_fused_equals_per_expert_loop(n):
    torch.manual_seed(n)
    model = get_peft_model(nn.Sequential(nn.Linear(32, 24)).double(),
                           moelora_config(r=16, alpha=24, num_experts=n, target_modules=["0"]))
    _randomise_b(model, seed=n)
    layer = next(m for m in model.modules() if isinstance(m, MoELoraLinear))
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    Wg, W, b = layer.lora_gate["default"].weight, layer.base_layer.weight, layer.base_layer.bias
    x = torch.randn(4, 7, 32, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)

    y = model(x)
    y_ref = F.linear(x_ref, W, b) + reference_moelora(x_ref, A, B, Wg, n, layer.scaling["default"])
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)

    upstream = torch.randn_like(y)
    params = [A, B, Wg]
    g = torch.autograd.grad(y, [x, *params], upstream)
    g_ref = torch.autograd.grad(y_ref, [x_ref, *params], upstream)
    for name, a, r in zip(["x", "lora_A", "lora_B", "lora_gate"], g, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12, msg=lambda m, name=name: f"grad of {name}: {m}")
    assert g[3].abs().sum() > 0, "the gate must receive a gradient"


def test_dropout_reaches_the_experts_but_not_the_gate():
    """One dropout mask shared by every expert (the documented difference from the original's
    per-expert masks): the reference applies the same dropped input to each expert."""
    torch.manual_seed(0)
    config = moelora_config(r=8, alpha=16, num_experts=4, target_modules=["0"], dropout=0.5)
    model = get_peft_model(nn.Sequential(nn.Linear(12, 10)).double(), config)
    _randomise_b(model)
    layer = next(m for m in model.modules() if isinstance(m, MoELoraLinear))
    model.train()
    x = torch.randn(3, 12, dtype=torch.float64)
    torch.manual_seed(7)
    y = layer.mixture("default", x)
    torch.manual_seed(7)
    dropped = F.dropout(x, 0.5, training=True)
    A, B, Wg = (layer.lora_A["default"].weight, layer.lora_B["default"].weight, layer.lora_gate["default"].weight)
    expected = reference_moelora(x, A, B, Wg, 4, layer.scaling["default"], x_experts=dropped)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    model.eval()  # no dropout at evaluation: the fused single-matmul path
    torch.testing.assert_close(layer.mixture("default", x), reference_moelora(x, A, B, Wg, 4, layer.scaling["default"]))


def test_gates_are_a_distribution_per_token():
    torch.manual_seed(0)
    model = get_peft_model(Block(), moelora_config(r=8, alpha=16, num_experts=4, target_modules=["up"]))
    layer = next(m for m in model.modules() if isinstance(m, MoELoraLinear))
    g = layer.gate("default", torch.randn(2, 9, 24))
    assert g.shape == (2, 9, 4)
    torch.testing.assert_close(g.sum(-1), torch.ones(2, 9))
    assert not torch.allclose(g[0, 0], g[0, 1]), "different tokens should get different gates"


def test_cannot_merge_gated_experts_but_one_expert_merges():
    torch.manual_seed(0)
    x = torch.randn(2, 24)
    gated = get_peft_model(Block(), moelora_config(r=8, alpha=16, num_experts=2, target_modules=["up"]))
    with pytest.raises(ValueError, match="cannot be merged"):
        gated.merge_and_unload()
    single = get_peft_model(Block(), moelora_config(r=8, alpha=16, num_experts=1, target_modules=["up"]))
    _randomise_b(single)
    before = single(x)
    torch.testing.assert_close(single.merge_and_unload()(x), before, rtol=1e-5, atol=1e-6)


def test_rank_must_divide_into_experts():
    with pytest.raises(ValueError, match="divide"):
        moelora_config(r=6, alpha=12, num_experts=4, target_modules=["up"])
    # the config says so before any weights load, each problem by its full key
    with pytest.raises(ConfigError) as e:
        from_dict({"adapter": {"type": "moelora", "r": 6, "experts": 4}})
    assert e.value.problems == ["adapter.r (6) must be divisible by adapter.experts (4)"]
    with pytest.raises(ConfigError) as e:
        from_dict({"adapter": {"type": "moelora", "r": 8, "experts": 0}})
    assert e.value.problems == ["adapter.experts must be >= 1, got 0"]
    with pytest.raises(ConfigError) as e:
        from_dict({"adapter": {"type": "moelora", "r": 8, "experts": "four"}})
    assert e.value.problems == ["adapter.experts must be int, got 'four'"]
    assert from_dict({"adapter": {"type": "moelora", "r": 8, "experts": 4}}).adapter.options.experts == 4
    assert MoELoRA.check_section(section("adapter", type="moelora", r=8, experts=2)) == []


def test_experts_is_moelora_s_own_key_with_the_layer_s_default():
    assert section("adapter", type="moelora").options.experts == DEFAULT_EXPERTS == MoELoraConfig().num_experts
    with pytest.raises(ConfigError, match="unknown key 'adapter.experts' for adapter.type 'lora'"):
        section("adapter", type="lora", experts=4)


def _adapter_cfg(experts: int):
    return section("adapter", type="moelora", r=8, alpha=16.0, dropout=0.0, train_projector=True, experts=experts)


def test_peft_save_load_round_trip_is_exact(tmp_path):
    vlm = tiny_vlm(seed=0)
    attach_adapter(vlm, _adapter_cfg(4))
    assert set(count_experts(vlm.model).values()) == {4}
    _randomise_b(vlm.model)
    batch = vlm.train_batch(tiny_samples(tmp_path / "img", "A", 3))
    vlm.model.eval()
    with torch.no_grad():
        logits = vlm.model(**batch).logits
    vlm.model.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert any(".lora_gate." in k for k in saved) and any("multi_modal_projector" in k for k in saved)

    # 1) coin's path: attach a fresh adapter to the same base, then load the weights into it
    other = tiny_vlm(seed=0)
    attach_adapter(other, _adapter_cfg(4))
    load_adapter(other, tmp_path / "adapter")
    # 2) PEFT's path: rebuild the wrapper from adapter_config.json (num_experts saved there)
    third = tiny_vlm(seed=0)
    third.model = load_moelora(third.model, tmp_path / "adapter")
    for v in (other, third):
        v.model.eval()
        with torch.no_grad():
            assert torch.equal(v.model(**batch).logits, logits)
    reference = vlm.model.state_dict()
    for k, t in other.model.state_dict().items():
        assert torch.equal(t, reference[k]), k


def test_loading_into_a_model_with_other_experts_fails(tmp_path):
    vlm = tiny_vlm(seed=0)
    attach_adapter(vlm, _adapter_cfg(4))
    vlm.model.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    other = tiny_vlm(seed=0)
    attach_adapter(other, _adapter_cfg(2))
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_adapter(other, tmp_path / "adapter")


def test_a_training_step_moves_every_moelora_parameter(tmp_path):
    vlm = tiny_vlm(seed=1)
    attach_adapter(vlm, _adapter_cfg(2))
    _randomise_b(vlm.model)
    trainable = {n: p for n, p in vlm.model.named_parameters() if p.requires_grad}
    assert any("lora_gate" in n for n in trainable)
    loss = vlm.model(**vlm.train_batch(tiny_samples(tmp_path, "A", 2))).loss
    loss.backward()
    missing = [n for n, p in trainable.items() if "lora_" in n and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing, missing[:3]


@pytest.mark.parametrize("experts", [1, 4])
def test_a_is_drawn_from_normal_0_001_as_coin_s_moelora_and_kaiming_on_request(experts):
    """CoIN's MoELoRA draws A from normal(0, 0.01) (B = 0); ``adapter.init: kaiming`` keeps PEFT's LoRA init."""
    for init in ("normal", "kaiming"):
        vlm = tiny_vlm(seed=0)
        torch.manual_seed(0)
        cfg = section("adapter", type="moelora", r=8, alpha=16.0, dropout=0.0, experts=experts, init=init)
        attach_adapter(vlm, cfg)
        a = torch.cat([m.lora_A["default"].weight.flatten() for m in vlm.model.modules()
                       if isinstance(m, MoELoraLinear)])
        bs = [m.lora_B["default"].weight for m in vlm.model.modules() if isinstance(m, MoELoraLinear)]
        assert all(not b.any() for b in bs)
        if init == "normal":
            assert abs(a.std().item() - 0.01) < 0.001 and abs(a.mean().item()) < 0.001
        else:  # Kaiming-uniform over the 32 inputs of the micro LM: bound 1/sqrt(32), std about 0.10
            assert a.abs().max() <= 1 / 32 ** 0.5 + 1e-6 and a.std().item() > 0.05
    with pytest.raises(ConfigError, match="adapter.init must be one of normal, kaiming"):
        section("adapter", type="moelora", init="xavier")
