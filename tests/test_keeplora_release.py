"""KeepLoRA as its released code runs it (MaolinLuo/KeepLoRA), pinned on a three-task stream of the micro LLaVA.

The release's procedure per adapted weight ``W`` (out x in), in PyTorch's ``y = W x``:

- before the first task, ``U`` = W's leading right singular vectors whose cumulative share of
  ``sum sigma^2`` stays below 0.6, at least one (``extract_weights.py``);
- before each task, ``A`` = the top-r input directions of the task's loss gradient at the current
  merged model with ``U`` projected out; ``A`` frozen, ``B`` from zero trains (``extract_gradients.py
  --svd-mode fixed_rank``, ``train.py --freeze_lora_A``);
- after each task, the LoRA is merged, the gradient of the same task's loss is taken again at the
  merged model, and ``U`` grows by the top directions of that gradient outside ``U`` until ``U``
  holds 0.99 of the gradient's energy (``extract_gradients.py --svd-mode energy``).

The expected subspaces here are computed by hand from gradients taken in this file (numpy-style
SVDs of ``G^T`` as the release writes them), not from the method's helpers.
"""

from __future__ import annotations

import pytest
import torch

from coin.adapters import attach_adapter
from coin.adapters.merge import lora_delta, lora_layers
from coin.config import AdapterConfig, TrainConfig
from coin.data.sample import Sample
from coin.engine.train import train_stage
from coin.methods import StageContext, build_method
from coin.methods.base import sample_indices
from tinyvlm import COLOURS, tiny_samples, tiny_vlm

TASKS = ["taskA", "taskB", "taskC"]
R = 4
GRAD_SAMPLES = 8
OPTIONS = {"grad_samples": GRAD_SAMPLES}  # everything else at its default: the release's procedure


def _samples(root, task: str, n: int = 12) -> list:
    if task != "taskC":
        return tiny_samples(root, task, n)
    base = tiny_samples(root, "taskA", n)  # the same images, another question and answer
    return [Sample(f"taskC-{k}", "taskC", s.image, "Name the colour of the shape.", COLOURS[(k + 3) % len(COLOURS)])
            for k, s in enumerate(base)]


def _vlm():
    vlm = tiny_vlm(seed=0)
    attach_adapter(vlm, AdapterConfig(type="lora", r=R, alpha=2 * R, dropout=0.0, train_projector=True))
    return vlm


def _ctx(vlm, data, stage: int) -> StageContext:
    return StageContext(vlm=vlm, task=TASKS[stage], stage=stage, tasks=TASKS,
                        train_data={t: data[t] for t in TASKS[: stage + 1]}, seed=0)


def _gradients(vlm, samples: list) -> dict[str, torch.Tensor]:
    """The mean over batches of 4 of each adapted base weight's loss gradient (eval mode), written out here."""
    model = vlm.model
    layers = lora_layers(model)
    weights = {n: layer.get_base_layer().weight for n, layer in layers.items()}
    model.eval()
    sums = {n: torch.zeros_like(w, dtype=torch.float32) for n, w in weights.items()}
    batches = 0
    for w in weights.values():
        w.requires_grad_(True)
    try:
        for k in range(0, len(samples), 4):
            loss = model(**vlm.train_batch(samples[k: k + 4])).loss
            for n, g in zip(weights, torch.autograd.grad(loss, list(weights.values()))):
                sums[n] += g.float()
            batches += 1
    finally:
        for w in weights.values():
            w.requires_grad_(False)
    return {n: s / batches for n, s in sums.items()}


def _task_samples(data, task: str) -> list:
    return [data[task][i] for i in sample_indices(len(data[task]), GRAD_SAMPLES, 0, "keeplora", task)]


def _released_growth(grad: torch.Tensor, u: torch.Tensor, threshold: float = 0.99) -> torch.Tensor:
    """The release's ``energy`` mode, line by line on ``G^T`` (in x out): the directions it appends to ``u``."""
    x = grad.T.double()
    total = (torch.linalg.svdvals(x) ** 2).sum()
    u = u.double()
    hat = x - u @ (u.T @ x)
    left, s, _ = torch.linalg.svd(hat, full_matrices=False)
    ratio = s**2 / total
    accumulated = (total - (s**2).sum()) / total
    k = 0
    for i in range(len(s)):
        if accumulated < threshold:
            accumulated += ratio[i]
            k += 1
        else:
            break
    return left[:, :k].float()


def _projector(u: torch.Tensor) -> torch.Tensor:
    return u @ u.T


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """Three tasks through before_task, training and after_task, with what the tests compare recorded."""
    root = tmp_path_factory.mktemp("keeplora-release")
    data = {t: _samples(root / "img", t) for t in TASKS}
    vlm, method = _vlm(), build_method("keeplora", OPTIONS)
    w0 = {n: layer.get_base_layer().weight.detach().clone() for n, layer in lora_layers(vlm.model).items()}
    rec = {"data": data, "method": method, "w0": w0, "pre": [], "a": [], "a_trained": [], "b_trained": [],
           "delta": [], "before": [], "post": [], "after": []}
    for stage, task in enumerate(TASKS):
        ctx = _ctx(vlm, data, stage)
        rec["pre"].append(_gradients(vlm, _task_samples(data, task)))  # the merged model, B = 0: A does not matter
        method.before_task(ctx)
        layers = lora_layers(vlm.model)
        rec["before"].append({n: method.basis(n).clone() for n in layers})
        rec["a"].append({n: layer.lora_A["default"].weight.detach().clone() for n, layer in layers.items()})
        train_stage(ctx, data[task], TrainConfig(batch_size=4, lr=5e-3), [method], seed=stage, progress=False)
        rec["a_trained"].append({n: layer.lora_A["default"].weight.detach().clone() for n, layer in layers.items()})
        rec["b_trained"].append({n: layer.lora_B["default"].weight.detach().clone() for n, layer in layers.items()})
        rec["delta"].append({n: lora_delta(layer) for n, layer in layers.items()})
        method.after_task(ctx)
        rec["post"].append(_gradients(vlm, _task_samples(data, task)))  # at the merged model
        rec["after"].append({n: method.basis(n).clone() for n in layers})
    return rec


