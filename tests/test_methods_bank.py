"""The adapter bank and the methods built on it (O-LoRA, HiDe-LLaVA, DISCO): each one's defining property."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import pytest
import torch

from coin.adapters import attach_adapter, load_adapter
from coin.adapters.bank import CURRENT, AdapterBank, restore_saved
from coin.adapters.routing import instruction_features, vision_features
from coin.config import ConfigError, TrainConfig
from coin.config_load import from_dict
from coin.engine.train import train_stage
from coin.methods import build_method
from coin.methods.olora import cross_gram
from tinyvlm import (sharp_vlm_and_samples, tiny_samples, tiny_vlm, bank_lora as _lora,
                     randomize_current as _randomize_current, stage_ctx)

TASKS = ["taskA", "taskB"]


@pytest.fixture
def stream(tmp_path):
    """A micro LLaVA with LoRA and two tasks of 10 samples (different questions)."""
    vlm = tiny_vlm(seed=0)
    attach_adapter(vlm, _lora())
    return vlm, {t: tiny_samples(tmp_path / "img", t, 10) for t in TASKS}


def _ctx(vlm, data, stage: int):
    return stage_ctx(vlm, data, stage, TASKS)


def _inputs(vlm, samples) -> dict:
    return {k: v for k, v in vlm.train_batch(samples).items() if k != "labels"}


@torch.no_grad()
def _logits(vlm, batch) -> torch.Tensor:
    vlm.model.eval()
    return vlm.model(**batch).logits


def _stored(bank: AdapterBank, name: str) -> list[torch.Tensor]:
    return [t.detach().clone() for _, a, b in bank.pairs(name) for t in (a, b)]


def _two_stored(vlm) -> AdapterBank:
    bank = AdapterBank.of(vlm.model)
    for k, name in enumerate(("task01", "task02")):
        _randomize_current(bank, seed=k)
        bank.store(name)
    bank.clear_current()
    return bank


# --------------------------------------------------------------------------- the bank


def test_a_stored_copy_is_frozen_and_replaces_the_cleared_slot_exactly(stream, tmp_path):
    vlm, data = stream
    batch = _inputs(vlm, data["taskA"][:3])
    base = _logits(vlm, batch)  # B = 0: the base model
    bank = AdapterBank.of(vlm.model)
    _randomize_current(bank, seed=0)
    trained = _logits(vlm, batch)
    assert not torch.allclose(trained, base, atol=1e-3)
    bank.store("task01")
    bank.clear_current()
    bank.set_mix(1.0)
    torch.testing.assert_close(_logits(vlm, batch), trained, atol=1e-5, rtol=1e-5)
    bank.set_mix(0.0)
    torch.testing.assert_close(_logits(vlm, batch), base, atol=1e-6, rtol=1e-6)
    trainable = [n for n, p in vlm.model.named_parameters() if p.requires_grad]
    assert trainable and not any(".task01." in n for n in trainable)
    assert all(".default." in n or "multi_modal_projector" in n for n in trainable)


def test_the_sum_and_the_weights_equal_peft_running_those_adapters_itself(stream):
    vlm, data = stream
    batch = _inputs(vlm, data["taskA"][:3])
    bank = _two_stored(vlm)
    ours = {}
    for weights in ([1.0, 1.0], [1.0, 0.0], [0.0, 1.0]):
        bank.set_mix(weights)
        ours[tuple(weights)] = _logits(vlm, batch)
    bank.set_mix(0.0)
    try:
        for weights, active in (((1.0, 1.0), ["task01", "task02"]), ((1.0, 0.0), ["task01"]), ((0.0, 1.0), ["task02"])):
            for _, m in bank.layers:
                m.set_adapter(active)  # PEFT's own multi-adapter forward
            torch.testing.assert_close(ours[weights], _logits(vlm, batch), atol=1e-5, rtol=1e-5)
    finally:
        for _, m in bank.layers:
            m.set_adapter(CURRENT)
        bank.freeze_stored()
    assert not torch.allclose(ours[(1.0, 0.0)], ours[(0.0, 1.0)], atol=1e-3)


def test_a_layer_override_mixes_that_layer_only(stream):
    vlm, data = stream
    batch = _inputs(vlm, data["taskA"][:3])
    bank = _two_stored(vlm)
    last = bank.last_layer
    assert last == 1  # the micro LM has two decoder layers
    bank.set_mix(1.0, {last: torch.tensor([0.0, 1.0])})
    mixed = _logits(vlm, batch)
    with torch.no_grad():  # the same model written out: task01 removed from the last layer by hand
        for name, m in bank.layers:
            if f".layers.{last}." in name:
                m.lora_B["task01"].weight.zero_()
    bank.set_mix(1.0)
    torch.testing.assert_close(mixed, _logits(vlm, batch), atol=1e-5, rtol=1e-5)


def test_per_row_weights_give_each_row_its_own_mix(stream):
    vlm, data = stream
    samples = [data["taskA"][0], data["taskB"][1]]
    batch = _inputs(vlm, samples)
    bank = _two_stored(vlm)
    rows = torch.tensor([[1.0, 0.0], [0.3, 0.7]])
    bank.set_mix(0.0, {0: rows, 1: rows})
    mixed = _logits(vlm, batch)
    for k in range(2):
        bank.set_mix(rows[k].tolist())
        torch.testing.assert_close(mixed[k], _logits(vlm, batch)[k], atol=1e-5, rtol=1e-5)
    bank.set_mix(0.0, {0: rows[:1], 1: rows[:1]})
    with pytest.raises(RuntimeError, match="per-row weights for 1 rows, but a batch of 2"):
        _logits(vlm, batch)


def test_a_fresh_current_lora_is_seeded_and_adds_nothing(stream):
    vlm, _ = stream
    bank = AdapterBank.of(vlm.model)
    _randomize_current(bank, seed=3)

    def current():
        return [t.detach().clone() for _, a, b in bank.pairs(CURRENT) for t in (a, b)]

    bank.reset_current(0, "bank", 1)
    first = current()
    bank.reset_current(0, "bank", 1)
    assert all(torch.equal(x, y) for x, y in zip(first, current()))
    bank.reset_current(0, "bank", 2)
    assert not torch.equal(first[0], current()[0])
    for _, a, b in bank.pairs(CURRENT):
        assert torch.count_nonzero(b) == 0
        assert float(a.abs().max()) <= 1 / a.shape[1] ** 0.5


def test_the_bank_round_trips_through_the_stage_adapter_folder(stream, tmp_path):
    vlm, data = stream
    batch = _inputs(vlm, data["taskA"][:3])
    bank = _two_stored(vlm)
    _randomize_current(bank, seed=5)
    bank.set_mix([0.5, 1.0])
    want = _logits(vlm, batch)
    vlm.model.save_pretrained(tmp_path / "adapter", safe_serialization=True)  # what the engine does per stage
    assert (tmp_path / "adapter" / "task02" / "adapter_model.safetensors").is_file()

    fresh = tiny_vlm(seed=0)
    attach_adapter(fresh, _lora())
    load_adapter(fresh, tmp_path / "adapter")
    again = AdapterBank.of(fresh.model)
    assert again.names == ["task01", "task02"]
    for name in ("task01", "task02", CURRENT):
        assert all(torch.equal(x, y) for x, y in zip(_stored(bank, name), _stored(again, name))), name
    assert not any(p.requires_grad for n, p in fresh.model.named_parameters() if ".task0" in n)
    again.set_mix([0.5, 1.0])
    torch.testing.assert_close(_logits(fresh, batch), want, atol=0, rtol=0)
    assert restore_saved(fresh.model, tmp_path / "adapter") == ["task01", "task02"]  # again: same model
    torch.testing.assert_close(_logits(fresh, batch), want, atol=0, rtol=0)


@pytest.mark.parametrize("method", ["olora", "hide", "disco"])
def test_bank_methods_refuse_an_adapter_that_is_not_plain_lora(method):
    with pytest.raises(ConfigError, match=rf"adapter.type: method '{method}' keeps one plain LoRA per task"):
        from_dict({"method": method, "adapter": {"type": "moelora"}})


# --------------------------------------------------------------------------- the methods on two tasks


def _train_two(vlm, data, method, cfg: TrainConfig, on_stage1_start=None) -> list[dict]:
    """Both stages with ``method``; returns each stage's logged steps."""
    logs = []
    for stage in range(2):
        ctx = _ctx(vlm, data, stage)
        method.before_task(ctx)
        if stage == 1 and on_stage1_start is not None:
            on_stage1_start()
        steps = []
        train_stage(ctx, data[ctx.task], cfg, [method], seed=stage, progress=False,
                    on_step=lambda done, total, values: steps.append(values))
        logs.append(steps)
        if stage == 1:
            logs.append({"before_store": cross_gram(AdapterBank.of(vlm.model))})
        method.after_task(ctx)
    return logs


