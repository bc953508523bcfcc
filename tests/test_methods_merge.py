"""Merging LoRA into the base weights, KeepLoRA, SEFE's RegLoRA, and the cost every run reports.

All on the micro LLaVA of ``tinyvlm`` (fp32) or a one-layer PEFT model (bf16 base), offline.
"""

from __future__ import annotations

import json

import pytest
import torch

from coin.adapters import attach_adapter
from coin.adapters.merge import MergedWeights, lora_delta, lora_layers, unmergeable
from coin.config import AdapterConfig, TrainConfig
from coin.engine.train import train_stage
from coin.methods import StageContext, build_method
from coin.methods.keeplora import principal_rank, task_gradients
from tinyvlm import tiny_samples, tiny_vlm

TASKS = ["taskA", "taskB"]


def _vlm(r: int = 4, alpha: float = 8.0, adapter: str = "lora"):
    vlm = tiny_vlm(seed=0)
    extra = {"experts": 2} if adapter == "moelora" else {}
    attach_adapter(vlm, AdapterConfig(type=adapter, r=r, alpha=alpha, dropout=0.0, train_projector=True,
                                      options=extra))
    return vlm


@pytest.fixture
def data(tmp_path):
    return {t: tiny_samples(tmp_path / "img", t, 12) for t in TASKS}


def _ctx(vlm, data, stage: int) -> StageContext:
    return StageContext(vlm=vlm, task=TASKS[stage], stage=stage, tasks=TASKS,
                        train_data={t: data[t] for t in TASKS[: stage + 1]}, seed=0)


def _randomise_lora(model, seed: int = 1, scale: float = 0.3) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            for w in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
                w.copy_(torch.randn(w.shape, generator=gen) * scale)


def _logits(vlm, samples):
    vlm.model.eval()
    with torch.no_grad():
        return vlm.model(**vlm.train_batch(samples)).logits


def _base_weights(model) -> dict[str, torch.Tensor]:
    return {n: layer.get_base_layer().weight.detach().clone() for n, layer in lora_layers(model).items()}


def _train(vlm, method, data, stage: int, epochs: float = 1.0, lr: float = 5e-3):
    ctx = _ctx(vlm, data, stage)
    method.before_task(ctx)
    train_stage(ctx, data[ctx.task], TrainConfig(batch_size=4, lr=lr, epochs=epochs), [method], seed=stage,
                progress=False)
    return ctx


# --------------------------------------------------------------------------- the merge helper


def test_merge_is_exact_and_restarts_the_lora(data):
    vlm = _vlm()
    _randomise_lora(vlm.model)
    samples = data["taskA"][:3]
    before = _logits(vlm, samples)
    w0 = _base_weights(vlm.model)
    deltas = {n: lora_delta(layer) for n, layer in lora_layers(vlm.model).items()}
    assert all(d.abs().max() > 0 for d in deltas.values())
    merged = MergedWeights()
    merged.merge(vlm.model, tag=0)
    after = _logits(vlm, samples)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)  # merged forward == unmerged forward
    for n, layer in lora_layers(vlm.model).items():
        assert torch.equal(layer.get_base_layer().weight, w0[n] + deltas[n])  # W = W0 + scaling * B A
        assert not layer.lora_B["default"].weight.any()  # the next task starts from B = 0
    assert merged.numel() == sum(layer.lora_A["default"].weight.numel() + layer.lora_B["default"].weight.numel()
                                 for layer in lora_layers(vlm.model).values())


