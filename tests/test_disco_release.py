"""DISCO's released soft mixing (issue #32) beside coin's hard top-1, and the routing accuracy a run records
for routed methods (DISCO, HiDe-LLaVA): per stage and test task, the share of inputs whose top route is the
task's own adapter, in ``stages/NN-<task>/routing.json`` and the report."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from coin.adapters import attach_adapter
from coin.adapters.bank import AdapterBank
from coin.adapters.routing import GroupedVLM, MixedVLM, instruction_features
from coin.config_load import from_dict
from coin.errors import OptionsError
from coin.io import read_json
from coin.methods import build_method
from tinyvlm import (THREE_HELD_OUT as HELD_OUT, THREE_TASKS as TASKS, bank_lora as _lora, learn_stages,
                     prompt_feature as _hand_feature, randomize_current as _randomize_current, sharp_vlm_and_samples,
                     stage_ctx, three_task_stream)



@pytest.fixture
def three(tmp_path):
    """A micro LLaVA (two decoder layers) with LoRA r=4, and three tasks of 6 samples with their own prompt."""
    return three_task_stream(tmp_path / "img")


def _ctx(vlm, data, stage: int):
    return stage_ctx(vlm, data, stage, TASKS)


def _learn(method, vlm, data, stages: int = 3) -> AdapterBank:
    """Stages 0..stages-1 through the method's hooks (each task's 'training' draws its LoRA at random)."""
    return learn_stages(method, vlm, data, stages)


def _hand_softmax(vlm, data, prompts: list[str], temperature: float) -> torch.Tensor:
    means = torch.stack([torch.stack([_hand_feature(vlm, s.prompt) for s in data[t]]).mean(0) for t in TASKS])
    feats = torch.stack([_hand_feature(vlm, p) for p in prompts])
    cos = torch.stack([torch.stack([torch.dot(f, m) / (f.norm() * m.norm()) for m in means]) for f in feats])
    return torch.exp(cos / temperature) / torch.exp(cos / temperature).sum(-1, keepdim=True)


def _held_out(data) -> list:
    return [dataclasses.replace(data[t][k], id=f"held-{t}", prompt=HELD_OUT[t]) for k, t in enumerate(TASKS)]


# --------------------------------------------------------------------------- soft mixing


def test_hard_top1_stays_the_default_and_the_options_are_checked():
    method = build_method("disco")
    assert (method.opts.mixing, method.opts.temperature) == ("hard", 0.05)
    with pytest.raises(OptionsError, match=r"method_options\.mixing must be one of hard, soft, got 'mean'"):
        build_method("disco", {"mixing": "mean"})
    with pytest.raises(OptionsError, match=r"method_options\.temperature must be > 0, got 0"):
        build_method("disco", {"mixing": "soft", "temperature": 0})


@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_soft_weights_are_the_softmax_of_cosine_over_the_temperature(three, temperature):
    vlm, data = three
    options = {"mixing": "soft"} if temperature == 0.05 else {"mixing": "soft", "temperature": temperature}
    method = build_method("disco", options)
    _learn(method, vlm, data)
    samples = _held_out(data)
    w = method.weights(vlm, samples)
    want = _hand_softmax(vlm, data, [s.prompt for s in samples], temperature)
    torch.testing.assert_close(w, want, atol=1e-5, rtol=1e-4)
    assert w.argmax(-1).tolist() == [0, 1, 2]
    assert float(w.min()) > 0  # every task's adapter has a share: soft, not top-1


@torch.no_grad()
def test_soft_mixing_gives_every_adapted_layer_each_rows_weighted_sum_of_outputs(three):
    vlm, data = three
    method = build_method("disco", {"mixing": "soft"})
    bank = _learn(method, vlm, data)
    samples = _held_out(data)
    model = method.eval_model(_ctx(vlm, data, 2), vlm)
    assert isinstance(model, MixedVLM)
    w = _hand_softmax(vlm, data, [s.prompt for s in samples], 0.05)
    seen, handles = {}, []
    for name, m in bank.layers:
        def hook(module, args, output, name=name):
            seen.setdefault(name, (args[0].detach().clone(), output.detach().clone()))
        handles.append(m.register_forward_hook(hook))
    try:
        model.generate(samples, 1)
    finally:
        for h in handles:
            h.remove()
    assert {n.split(".layers.")[1].split(".")[0] for n in seen} == {"0", "1"}  # both decoder layers
    for name, m in bank.layers:
        x, y = seen[name]
        mix = sum(w[:, k].view(-1, 1, 1) * m.scaling[n] * (x @ m.lora_A[n].weight.T @ m.lora_B[n].weight.T)
                  for k, n in enumerate(bank.names))
        torch.testing.assert_close(y, m.base_layer(x) + mix, atol=1e-5, rtol=1e-5, msg=name)


def test_soft_batched_answers_equal_one_by_one(tmp_path):
    """Per-row weights in every layer: the batch keeps its rows through decoding (``routing.row_stable``)."""
    prompts = ["What colour is the shape?", "How many objects are there?", "Describe the image.", "Where is it?"]
    vlm, samples = sharp_vlm_and_samples(tmp_path, prompts, data_seed=0, model_seed=0)
    samples[3] = dataclasses.replace(samples[3], image=samples[2].image)  # two questions on one image...
    vlm.share_prefix = True  # ...whose prefix coin's decoding would prefill once for both rows
    attach_adapter(vlm, _lora(r=8))
    bank = AdapterBank.of(vlm.model)
    for k in range(3):
        _randomize_current(bank, seed=10 + k, scale=0.6)
        bank.store(f"task0{k + 1}")
    bank.clear_current()
    method = build_method("disco", {"mixing": "soft", "temperature": 0.5})
    method.means = instruction_features(vlm, samples[:3])  # LoRA k's task mean: sample k's own feature
    model = method.eval_model(None, vlm)
    together = model.generate(samples, 6)
    assert together == [model.generate([s], 6)[0] for s in samples]
    bank.set_mix([1.0, 0.0, 0.0])  # the test can fail: the adapters change the answers
    first = vlm.generate(samples, 6)
    bank.set_mix([0.0, 0.0, 1.0])
    assert vlm.generate(samples, 6) != first


# --------------------------------------------------------------------------- routing accuracy


@torch.no_grad()
def test_the_routing_record_counts_each_input_under_its_own_test_task(three):
    """Means shuffled on purpose (task A's LoRA gets task B's mean): the record must say A went to B."""
    vlm, data = three
    method = build_method("disco")
    _learn(method, vlm, data)
    method.means = method.means[[1, 0, 2]]
    model = method.eval_model(_ctx(vlm, data, 2), vlm)
    assert isinstance(model, GroupedVLM)
    model.generate([data["taskA"][0], data["taskB"][1], data["taskC"][2], data["taskA"][3]], 1)
    assert model.take("taskA") == {"taskA": 0, "taskB": 2, "taskC": 0}
    assert model.take("taskB") == {"taskA": 1, "taskB": 0, "taskC": 0}
    assert model.take("taskC") == {"taskA": 0, "taskB": 0, "taskC": 1}


@pytest.mark.slow
@pytest.mark.parametrize("mixing", ["hard", "soft"])
def test_a_three_task_run_writes_routing_accuracy_and_reports_it(mixing, tmp_path, micro_config):
    from coin.engine.run import run
    from coin.report.run_report import write_report

    cfg = copy.deepcopy(micro_config)
    order = ["ImageNet", "ScienceQA", "VizWiz"]
    cfg.update(method="disco", method_options={"mixing": mixing}, log={"trackers": []})
    cfg["tasks"]["order"] = order
    cfg["data"]["synth"] = {"n_train": 16, "n_test": 4}
    cfg["eval"]["zero_shot"] = False
    out = tmp_path / "run"
    run(from_dict(cfg), out, progress=False, log=lambda *a: None)
    found = {}  # (stage, task) -> routing accuracy
    for j, stage in enumerate(order):
        routing = read_json(out / "stages" / f"{j + 1:02d}-{stage}" / "routing.json")
        assert sorted(routing) == sorted(order[: j + 1])  # every task evaluated (tasks.eval: seen)
        for task, entry in routing.items():
            n = len((out / "stages" / f"{j + 1:02d}-{stage}" / "predictions" / f"{task}.jsonl").read_text().splitlines())
            assert entry["n"] == n == sum(entry["routed"].values())
            assert list(entry["routed"]) == order[: j + 1]  # one count per stored adapter, by its task
            assert 0.0 <= entry["accuracy"] <= 1.0
            assert entry["accuracy"] == entry["routed"][task] / n
            found[(j, task)] = entry["accuracy"]
    assert found[(0, "ImageNet")] == 1.0  # one adapter: every input's top route is its own
    assert not (out / "stages" / "00-zeroshot" / "routing.json").exists()
    report = write_report(out).read_text()
    assert "## Routing accuracy" in report
    section = report.split("## Routing accuracy")[1].split("\n## ")[0]
    line = next(x for x in section.splitlines() if x.startswith("| after VizWiz"))
    assert line.count("|") == len(order) + 2  # a value per task
    for k, task in enumerate(order):
        assert f"{100 * found[(2, task)]:.2f}" in line.split("|")[2 + k], (task, line)