def test_olora_penalty_falls_while_the_old_lora_stays_put(tmp_path):
    data = {t: tiny_samples(tmp_path / "img", t, 6) for t in TASKS}
    falls = {}
    for lam in (0.0, 0.5):
        vlm = tiny_vlm(seed=0)
        attach_adapter(vlm, _lora())
        method = build_method("olora", {"lambda_1": lam})
        bank = AdapterBank.of(vlm.model)
        first, second = _ctx(vlm, data, 0), _ctx(vlm, data, 1)
        method.before_task(first)
        _randomize_current(bank, seed=0)  # stands for task A's training
        method.after_task(first)
        old = _stored(bank, "task01")
        method.before_task(second)
        start = cross_gram(bank).item()
        steps = []
        train_stage(second, data["taskB"], TrainConfig(batch_size=2, lr=1e-2, epochs=3), [method], seed=1,
                    progress=False, on_step=lambda done, total, values: steps.append(values))
        falls[lam] = cross_gram(bank).item() / start
        method.after_task(second)
        assert all(torch.equal(x, y) for x, y in zip(old, _stored(bank, "task01")))  # the old LoRA is untouched
        assert bank.names == ["task01", "task02"] and bank.weights == [1.0, 1.0]  # both summed at test time
        if lam:
            terms = [s["olora/orthogonal"] for s in steps]  # lambda_1 * cross-Gram L1, as added to the loss
            assert terms[-1] < 0.5 * terms[0]
    assert falls[0.5] < 0.5, falls  # the cross-Gram L1 falls by more than half under the penalty...
    assert falls[0.0] > 0.9, falls  # ...and not without it (A hardly moves while B starts at zero)


