"""Continual-learning methods: each method's maths, and one contract every registered method meets."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load, save

from coin.adapters import attach_adapter
from coin.config import AdapterConfig, TrainConfig
from coin.engine.train import train_stage
from coin.methods import METHODS, StageContext, build_method
from coin.methods.base import sample_indices
from coin.methods.ewc import EWC
from coin.methods.lwf import LwF, answer_logits, distillation_loss
from coin.methods.replay import Replay
from tinyvlm import tiny_samples, tiny_vlm

TASKS = ["taskA", "taskB"]


def _lora(r: int = 4):
    return AdapterConfig(type="lora", r=r, alpha=2.0 * r, dropout=0.0, train_projector=True)


@pytest.fixture
def stream(tmp_path):
    """A micro LLaVA with LoRA and two tasks of 10 samples."""
    vlm = tiny_vlm(seed=0)
    attach_adapter(vlm, _lora())
    data = {t: tiny_samples(tmp_path / "img", t, 10) for t in TASKS}
    return vlm, data


def _ctx(vlm, data, stage: int, seed: int = 0) -> StageContext:
    return StageContext(vlm=vlm, task=TASKS[stage], stage=stage, tasks=TASKS,
                        train_data={t: data[t] for t in TASKS[: stage + 1]}, seed=seed)


# --------------------------------------------------------------------------- EWC


class _Params(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(5, 3))
        self.b = torch.nn.Parameter(torch.randn(3))


def _ewc_setup(options=None):
    torch.manual_seed(0)
    model = _Params()
    ewc = EWC({"lambda_": 0.7, **(options or {})})
    ctx = SimpleNamespace(vlm=SimpleNamespace(model=model))
    return model, ewc, ctx


def _rand_like(model):
    return {n: torch.rand_like(p) for n, p in model.named_parameters()}


def test_ewc_penalty_is_zero_at_the_anchor_and_its_gradient_is_lambda_f_delta():
    model, ewc, ctx = _ewc_setup()
    fisher = _rand_like(model)
    theta_star = {n: p.detach().clone() for n, p in model.named_parameters()}
    ewc.consolidate(fisher, theta_star)
    zero = torch.zeros(())
    assert ewc.loss(ctx, {}, None, zero).item() == 0.0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    out = ewc.loss(ctx, {}, None, zero)
    out.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, 0.7 * fisher[n] * (p.detach() - theta_star[n]))
    expected = sum(0.35 * (fisher[n] * (p.detach() - theta_star[n]) ** 2).sum() for n, p in model.named_parameters())
    torch.testing.assert_close(out.detach(), expected)


def test_ewc_two_tasks_pull_towards_both_anchors_exactly():
    """Accumulating (F, F-weighted anchor) gives exactly the gradient of one penalty per task."""
    model, ewc, ctx = _ewc_setup()
    tasks = [(_rand_like(model), {n: torch.randn_like(p) for n, p in model.named_parameters()}) for _ in range(2)]
    for fisher, theta in tasks:
        ewc.consolidate(fisher, theta)
    ewc.loss(ctx, {}, None, torch.zeros(())).backward()
    for n, p in model.named_parameters():
        expected = sum(0.7 * f[n] * (p.detach() - th[n]) for f, th in tasks)
        torch.testing.assert_close(p.grad, expected)


def test_online_ewc_decays_the_old_fisher_and_anchors_at_the_latest_weights():
    model, ewc, _ = _ewc_setup({"online": True, "decay": 0.5})
    (f1, t1), (f2, t2) = [(_rand_like(model), _rand_like(model)) for _ in range(2)]
    ewc.consolidate(f1, t1)
    ewc.consolidate(f2, t2)
    for n in f1:
        torch.testing.assert_close(ewc.fisher[n], 0.5 * f1[n] + f2[n])
        torch.testing.assert_close(ewc.anchor[n], t2[n])


def test_ewc_fisher_comes_from_the_task_and_leaves_grads_clean(stream):
    vlm, data = stream
    ewc = EWC({"samples": 3})
    ewc.after_task(_ctx(vlm, data, 0))
    params = {n: p for n, p in vlm.model.named_parameters() if p.requires_grad}
    assert set(ewc.fisher) == set(params)
    assert all(p.grad is None for p in params.values()), "Fisher estimation must not leave .grad behind"
    assert sum(f.sum() for f in ewc.fisher.values()) > 0
    assert all((f >= 0).all() for f in ewc.fisher.values())


def _fisher_by_hand(vlm, samples, form: str) -> dict[str, torch.Tensor]:
    """Per-sample squared gradients, averaged: the sample's answer log-likelihood summed over its
    tokens (``sum``) or averaged over them (``token_mean``), computed one sample at a time."""
    model = vlm.model
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    out = {n: torch.zeros_like(p) for n, p in params.items()}
    for s in samples:
        batch = vlm.train_batch([s])
        labels = batch.pop("labels")[0]
        logp = torch.log_softmax(model(**batch).logits[0].double(), dim=-1)
        picked = [logp[i - 1, labels[i]] for i in range(1, len(labels)) if labels[i] != -100]
        loglik = torch.stack(picked).sum()
        if form == "token_mean":
            loglik = loglik / len(picked)
        grads = torch.autograd.grad(loglik, list(params.values()), allow_unused=True)
        for n, g in zip(params, grads):
            if g is not None:
                out[n] += g.float() ** 2 / len(samples)
    return out


@pytest.mark.parametrize("form", ["sum", "token_mean"])
def test_ewc_fisher_is_the_mean_of_per_sample_squared_gradients(stream, form):
    """Default ``sum``: a sample's Fisher is (grad of its summed answer log-likelihood)^2, so a long
    answer is not protected 1/L^2 less than a short one; ``token_mean`` is the training loss's form."""
    vlm, data = stream
    samples = data["taskA"][:4]
    samples[1] = dataclasses.replace(samples[1], answer="a much longer answer of many tokens")
    ewc = EWC({"samples": 4, **({} if form == "sum" else {"fisher": form})})
    assert ewc.opts.fisher == form
    ctx = StageContext(vlm=vlm, task="taskA", stage=0, tasks=TASKS, train_data={"taskA": samples})
    ewc.after_task(ctx)
    vlm.model.eval()
    expected = _fisher_by_hand(vlm, samples, form)
    assert set(ewc.fisher) == set(expected)
    total = sum(f.sum() for f in expected.values())
    assert total > 0
    for n, f in expected.items():
        torch.testing.assert_close(ewc.fisher[n], f, rtol=1e-3, atol=1e-6 * float(total))