def test_merges_into_a_bf16_base_keep_updates_below_its_resolution():
    """Ten updates of 1e-3 on weights of 1.0 (bf16 spacing there: 7.8e-3): a running bf16 sum drops
    every one of them, the fp32 sum from W0 keeps them (1.0 + 0.01 rounds to 1.0078)."""
    from peft import LoraConfig, get_peft_model

    base = torch.nn.Sequential(torch.nn.Linear(4, 4, bias=False)).to(torch.bfloat16)
    with torch.no_grad():
        base[0].weight.fill_(1.0)
    model = get_peft_model(base, LoraConfig(r=1, lora_alpha=1, target_modules=["0"]))
    layer = next(iter(lora_layers(model).values()))
    layer.lora_A["default"].weight.data = layer.lora_A["default"].weight.data.float()
    layer.lora_B["default"].weight.data = layer.lora_B["default"].weight.data.float()
    merged, naive = MergedWeights(), torch.ones(4, 4, dtype=torch.bfloat16)
    for tag in range(10):
        with torch.no_grad():
            layer.lora_A["default"].weight.fill_(1.0)
            layer.lora_B["default"].weight.fill_(1e-3)
        naive = naive + lora_delta(layer).to(torch.bfloat16)
        merged.merge(model, tag, reset_a=False)
    weight = layer.get_base_layer().weight
    assert weight.dtype == torch.bfloat16
    assert torch.equal(naive, torch.ones(4, 4, dtype=torch.bfloat16))  # what W += BA in bf16 would have kept
    assert torch.equal(weight, torch.full((4, 4), 1.01).to(torch.bfloat16))
    assert weight[0, 0].item() > 1.0


def test_moelora_and_adapters_other_than_lora_are_refused():
    from coin.config import ConfigError
    from coin.config_load import from_dict

    for method in ("keeplora", "reglora"):
        with pytest.raises(ConfigError, match=f"adapter.type: method '{method}' merges .*'moelora'"):
            from_dict({"method": method, "adapter": {"type": "moelora", "experts": 2}})
        with pytest.raises(ConfigError, match=f"dist.strategy: method '{method}'.*'fsdp'"):
            from_dict({"method": method, "dist": {"strategy": "fsdp"}})
        assert from_dict({"method": method}).method == method
    vlm = _vlm(adapter="moelora")
    assert any("not a plain LoRA linear layer" in p for p in unmergeable(vlm.model))


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("name", ["keeplora", "reglora"])
def test_a_resumed_run_rebuilds_the_merged_model_bit_for_bit(name, data, tmp_path):
    """The engine's own save and load (``_save_state``, ``_save_adapter``, ``_load_stage``) on a fresh model."""
    from coin.engine.run import _load_stage, _save_adapter, _save_state

    vlm = _vlm()
    method = build_method(name, {"grad_samples": 8} if name == "keeplora" else {})
    for stage in range(2):
        ctx = _train(vlm, method, data, stage, epochs=1.0)
        method.after_task(ctx)
        d = tmp_path / f"stage{stage}"
        _save_state(d / f"method-{name}.safetensors", method.state_dict())
        _save_adapter(vlm, d / "adapter")
    want, logits = _base_weights(vlm.model), _logits(vlm, data["taskA"][:3])

    fresh, restored = _vlm(), build_method(name)
    for stage in range(2):
        _load_stage(fresh, [restored], tmp_path / f"stage{stage}")
    got = _base_weights(fresh.model)
    assert all(torch.equal(got[n], want[n]) for n in want)
    assert torch.equal(_logits(fresh, data["taskA"][:3]), logits)

    without = _vlm()  # the adapter alone (no restore) does not give the merged model back
    from coin.adapters import load_adapter

    load_adapter(without, tmp_path / "stage1" / "adapter")
    assert not torch.equal(_logits(without, data["taskA"][:3]), logits)


# --------------------------------------------------------------------------- KeepLoRA


def test_keeplora_starts_from_the_principal_subspace_of_w(data):
    vlm = _vlm()
    w0 = _base_weights(vlm.model)
    method = build_method("keeplora", {"grad_samples": 8})
    method.before_task(_ctx(vlm, data, 0))
    for n, w in w0.items():
        u = method.basis(n)
        s = torch.linalg.svdvals(w)
        k = u.shape[1]
        assert k == principal_rank(s, 0.6) and 0 < k < min(w.shape)
        assert (s[:k] ** 2).sum() < 0.6 * (s**2).sum() <= (s[: k + 1] ** 2).sum()  # the release: just under 60%
        torch.testing.assert_close(u.T @ u, torch.eye(k), atol=1e-5, rtol=0)
        captured = ((w @ u).norm() ** 2) / (w.norm() ** 2)  # the subspace holds that share of W's energy
        assert captured.item() == pytest.approx((s[:k] ** 2).sum().item() / (s**2).sum().item(), rel=1e-4)


