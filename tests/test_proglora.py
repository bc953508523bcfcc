"""ProgLoRA, dynamic form (issue #32): its defining properties on three tasks with the micro model.

- while a task trains, the earlier blocks are frozen and every adapted layer adds them with the
  allocation weights ``exp((cos(key_t, key_j) - 1) / allocation_temperature)`` (hand-checked);
- at test time each input's recall weights are ``softmax(cos(input, key) / temperature)`` and its
  block weights are the recall weights times the allocation matrix (hand-checked, also in the layers);
- a method restored from its saved state gives the same weights.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load, save

from coin.adapters.bank import CURRENT, AdapterBank
from coin.adapters.routing import MixedVLM
from coin.config import ConfigError, TrainConfig
from coin.config_load import from_dict
from coin.engine.train import train_stage
from coin.errors import OptionsError
from coin.methods import build_method
from tinyvlm import (THREE_HELD_OUT as HELD_OUT, THREE_TASKS as TASKS, learn_stages, prompt_feature as _hand_feature,
                     randomize_current as _randomize_current, stage_ctx, three_task_stream)

# temperatures at which every weight is well inside (0, 1), so a wrong weight shows
OPTS = {"temperature": 0.5, "allocation_temperature": 0.5}


@pytest.fixture
def three(tmp_path):
    """A micro LLaVA (two decoder layers) with LoRA r=4, and three tasks of 6 samples with their own prompt."""
    return three_task_stream(tmp_path / "img")


def _ctx(vlm, data, stage: int):
    return stage_ctx(vlm, data, stage, TASKS)


def _learn(method, vlm, data, stages: int) -> AdapterBank:
    """Stages 0..stages-1 through the method's hooks (each task's 'training' draws its block at random)."""
    return learn_stages(method, vlm, data, stages)


def _hand_keys(vlm, data) -> torch.Tensor:
    return torch.stack([torch.stack([_hand_feature(vlm, s.prompt) for s in data[t]]).mean(0) for t in TASKS])


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def _hand_allocation(keys: torch.Tensor, temperature: float) -> torch.Tensor:
    n = keys.shape[0]
    m = torch.eye(n)
    for t in range(n):
        # the softmax over blocks 0..t of cos(key_t, key_j) / T, each divided by the current block's share
        p = torch.softmax(torch.tensor([_cos(keys[t], keys[j]) for j in range(t + 1)]) / temperature, dim=0)
        for j in range(t):
            m[t, j] = p[j] / p[t]
    return m


def _held_out(data) -> list:
    return [dataclasses.replace(data[t][k], id=f"held-{t}", prompt=HELD_OUT[t]) for k, t in enumerate(TASKS)]


def _capture(bank: AdapterBank, run) -> dict:
    """Each LoRA layer's first input and output while ``run()`` runs."""
    seen, handles = {}, []
    for name, m in bank.layers:
        def hook(module, args, output, name=name):
            seen.setdefault(name, (args[0].detach().clone(), output.detach().clone()))
        handles.append(m.register_forward_hook(hook))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return seen


def _delta(m, name: str, x: torch.Tensor) -> torch.Tensor:
    return m.scaling[name] * (x @ m.lora_A[name].weight.T @ m.lora_B[name].weight.T)


# --------------------------------------------------------------------------- options and refusals


def test_options_are_checked_and_bank_refusals_name_their_key():
    method = build_method("proglora")
    assert (method.opts.temperature, method.opts.allocation_temperature, method.opts.samples) == (0.05, 0.05, 1000)
    with pytest.raises(OptionsError, match=r"method_options\.allocation_temperature must be > 0, got 0"):
        build_method("proglora", {"allocation_temperature": 0})
    with pytest.raises(OptionsError, match=r"method_options\.temperature must be > 0, got -1"):
        build_method("proglora", {"temperature": -1})
    with pytest.raises(OptionsError, match=r"method_options\.samples must be >= 1, got 0"):
        build_method("proglora", {"samples": 0})
    with pytest.raises(ConfigError, match=r"adapter.type: method 'proglora' keeps one plain LoRA per task"):
        from_dict({"method": "proglora", "adapter": {"type": "moelora"}})
    from coin.engine.fsdp import refusal

    assert "proglora" in (refusal(type(method), "proglora") or "")  # refused under dist.strategy fsdp, as DISCO