def test_hide_trains_only_the_current_expert(stream, tmp_path):
    vlm, data = stream
    method = build_method("hide")
    bank = AdapterBank.of(vlm.model)
    seen = {}

    def at_start():
        seen["old"] = _stored(bank, "task01")
        seen["trainable"] = [n for n, p in vlm.model.named_parameters() if p.requires_grad]
        seen["mix"] = (list(bank.weights), dict(bank.overrides))

    _train_two(vlm, data, method, TrainConfig(batch_size=4, lr=1e-2), at_start)
    assert all(".default." in n or "multi_modal_projector" in n for n in seen["trainable"])
    assert seen["mix"] == ([0.0], {})  # as released: no stored expert in any layer while a task trains
    assert all(torch.equal(x, y) for x, y in zip(seen["old"], _stored(bank, "task01")))
    assert not all(torch.equal(x, y) for x, y in zip(seen["old"], _stored(bank, "task02")))
    assert method.text.shape[0] == method.vision.shape[0] == 2
    held_out = {t: tiny_samples(tmp_path / "img", t, 14)[10:] for t in TASKS}  # ids the anchors never saw
    for k, t in enumerate(TASKS):
        w = method.weights(vlm, held_out[t])
        assert (w.argmax(-1) == k).all(), (t, w)


def test_hide_batched_answers_equal_one_by_one_with_per_row_weights(tmp_path):
    prompts = ["What colour is the shape?", "How many objects are there?", "Describe the image.", "Where is it?"]
    vlm, samples = sharp_vlm_and_samples(tmp_path, prompts, data_seed=0, model_seed=0)
    samples[3] = dataclasses.replace(samples[3], image=samples[2].image)  # two questions on one image...
    vlm.share_prefix = True  # ...whose prefix coin's decoding would prefill once for both rows
    attach_adapter(vlm, _lora(r=8))
    bank = AdapterBank.of(vlm.model)
    for k, name in enumerate(("task01", "task02")):
        _randomize_current(bank, seed=10 + k, scale=0.6)
        bank.store(name)
    bank.clear_current()
    method = build_method("hide")
    method.text = instruction_features(vlm, samples[:2])  # expert k's anchors: sample k's own features
    method.vision = vision_features(vlm, samples[:2])
    w = method.weights(vlm, samples)
    assert w[0].argmax() == 0 and w[1].argmax() == 1
    model = method.eval_model(None, vlm)
    together = model.generate(samples, 6)
    assert together == [model.generate([s], 6)[0] for s in samples]
    answers = {}
    for k in range(2):  # the test can fail: the last layer's expert changes the answers
        bank.set_mix(1.0, {bank.last_layer: torch.eye(2)[k]})
        answers[k] = vlm.generate(samples, 6)
    assert answers[0] != answers[1]