def test_ewc_fisher_form_is_validated():
    assert EWC.validate({"fisher": "token_mean"}) == []
    assert EWC.validate({"fisher": "mean"}) == ["method_options.fisher must be one of sum, token_mean, got 'mean'"]


# --------------------------------------------------------------------------- LwF


def test_distillation_is_zero_when_student_equals_teacher():
    logits = torch.randn(7, 50) * 4
    assert distillation_loss(logits, logits.clone(), 2.0).item() == 0.0
    assert distillation_loss(logits + torch.randn(7, 50), logits, 2.0).item() > 0


def test_lwf_adds_nothing_while_the_model_is_its_own_teacher(stream):
    vlm, data = stream
    lwf = LwF({"samples": 4, "batch_size": 3})
    assert lwf.loss(_ctx(vlm, data, 0), {}, None, torch.tensor(1.0)).item() == 1.0  # nothing stored at stage 1
    ctx = _ctx(vlm, data, 1)
    lwf.before_task(ctx)
    assert len(lwf.memory) == 4 and {s.task for s, _ in lwf.memory} == {"taskA"}
    vlm.model.eval()  # no dropout: the student is exactly the teacher
    for _ in range(3):  # cycles through the stored samples, batches padded differently from the teacher's
        added = lwf.loss(ctx, {}, None, torch.tensor(0.0)).item()
        assert abs(added) < 1e-6


def test_lwf_gradient_pulls_towards_the_teacher(stream):
    vlm, data = stream
    lwf = LwF({"samples": 2, "lambda_": 1.0})
    ctx = _ctx(vlm, data, 1)
    lwf.before_task(ctx)
    with torch.no_grad():  # move the student away from the teacher
        for n, p in vlm.model.named_parameters():
            if "lora_B" in n:
                p.add_(torch.randn_like(p) * 0.5)
    kd = lwf.loss(ctx, {}, None, torch.tensor(0.0))
    assert kd.item() > 0 and kd.requires_grad


def _kd_on_memory(vlm, lwf) -> float:
    """KL(teacher || student) over every stored sample, at LwF's temperature."""
    with torch.no_grad():
        student = torch.cat(answer_logits(vlm, [s for s, _ in lwf.memory]))
    teacher = torch.cat([t for _, t in lwf.memory])
    return distillation_loss(student, teacher, lwf.opts.temperature).item()