def _hand_subspaces(stream) -> list[dict[str, torch.Tensor]]:
    """The protected subspace the release holds after each task, built here from the recorded gradients."""
    out, u = [], stream["before"][0]  # W's principal part (pinned by its own test)
    for post in stream["post"]:
        u = {n: torch.cat([u[n], _released_growth(post[n], u[n])], dim=1) for n in u}
        out.append(u)
    return out


def test_the_first_subspace_is_ws_leading_directions_below_init_energy(stream):
    """extract_weights.py: r = #{i : cumulative share of sigma_i^2 < 0.6}, at least 1 (not the first to reach it)."""
    for n, w in stream["w0"].items():
        u = stream["before"][0][n]
        s = torch.linalg.svdvals(w.double())
        share = torch.cumsum(s**2, 0) / (s**2).sum()
        k = max(int((share < 0.6).sum()), 1)
        assert u.shape[1] == k, n
        assert share[k - 1] < 0.6 or k == 1
        _, _, vh = torch.linalg.svd(w.double(), full_matrices=False)
        torch.testing.assert_close(_projector(u.double()), _projector(vh[:k].T), atol=1e-5, rtol=0)


def test_after_each_task_u_grows_by_the_loss_gradient_at_the_merged_model(stream):
    """extract_gradients.py --svd-mode energy on Task{t}_merged: the gradient's top directions outside U,
    until U holds 0.99 of its energy; the stage's saved extension is exactly those directions."""
    grew = 0
    for stage, post in enumerate(stream["post"]):
        ext = stream["method"].subspace[(stage, "ext")]
        for n, grad in post.items():
            before, after = stream["before"][stage][n], stream["after"][stage][n]
            want = _released_growth(grad, before)
            got = ext.get(n, torch.zeros(before.shape[0], 0))
            assert got.shape[1] == want.shape[1], (stage, n)
            torch.testing.assert_close(_projector(got), _projector(want), atol=1e-4, rtol=0)
            assert after.shape[1] == before.shape[1] + want.shape[1]
            torch.testing.assert_close(after.T @ after, torch.eye(after.shape[1]), atol=1e-5, rtol=0)
            held = ((grad @ after).norm() ** 2 / grad.norm() ** 2).item()
            assert held >= 0.99 - 1e-4, (stage, n, held)  # the grown U holds 99% of the gradient's energy
            grew += want.shape[1]
    assert grew > 0  # not vacuous: the subspace did grow


def test_each_later_a_is_orthogonal_to_the_released_subspace_and_from_the_projected_gradient(stream):
    """Before tasks 2 and 3: A's rows lie outside W's principal part and every earlier task's gradient
    directions (computed by hand), and span the top directions of the new task's projected gradient."""
    hand = _hand_subspaces(stream)
    for stage in (1, 2):
        for n, a in stream["a"][stage].items():
            u = hand[stage - 1][n]
            assert (a @ u).abs().max() < 1e-4, (stage, n)
            g = stream["pre"][stage][n]
            gp = g - (g @ u) @ u.T
            s = torch.linalg.svdvals(gp)
            rows = int((a.norm(dim=1) > 0.5).sum())
            assert rows == min(R, int((s > s[0] * 1e-6).sum()))
            assert (gp @ a.T).norm() ** 2 >= 0.999 * (s[:rows] ** 2).sum(), (stage, n)


def test_a_stays_frozen_b_trains_and_each_update_spares_the_released_subspace(stream):
    """Only B trains; each task's update maps every direction the release protects before it to zero."""
    protected = [stream["before"][0]] + _hand_subspaces(stream)[:-1]
    for stage in range(len(TASKS)):
        for n, delta in stream["delta"][stage].items():
            assert torch.equal(stream["a_trained"][stage][n], stream["a"][stage][n])
            assert stream["b_trained"][stage][n].abs().max() > 0
            assert (delta @ protected[stage][n]).abs().max() <= 1e-5 * max(1.0, delta.abs().max().item()), (stage, n)


def test_grow_update_keeps_the_former_reading_the_merged_updates_directions(tmp_path):
    """``grow: update``: U grows by the merged update's input directions covering task_energy of its energy."""
    data = {t: _samples(tmp_path / "img", t) for t in TASKS}
    vlm, method = _vlm(), build_method("keeplora", {**OPTIONS, "grow": "update"})
    for stage, task in enumerate(TASKS):
        ctx = _ctx(vlm, data, stage)
        method.before_task(ctx)
        train_stage(ctx, data[task], TrainConfig(batch_size=4, lr=5e-3), [method], seed=stage, progress=False)
        layers = lora_layers(vlm.model)
        delta = {n: lora_delta(layer) for n, layer in layers.items()}
        k = {n: method.basis(n).shape[1] for n in layers}
        method.after_task(ctx)
        for n in layers:
            u = method.basis(n)
            assert k[n] < u.shape[1] <= k[n] + R
            assert (delta[n] - delta[n] @ u @ u.T).norm() <= 0.1 * delta[n].norm()  # 0.99 of its energy: in U


def test_grow_takes_one_of_two_values():
    with pytest.raises(Exception, match="grow must be one of"):
        build_method("keeplora", {"grow": "weights"})