def test_disco_trains_each_lora_alone_and_answers_with_the_routed_one(stream):
    vlm, data = stream
    method = build_method("disco")
    bank = AdapterBank.of(vlm.model)
    batch = _inputs(vlm, data["taskB"][:3])
    seen = {}

    def at_start():  # the stored task01 LoRA is not in task B's forward
        seen["with"] = _logits(vlm, batch)
        saved = [m.lora_B["task01"].weight.detach().clone() for _, m in bank.layers]
        with torch.no_grad():
            for _, m in bank.layers:
                m.lora_B["task01"].weight.zero_()
        seen["without"] = _logits(vlm, batch)
        with torch.no_grad():
            for (_, m), b in zip(bank.layers, saved):
                m.lora_B["task01"].weight.copy_(b)

    _train_two(vlm, data, method, TrainConfig(batch_size=4, lr=1e-2), at_start)
    torch.testing.assert_close(seen["with"], seen["without"], atol=0, rtol=0)
    mixed = [data["taskB"][0], data["taskA"][1], data["taskB"][2], data["taskA"][3]]
    assert method.route(vlm, mixed) == [1, 0, 1, 0]
    answers = method.eval_model(None, vlm).generate(mixed, 4)
    for s, k, got in zip(mixed, [1, 0, 1, 0], answers):
        bank.set_mix(torch.eye(2)[k].tolist())
        assert vlm.generate([s], 4) == [got]


def test_hide_runs_on_a_chat_backbone(tmp_path):
    """Qwen2-VL (``ChatVLM``: chat template, image-pad tokens, ``model.generate``): trained experts, weights that
    favour each input's task, batched answers equal to one-by-one answers."""
    import tinyhf
    from coin.config_load import section
    from coin.models import load_model

    vlm = load_model(section("model", name="qwen2-vl", path=str(tinyhf.build_qwen2_vl(tmp_path / "qwen"))))
    attach_adapter(vlm, _lora())
    data = {t: tiny_samples(tmp_path / "img", t, 6) for t in TASKS}
    method = build_method("hide")
    _train_two(vlm, data, method, TrainConfig(batch_size=3, lr=1e-2))
    mixed = [data["taskA"][0], data["taskB"][1], data["taskA"][2]]
    assert method.weights(vlm, mixed).argmax(-1).tolist() == [0, 1, 0]
    model = method.eval_model(None, vlm)
    assert model.generate(mixed, 4) == [model.generate([s], 4)[0] for s in mixed]


def test_the_shipped_synth_configs_load():
    from pathlib import Path

    from coin.config_load import load_config

    root = Path(__file__).parent.parent / "configs" / "synth"
    for name in ("olora", "hide", "disco"):
        assert load_config(root / f"{name}.yaml").method == name


# --------------------------------------------------------------------------- routing on CoIN-Synth's eight tasks


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """CoIN-Synth's eight tasks (40 training and 25 held-out test inputs each) and a random micro LLaVA."""
    from coin.data.coin_json import eval_samples, load_test, load_train
    from coin.benchmarks.synth.generator import generate
    from coin.models.tiny.model import TinyConfig, build_model, build_processor, train_tokenizer
    from coin.models.llava.wrapper import LlavaVLM
    from coin.tasks import ORDERS, get_task

    root = generate(tmp_path_factory.mktemp("synth") / "data", seed=0, n_train=40, n_test=25, n_pretrain=0)
    tasks = list(ORDERS["paper"])
    folder = {t: root / "Instructions_Original" / get_task(t).folder for t in tasks}
    train = {t: load_train(folder[t] / "train.json", root / "images", t) for t in tasks}
    test = {t: eval_samples(load_test(folder[t] / "test.json", root / "images", t)) for t in tasks}
    tok = train_tokenizer([s.prompt for t in tasks for s in train[t]] + ["USER: ASSISTANT:"], 400)
    cfg = TinyConfig(vocab_size=400, vision_width=32, vision_layers=1, vision_heads=2, lm_width=64, lm_layers=2,
                     lm_heads=2, lm_ffn=128)
    vlm = LlavaVLM(build_model(cfg, tok, seed=0), build_processor(tok, cfg))
    attach_adapter(vlm, _lora())
    bank = AdapterBank.of(vlm.model)
    for k in range(len(tasks)):
        bank.store(f"task{k + 1:02d}")
    return vlm, tasks, train, test