def test_one_step_on_the_distillation_term_moves_the_student_towards_the_teacher(stream):
    """An optimiser step on LwF's term alone (no task loss) lowers the student's divergence from
    the stored teacher distributions on the stored samples: the term pulls the right way."""
    vlm, data = stream
    lwf = LwF({"samples": 4, "batch_size": 4, "lambda_": 1.0})
    ctx = _ctx(vlm, data, 1)
    lwf.before_task(ctx)
    assert len(lwf.memory) == 4
    vlm.model.eval()
    params = [p for p in vlm.model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a student that has drifted from its teacher
        for n, p in vlm.model.named_parameters():
            if "lora_B" in n:
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    before = _kd_on_memory(vlm, lwf)
    assert before > 1e-3
    opt = torch.optim.SGD(params, lr=0.5)
    kd = lwf.loss(ctx, {}, None, torch.tensor(0.0))  # the distillation term only: lambda * KD
    assert kd.item() == pytest.approx(before, rel=1e-4)  # one batch covers the whole memory
    kd.backward()
    opt.step()
    after = _kd_on_memory(vlm, lwf)
    assert after < 0.9 * before, (before, after)


# --------------------------------------------------------------------------- replay


def test_replay_memory_is_deterministic_for_a_seed(stream):
    vlm, data = stream

    def memory(seed):
        r = Replay({"samples": 4})
        r.after_task(_ctx(vlm, data, 0, seed))
        return [s.id for s in r.replayed(_ctx(vlm, data, 1, seed))]

    assert memory(3) == memory(3)
    assert len(memory(3)) == 4 and all(i.startswith("taskA") for i in memory(3))
    assert memory(3) != memory(4)
    assert sample_indices(10, 4, 3, "replay", "taskA") == sample_indices(10, 4, 3, "replay", "taskA")


def test_replay_mixes_memories_into_later_tasks_only(stream):
    vlm, data = stream
    r = Replay({"samples": 4})
    ctx0 = _ctx(vlm, data, 0)
    assert r.train_data(ctx0, data["taskA"]) == data["taskA"]
    r.after_task(ctx0)
    mixed = r.train_data(_ctx(vlm, data, 1), data["taskB"])
    assert mixed[:10] == data["taskB"] and len(mixed) == 14


# --------------------------------------------------------------------------- options


def test_options_are_validated_with_full_key_names():
    assert EWC.validate({}) == [] and EWC.validate(None) == []
    problems = EWC.validate({"lamda_": 1.0, "samples": "many"})
    assert any("unknown key 'method_options.lamda_' (did you mean 'method_options.lambda_'?)" in p for p in problems)
    assert "method_options.samples must be int, got 'many'" in problems
    assert EWC.validate({"lambda_": -1}) == ["method_options.lambda_ must be >= 0, got -1.0"]
    assert LwF.validate({"temperature": 0}) == ["method_options.temperature must be > 0, got 0.0"]
    assert METHODS.get("sequential").validate({"x": 1})[0].startswith("unknown key 'method_options.x'")
    with pytest.raises(ValueError, match="method_options.every must be >= 1"):
        build_method("lwf", {"every": 0})
    assert build_method("ewc", {"lambda_": 1}).opts.lambda_ == 1.0


# --------------------------------------------------------------------------- the contract

# small options so every method does real work on 10 samples per task
SMALL = {"ewc": {"samples": 4}, "lwf": {"samples": 4, "batch_size": 2}, "replay": {"samples": 3}}


def _roundtrip(state: dict) -> dict:
    return load(save({k: v.detach().cpu().contiguous() for k, v in state.items()}))


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_runs_a_two_task_stream_and_resumes_from_its_state(name, stream):
    vlm, data = stream
    assert METHODS.get(name).validate(SMALL.get(name, {})) == []
    method = build_method(name, SMALL.get(name))
    cfg = TrainConfig(batch_size=4, lr=1e-3)
    for stage in range(2):
        ctx = _ctx(vlm, data, stage)
        method.before_task(ctx)
        samples = method.train_data(ctx, data[ctx.task])
        assert all(hasattr(s, "prompt") for s in samples)
        stats = train_stage(ctx, samples, cfg, [method], seed=stage, progress=False)
        assert stats.samples == len(samples)
        if stats.steps:
            assert torch.isfinite(torch.tensor(stats.final_loss))
        method.after_task(ctx)
        state = method.state_dict()
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        restored = build_method(name, SMALL.get(name))
        restored.load_state_dict(_roundtrip(state))
        back = restored.state_dict()
        assert set(back) == set(state)
        for k in state:
            assert torch.equal(back[k].cpu(), state[k].cpu()), k
        if stage == 0:  # a run resumed after stage 1 must do at stage 2 what the uninterrupted one does
            nxt = _ctx(vlm, data, 1)
            for m in (method, restored):
                m.before_task(nxt)
            ids = [[s.id for s in m.train_data(nxt, data["taskB"])] for m in (method, restored)]
            assert ids[0] == ids[1]
            batch = vlm.train_batch(data["taskB"][:2])
            vlm.model.eval()
            base = vlm.model(**batch).loss
            losses = [m.loss(nxt, batch, None, base).item() for m in (method, restored)]
            assert losses[0] == pytest.approx(losses[1], rel=1e-6, abs=1e-7)