def test_keeplora_a_is_frozen_orthogonal_to_the_stored_subspace_and_from_the_gradient(data):
    vlm = _vlm()
    method = build_method("keeplora", {"grad_samples": 8})
    ctx = _ctx(vlm, data, 0)
    method.before_task(ctx)
    layers = lora_layers(vlm.model)
    a0 = {n: layer.lora_A["default"].weight.detach().clone() for n, layer in layers.items()}
    for n, layer in layers.items():
        a, u = a0[n], method.basis(n)
        assert not layer.lora_A["default"].weight.requires_grad and layer.lora_B["default"].weight.requires_grad
        assert (a @ u).abs().max() < 1e-5  # A's rows (its columns in the paper's x W layout) are outside U
        torch.testing.assert_close(a @ a.T, torch.eye(a.shape[0]), atol=1e-5, rtol=0)
    # A spans the top singular directions of the projected gradient (randomized SVD = exact SVD here)
    from coin.methods.base import sample_indices

    idx = sample_indices(12, 8, 0, "keeplora", "taskA")  # the samples grad_samples=8 draws
    grads = task_gradients(vlm, [data["taskA"][i] for i in idx], layers, 4)
    for n, g in grads.items():
        u = method.basis(n)
        gp = g - (g @ u) @ u.T
        s = torch.linalg.svdvals(gp)
        r = a0[n].shape[0]
        assert (gp @ a0[n].T).norm() ** 2 >= 0.999 * (s[:r] ** 2).sum()
    train_stage(ctx, data["taskA"], TrainConfig(batch_size=4, lr=5e-3), [method], seed=0, progress=False)
    for n, layer in lora_layers(vlm.model).items():
        assert torch.equal(layer.lora_A["default"].weight, a0[n])  # frozen: training left A alone
        assert layer.lora_B["default"].weight.abs().max() > 0  # B trained


def test_keeplora_merges_base_plus_ba_and_later_updates_spare_earlier_directions(data):
    vlm = _vlm()
    w0 = _base_weights(vlm.model)
    method = build_method("keeplora", {"grad_samples": 8, "grow": "update"})
    ctx = _train(vlm, method, data, 0)
    layers = lora_layers(vlm.model)
    delta1 = {n: lora_delta(layer) for n, layer in layers.items()}
    k_before = {n: method.basis(n).shape[1] for n in layers}
    method.after_task(ctx)
    for n, layer in layers.items():
        assert torch.equal(layer.get_base_layer().weight, w0[n] + delta1[n])  # merged model = base + B A
        assert not layer.lora_B["default"].weight.any()
        u = method.basis(n)
        assert k_before[n] < u.shape[1] <= k_before[n] + 4  # the update's directions joined U
        assert (delta1[n] - delta1[n] @ u @ u.T).norm() <= 0.1 * delta1[n].norm()  # 0.99 of its energy: in U
    _train(vlm, method, data, 1)  # task 2: its update leaves task 1's and W's protected inputs alone
    for n, layer in lora_layers(vlm.model).items():
        delta2, u = lora_delta(layer), method.basis(n)
        assert delta2.abs().max() > 0
        assert (delta2 @ u).abs().max() <= 1e-5 * max(1.0, delta2.abs().max().item())


# --------------------------------------------------------------------------- RegLoRA