def test_the_shipped_synth_config_loads():
    from pathlib import Path

    from coin.config_load import load_config

    cfg = load_config(Path(__file__).parent.parent / "coin" / "configs" / "synth" / "proglora.yaml")
    assert cfg.method == "proglora"


# --------------------------------------------------------------------------- task-aware allocation


def test_earlier_blocks_are_frozen_and_mixed_with_the_allocation_weights_while_a_task_trains(three):
    vlm, data = three
    method = build_method("proglora", OPTS)
    bank = _learn(method, vlm, data, 2)
    keys = _hand_keys(vlm, data)
    ctx = _ctx(vlm, data, 2)
    method.before_task(ctx)
    # allocation weights by hand: block j's softmax share over blocks 0..2 relative to the current block's
    want = [float(torch.exp(torch.tensor((_cos(keys[2], keys[j]) - 1.0) / 0.5))) for j in range(2)]
    torch.testing.assert_close(torch.tensor(bank.weights), torch.tensor(want), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(method.allocation(), _hand_allocation(keys, 0.5), atol=1e-5, rtol=1e-4)
    assert all(0.01 < w < 0.99 for w in want), want  # neither off nor the current block's weight: the test can fail
    # every adapted layer adds the current block at 1 and each earlier block at its allocation weight
    _randomize_current(bank, seed=7)
    batch = {k: v for k, v in vlm.train_batch(data["taskC"][:2]).items() if k != "labels"}
    with torch.no_grad():
        seen = _capture(bank, lambda: vlm.model(**batch))
    for name, m in bank.layers:
        x, y = seen[name]
        mix = _delta(m, CURRENT, x) + sum(w * _delta(m, n, x) for w, n in zip(want, ["task01", "task02"]))
        torch.testing.assert_close(y, m.base_layer(x) + mix, atol=1e-5, rtol=1e-5, msg=name)
    # the earlier blocks are frozen: not trainable, and unchanged by training while the current block moves
    trainable = [n for n, p in vlm.model.named_parameters() if p.requires_grad]
    assert not [n for n in trainable if ".task01." in n or ".task02." in n]
    before = {n: [p.detach().clone() for p in (m.lora_A[n].weight, m.lora_B[n].weight) for _, m in bank.layers]
              for n in ("task01", "task02", CURRENT)}
    train_stage(ctx, data["taskC"], TrainConfig(batch_size=3, lr=1e-2), [method], seed=2, progress=False)
    for n in ("task01", "task02", CURRENT):
        after = [p for p in (m.lora_A[n].weight, m.lora_B[n].weight) for _, m in bank.layers]
        same = all(torch.equal(a, b) for a, b in zip(before[n], after))
        assert same == (n != CURRENT), n
    assert bank.weights == want or torch.allclose(torch.tensor(bank.weights), torch.tensor(want))
    method.after_task(ctx)
    assert bank.names == ["task01", "task02", "task03"] and method.keys.shape[0] == 3


def test_the_first_task_trains_alone_and_the_second_mixes_the_first(three):
    vlm, data = three
    method = build_method("proglora", OPTS)
    bank = AdapterBank.of(vlm.model)
    method.before_task(_ctx(vlm, data, 0))
    assert bank.names == [] and bank.weights == []
    _randomize_current(bank, seed=0)
    method.after_task(_ctx(vlm, data, 0))
    method.before_task(_ctx(vlm, data, 1))
    keys = _hand_keys(vlm, data)
    torch.testing.assert_close(torch.tensor(bank.weights),
                               torch.tensor([_hand_allocation(keys, 0.5)[1, 0].item()]), atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- task recall


def test_recall_is_the_softmax_of_the_similarities_and_the_layers_mix_its_trained_combinations(three):
    vlm, data = three
    method = build_method("proglora", OPTS)
    bank = _learn(method, vlm, data, 3)
    samples = _held_out(data)
    keys = _hand_keys(vlm, data)
    feats = torch.stack([_hand_feature(vlm, s.prompt) for s in samples])
    cos = torch.tensor([[_cos(f, k) for k in keys] for f in feats])
    recall = torch.exp(cos / 0.5) / torch.exp(cos / 0.5).sum(-1, keepdim=True)
    torch.testing.assert_close(method.recall(vlm, samples), recall, atol=1e-5, rtol=1e-4)
    assert recall.argmax(-1).tolist() == [0, 1, 2] and float(recall.min()) > 0.01
    assert float((recall.max(-1).values - recall.min(-1).values).min()) > 0.05  # far from uniform: the test can fail
    want = recall @ _hand_allocation(keys, 0.5)
    torch.testing.assert_close(method.weights(vlm, samples), want, atol=1e-5, rtol=1e-4)
    model = method.eval_model(_ctx(vlm, data, 2), vlm)
    assert isinstance(model, MixedVLM)
    seen = _capture(bank, lambda: model.generate(samples, 1))
    for name, m in bank.layers:
        x, y = seen[name]
        mix = sum(want[:, k].view(-1, 1, 1) * _delta(m, n, x) for k, n in enumerate(bank.names))
        torch.testing.assert_close(y, m.base_layer(x) + mix, atol=1e-5, rtol=1e-5, msg=name)
    assert {t: model.take(t) for t in TASKS} == {t: {u: int(u == t) for u in TASKS} for t in TASKS}


def test_batched_answers_equal_one_by_one(three):
    vlm, data = three
    method = build_method("proglora", OPTS)
    _learn(method, vlm, data, 3)
    samples = _held_out(data) + [data["taskB"][0]]
    model = method.eval_model(None, vlm)
    assert model.generate(samples, 4) == [model.generate([s], 4)[0] for s in samples]


# --------------------------------------------------------------------------- persistence


def test_a_restored_method_gives_the_same_weights(three):
    vlm, data = three
    method = build_method("proglora", OPTS)
    bank = _learn(method, vlm, data, 2)
    state = load(save({k: v.detach().cpu().contiguous() for k, v in method.state_dict().items()}))
    assert sorted(state) == ["keys"] and state["keys"].shape[0] == 2
    fresh = build_method("proglora", OPTS)
    fresh.load_state_dict(state)
    samples = _held_out(data)
    torch.testing.assert_close(fresh.weights(vlm, samples), method.weights(vlm, samples), atol=0, rtol=0)
    # the next stage's allocation is the same after a resume
    fresh.before_task(_ctx(vlm, data, 2))
    resumed = list(bank.weights)
    method.before_task(_ctx(vlm, data, 2))
    assert resumed == bank.weights and len(resumed) == 2
    assert build_method("proglora").state_dict() == {}
    with pytest.raises(RuntimeError, match="only 0 task keys"):
        build_method("proglora", OPTS).before_task(_ctx(vlm, data, 2))


@pytest.mark.slow
def test_a_resumed_run_answers_the_same(tmp_path, micro_config):
    """Stage 2 trained but not evaluated, stage 3 not started: the resumed run restores the keys and the bank,
    evaluates stage 2 and trains stage 3 (with the same allocation) exactly as the first run did."""
    import copy
    import json
    import shutil

    from coin.engine.run import run

    cfg = copy.deepcopy(micro_config)
    cfg.update(method="proglora", method_options=dict(OPTS), log={"trackers": []})
    cfg["tasks"]["order"] = ["ImageNet", "ScienceQA", "VizWiz"]
    cfg["data"]["synth"] = {"n_train": 16, "n_test": 4}
    cfg["eval"]["zero_shot"] = False
    cfg["train"].update(lr=1e-2, epochs=2)
    quiet = dict(progress=False, log=lambda *a: None)
    reference = run(from_dict(cfg), tmp_path / "ref", **quiet)
    out = tmp_path / "resumed"
    shutil.copytree(tmp_path / "ref", out)
    ref, stages = tmp_path / "ref" / "stages", out / "stages"
    shutil.rmtree(stages / "03-VizWiz")
    for done in ("DONE", "scores.json", "predictions"):
        path = stages / "02-ScienceQA" / done
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert sorted(json.loads((ref / "03-VizWiz" / "routing.json").read_text())) == cfg["tasks"]["order"]
    resumed = run(from_dict(cfg), out, **quiet)
    assert resumed["matrix"] == reference["matrix"]
    for stage in ("02-ScienceQA", "03-VizWiz"):
        for path in sorted((ref / stage / "predictions").glob("*.jsonl")):
            want = [json.loads(line)["output"] for line in path.open()]
            got = [json.loads(line)["output"] for line in (stages / stage / "predictions" / path.name).open()]
            assert got == want, (stage, path.name)
    for path in sorted((ref / "03-VizWiz").rglob("*.safetensors")):  # same blocks, same keys
        assert path.read_bytes() == (stages / path.relative_to(ref)).read_bytes(), path