def test_disco_routes_held_out_inputs_to_their_own_task(synth):
    """Measured: 100% on ScienceQA, TextVQA, ImageNet, VizWiz, Grounding and OCR-VQA, 76% on GQA and 52%
    on VQAv2 (CoIN gives both the same instruction line and CoIN-Synth similar questions): 91% overall."""
    vlm, tasks, train, test = synth
    method = build_method("disco")
    method.means = torch.cat([instruction_features(vlm, train[t]).mean(0, keepdim=True) for t in tasks])
    rates = {}
    for k, t in enumerate(tasks):
        picked = method.route(vlm, test[t])  # the router sees prompts only (Sample.task is not read)
        rates[t] = sum(p == k for p in picked) / len(picked)
    overall = sum(rates.values()) / len(rates)
    assert overall >= 0.85, rates
    assert min(rates.values()) >= 0.4, rates
    assert sum(r == 1.0 for r in rates.values()) >= 6, rates


def test_hide_last_layer_weights_favour_each_inputs_own_task(synth):
    """Measured: the mean weight on the input's own expert is 29-78% (chance 12.5%) and the largest for
    every task; the largest weight is the own expert's for 83.5% of the inputs."""
    vlm, tasks, train, test = synth
    method = build_method("hide")
    method.text = torch.cat([instruction_features(vlm, train[t]).mean(0, keepdim=True) for t in tasks])
    method.vision = torch.cat([vision_features(vlm, train[t]).mean(0, keepdim=True) for t in tasks])
    hits = total = 0
    for k, t in enumerate(tasks):
        w = method.weights(vlm, test[t])
        torch.testing.assert_close(w.sum(-1), torch.ones(len(w)))
        mean = w.mean(0)
        assert int(mean.argmax()) == k, (t, mean)
        hits += int((w.argmax(-1) == k).sum())
        total += len(w)
    assert hits / total >= 0.75


# --------------------------------------------------------------------------- a resumed run


@pytest.mark.slow
@pytest.mark.parametrize("method", ["hide", "disco"])  # O-LoRA trains and answers through the same bank
def test_a_resumed_run_rebuilds_the_bank_and_answers_the_same(method, tmp_path, micro_config, monkeypatch):
    """Stage 2 trained but not evaluated, stage 3 not started: the resumed run must evaluate stage 2 with the
    bank rebuilt from its adapter folder (``eval_model``) and train stage 3 exactly as the first run did."""
    from coin.engine.run import run

    cfg = copy.deepcopy(micro_config)
    cfg.update(method=method, log={"trackers": []})
    cfg["tasks"]["order"] = ["ImageNet", "ScienceQA", "VizWiz"]
    cfg["data"]["synth"] = {"n_train": 16, "n_test": 4}
    cfg["eval"]["zero_shot"] = False
    cfg["train"].update(lr=1e-2, epochs=2)
    quiet = dict(progress=False, log=lambda *a: None)
    calls = []
    cls = type(build_method(method))
    wrap = cls.eval_model
    monkeypatch.setattr(cls, "eval_model", lambda self, ctx, vlm: calls.append(ctx.stage) or wrap(self, ctx, vlm))
    reference = run(from_dict(cfg), tmp_path / "ref", **quiet)
    assert calls == [0, 1, 2]  # every stage is evaluated through the method's router
    out = tmp_path / "resumed"
    shutil.copytree(tmp_path / "ref", out)
    ref, stages = tmp_path / "ref" / "stages", out / "stages"
    shutil.rmtree(stages / "03-VizWiz")
    for done in ("DONE", "scores.json", "predictions"):
        path = stages / "02-ScienceQA" / done
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    resumed = run(from_dict(cfg), out, **quiet)
    assert calls[3:] == [1, 2]
    assert resumed["matrix"] == reference["matrix"]
    for stage in ("02-ScienceQA", "03-VizWiz"):
        for path in sorted((ref / stage / "predictions").glob("*.jsonl")):
            want = [json.loads(line)["output"] for line in path.open()]
            got = [json.loads(line)["output"] for line in (stages / stage / "predictions" / path.name).open()]
            assert got == want, (stage, path.name)
    for path in sorted((ref / "03-VizWiz").rglob("*.safetensors")):  # stage 3 trained the same LoRA, same state
        assert path.read_bytes() == (stages / path.relative_to(ref)).read_bytes(), path
    assert sorted(p.name for p in (stages / "03-VizWiz" / "adapter").iterdir() if p.is_dir()) == \
        ["task01", "task02", "task03"]