def test_reglora_records_the_top_two_percent_of_ba(data):
    vlm = _vlm()
    method = build_method("reglora")
    ctx = _train(vlm, method, data, 0)
    layers = lora_layers(vlm.model)
    products = {n: (layer.lora_B["default"].weight @ layer.lora_A["default"].weight).detach()
                for n, layer in layers.items()}
    method.after_task(ctx)
    for n, d in products.items():
        idx = method.records[0][n].long()
        k = -(-2 * d.numel() // 100)  # ceil(2% of the entries)
        assert len(idx) == k
        chosen = d.abs().flatten()[idx]
        others = torch.ones(d.numel(), dtype=torch.bool)
        others[idx] = False
        assert chosen.min() >= d.abs().flatten()[others].max()
    assert method.loss(_ctx(vlm, data, 1), {}, None, torch.zeros(())).item() == 0.0  # B = 0 after the merge


def test_reglora_recorded_positions_move_less_than_the_others(data):
    """Task 2 trained from the same state with and without the penalty: with it, its update at
    task 1's recorded positions is far smaller than elsewhere; without it, about the same."""
    ratios = {}
    for lam in (2.5e3, 0.0):
        torch.manual_seed(0)
        vlm = _vlm()
        method = build_method("reglora", {"lambda_": lam})
        method.after_task(_train(vlm, method, data, 0))
        _train(vlm, method, data, 1, epochs=2.0)
        at, off = [], []
        for n, layer in lora_layers(vlm.model).items():
            mask = method.mask(n, layer.get_base_layer().weight)
            d = lora_delta(layer).abs()
            at.append(d[mask].mean())
            off.append(d[~mask].mean())
        ratios[lam] = (torch.stack(at).mean() / torch.stack(off).mean()).item()
        if lam:
            assert method.last_terms()["penalty"] >= 0
    assert ratios[2.5e3] < 0.5 and ratios[2.5e3] < 0.5 * ratios[0.0], ratios  # measured: 0.25 against 1.11
    assert ratios[0.0] > 0.8, ratios


# --------------------------------------------------------------------------- cost


def test_cost_table_of_a_comparison_shows_mean_and_std_over_seeds():
    from coin.report.cost import cost_rows, cost_table

    costs = [{"trainable_params": 1000, "params_added_per_task": 0, "train_seconds": 10.0, "eval_seconds": 4.0,
              "peak_memory_mb": 100.0, "method_state_mb": 1.5},
             {"trainable_params": 1000, "params_added_per_task": 0, "train_seconds": 14.0, "eval_seconds": 4.0,
              "peak_memory_mb": 120.0}]
    table = cost_table(["a"], [costs])
    row = dict(zip(table.header, table.rows[0]))
    assert row["trainable parameters"] == "1,000" and row["parameters added per task"] == "0"
    assert row["train time (s)"] == "12.0 ± 2.8"
    assert row["eval time (s)"] == "4.0"  # no spread: no ± 0
    assert row["method state saved, all stages (MB)"] == "1.50 (n=1 of 2)"  # the seed that recorded it, said
    assert ["peak memory (MB)", "–"] in cost_rows({})  # an older run without the key


@pytest.mark.slow
def test_cost_is_recorded_per_stage_and_reported(micro_config, tmp_path):
    from coin.config_load import from_dict
    from coin.api import run
    from coin.report import write_comparison

    micro_config["method"] = "reglora"
    out = tmp_path / "reglora"
    result = run(from_dict(micro_config), out, progress=False, log=lambda *a: None)
    cost = result["cost"]
    assert set(cost) >= {"trainable_params", "params_added_per_task", "train_seconds", "eval_seconds",
                         "peak_memory_mb", "method_state_mb"}
    stages = sorted((out / "stages").iterdir())
    rows = [json.loads((d / "cost.json").read_text()) for d in stages]
    assert len(rows) == 3  # zero-shot and both tasks
    for key in ("train_seconds", "eval_seconds"):
        assert cost[key] > 0 and cost[key] == pytest.approx(sum(r[key] for r in rows), abs=0.11)
    assert cost["params_added_per_task"] == 0 and cost["trainable_params"] > 0
    saved = sum(p.stat().st_size for d in stages for p in d.glob("method-*.safetensors"))
    assert saved > 0 and cost["method_state_mb"] == pytest.approx(saved / 2**20, abs=1e-3)
    report = (out / "report.md").read_text()
    assert "## Cost" in report and "parameters added per task" in report and "method state saved" in report
    again = run(from_dict(micro_config), out, progress=False, log=lambda *a: None)  # finished: nothing reruns
    assert {k: again["cost"][k] for k in ("train_seconds", "eval_seconds", "method_state_mb")} == \
        {k: cost[k] for k in ("train_seconds", "eval_seconds", "method_state_mb")}
    md = write_comparison([out], tmp_path / "cmp").read_text()
    assert "## Cost" in md and "parameters added per task" in md
