"""KeepLoRA (Luo et al., ICLR 2026, arXiv 2601.19659; the InfLoRA family): a frozen A outside what earlier tasks use.

Follows the released code (github.com/MaolinLuo/KeepLoRA: ``DCL_UCIT/`` for LLaVA-1.5, ``CL_VISTA/``
for Video-LLaVA; ``extract_weights.py``, ``extract_gradients.py`` and ``train.py``, run by the
``train_all`` / ``train_CVU`` scripts). For every adapted weight ``W`` (out x in, PyTorch's layout:
``y = W x``) the method keeps an orthonormal basis ``U`` (in x k) of input directions to leave alone,
the release's "principal subspace":

1. Before the first task, ``U`` is the principal subspace of ``W`` itself: its leading right
   singular vectors whose cumulative share of ``sum sigma^2`` stays below ``init_energy`` (0.6), at
   least one (the release counts the shares below the threshold, so it keeps just under 60%).
2. Before each task, the gradient ``G`` of the task's loss with respect to ``W`` at the current
   (merged) model is averaged over ``grad_samples`` training samples, ``U`` is projected out
   (``G - G U U^T``), and the top-r input-side singular vectors of what remains (randomized SVD,
   ``torch.svd_lowrank``) become the rows of the LoRA's ``A``, which stays frozen; ``B`` starts at
   zero and only ``B`` (and the projector) train. So the task's update ``scaling * B A`` maps every
   direction of ``U`` to zero: ``(W + BA) u = W u``.
3. After the task, ``scaling * B A`` is merged into ``W`` (``coin.adapters.merge``), the gradient of
   the same task's loss is taken again at the merged model on the same samples, and ``U`` grows as
   in GPM: counting the share of that gradient's energy ``||G||_F^2`` that ``U`` already holds, the
   leading singular directions of ``G - G U U^T`` are appended one by one until the share reaches
   ``task_energy`` (0.99); none when ``U`` already holds that much.

``grow: update`` keeps coin's earlier reading of step 3, written before the code was released:
``U`` grows by the merged update's own input directions covering ``task_energy`` of its energy.

Orientation: the release writes ``G^T`` (in x out) and takes *left* singular vectors; in PyTorch's
``y = W x`` those are the right singular vectors of ``G``, the input side, where PEFT's ``A`` lives.

Rank and alpha are the adapter's (set in the shipped configs, not here). The release's Video-LLaVA
scripts run r 64 with alpha = 2r (``--lora_alpha $((RANK * 2))``) and the energies 0.6 / 0.99 (one
``extract_weights`` call with 0.6, ``energy_threshold: 0.99`` in every ``train_post`` config). Still
our reading: that its current LLaVA-1.5 scripts, which we could not read, use the same values; an
earlier snapshot of them (kept in a fork) ran r 32 with alpha = r / 4 on UCIT and r 64 with alpha = 2r
on MLLM-DCL, with the same energies.

Ours, not the release's:

- ``grad_samples`` seeded random samples in batches of ``batch_size`` (eval mode), every process
  of a distributed run computing the same estimate; the release takes an evenly spaced share of
  the task's training set (``--data-ratio``: 0.1 in the Video-LLaVA scripts, 0.2 in the earlier
  LLaVA-1.5 ones) one sample per batch (train mode; the merged LM has no dropout), split over the
  GPUs. Both gradients of a task, before and after it, use the same samples, as the release;
- ``oversample``: the release's randomized SVD takes q = r columns, no more; and where fewer than r
  directions are left outside ``U`` (or the gradient has lower rank), the remaining rows of ``A``
  are zero, so that part of the LoRA learns nothing, where the release keeps whatever the
  randomized SVD returned;
- one ``alpha`` for every layer: the release's current LLaVA-1.5 ``train.py`` also scales alpha per
  LM layer, linearly from 0.2 alpha at the first to alpha at the last (its Video-LLaVA code and the
  earlier LLaVA-1.5 snapshot do not).

Saved with each stage (safetensors, only what the stage added): the initial subspace (first
stage), the stage's extension of ``U`` and its merged factors. A resumed run reloads them stage by
stage and rebuilds the merged weights bit for bit (``restore``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from coin.adapters.merge import MergedWeights, lora_layers, merge_problems, unmergeable
from coin.methods.base import METHODS, Method, StageContext, sample_indices

if TYPE_CHECKING:
    from coin.models.backbone import VLM

GROWTH = ("gradient", "update")  # what U grows by after a task: the release's, or coin's former reading


@dataclass
class KeepLoRAOptions:
    """``method_options`` of KeepLoRA."""

    init_energy: float = 0.6  # U starts as W's leading directions holding just under this share of its energy (release: 0.6)
    task_energy: float = 0.99  # after each task U grows until it holds this share of the task's gradient (release: 0.99)
    grow: str = "gradient"  # gradient: the loss gradient at the merged model (the release's); update: the merged update's directions
    grad_samples: int = 64  # training samples of the task whose loss gradient of W sets A and grows U (ours)
    batch_size: int = 4  # samples per batch of that gradient (ours; eval mode, no dropout; the release: 1)
    oversample: int = 10  # randomized SVD: columns beyond r (torch.svd_lowrank's q = r + oversample; the release: 0)
    niter: int = 2  # randomized SVD: power iterations (torch.svd_lowrank's default, as the release)

    def check(self) -> list[str]:
        out = []
        if not 0 <= self.init_energy < 1:
            out.append(f"init_energy must be in [0, 1), got {self.init_energy}")
        if not 0 < self.task_energy <= 1:
            out.append(f"task_energy must be in (0, 1], got {self.task_energy}")
        if self.grow not in GROWTH:
            out.append(f"grow must be one of {', '.join(GROWTH)}, got {self.grow!r}")
        for key in ("grad_samples", "batch_size"):
            if getattr(self, key) < 1:
                out.append(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("oversample", "niter"):
            if getattr(self, key) < 0:
                out.append(f"{key} must be >= 0, got {getattr(self, key)}")
        return out


def energy_rank(sigma: torch.Tensor, share: float) -> int:
    """The fewest leading singular values whose squares reach ``share`` of the total (0 for a zero spectrum)."""
    energy = sigma.double().pow(2)
    total = float(energy.sum())
    if total <= 0 or share <= 0:
        return 0
    reached = torch.cumsum(energy, 0) >= share * total * (1 - 1e-12)
    return int(torch.nonzero(reached)[0]) + 1 if bool(reached.any()) else len(sigma)


def principal_rank(sigma: torch.Tensor, share: float) -> int:
    """The release's size of W's principal subspace: the leading singular values whose cumulative share
    of the energy stays below ``share``, at least one (0 for ``share`` 0 or a zero spectrum)."""
    energy = sigma.double().pow(2)
    total = float(energy.sum())
    if total <= 0 or share <= 0:
        return 0
    return max(int((torch.cumsum(energy, 0) / total < share).sum()), 1)


def growth_rank(held: float, sigma: torch.Tensor, total: float, share: float) -> int:
    """How many leading directions outside ``U`` the release appends (GPM's rule).

    ``held``: the share of the gradient's energy ``total`` already in ``U``; ``sigma``: the singular
    values of the gradient's part outside ``U``. Directions are added while the share held is below
    ``share``; 0 when ``U`` already holds it, all of them when rounding keeps it out of reach.
    """
    if held >= share:
        return 0
    reached = held + torch.cumsum(sigma.double().pow(2), 0) / total >= share
    return int(torch.nonzero(reached)[0]) + 1 if bool(reached.any()) else len(sigma)


def orthonormal_outside(vectors: torch.Tensor, basis: torch.Tensor | None, tol: float = 1e-4) -> torch.Tensor:
    """Orthonormal columns spanning ``vectors`` (in x m) minus the span of ``basis`` (in x k); weak ones dropped.

    Projected out twice (classical Gram-Schmidt loses orthogonality once), then QR; a column whose
    projection keeps less than ``tol`` of its norm is dropped.
    """
    v = vectors.float()
    norms = v.norm(dim=0).clamp_min(1e-30)
    for _ in range(2):
        if basis is not None and basis.numel():
            v = v - basis @ (basis.T @ v)
    keep = v.norm(dim=0) > tol * norms
    v = v[:, keep]
    if v.shape[1] == 0:
        return v
    q, r = torch.linalg.qr(v)
    q = q[:, r.diagonal().abs() > tol * r.diagonal().abs().max()]
    if basis is not None and basis.numel():
        q = q - basis @ (basis.T @ q)
        q = q / q.norm(dim=0, keepdim=True)
    return q


def task_gradients(vlm: VLM, samples: list, layers: dict[str, Any], batch_size: int) -> dict[str, torch.Tensor]:
    """The mean over batches of the loss gradient of each layer's base weight (fp32, out x in).

    The base weights take part in autograd only here (``requires_grad`` is put back after);
    dropout is off (eval mode), so the estimate is deterministic. Every process of a
    distributed run computes the same estimate from the same seeded samples.
    """
    model = vlm.model
    weights = {n: layer.get_base_layer().weight for n, layer in layers.items()}
    flags = {n: w.requires_grad for n, w in weights.items()}
    grads = {n: torch.zeros(w.shape, dtype=torch.float32, device=w.device) for n, w in weights.items()}
    device = next(iter(weights.values())).device
    was_training = model.training
    model.eval()
    n_batches = 0
    try:
        for w in weights.values():
            w.requires_grad_(True)
        for k in range(0, len(samples), batch_size):
            batch = {key: v.to(device) for key, v in vlm.train_batch(samples[k : k + batch_size]).items()}
            loss = model(**batch).loss
            found = torch.autograd.grad(loss, list(weights.values()), allow_unused=True)
            for n, g in zip(weights, found):
                if g is not None:
                    grads[n] += g.float()
            n_batches += 1
    finally:
        for n, w in weights.items():
            w.requires_grad_(flags[n])
        model.train(was_training)
    return {n: g / max(n_batches, 1) for n, g in grads.items()}


@METHODS.register
class KeepLoRA(Method):
    """KeepLoRA: A frozen from the task's gradient outside a protected subspace, only B trains, merged after a task."""

    name = "keeplora"
    Options = KeepLoRAOptions
    STATE = "keep/"

    def __init__(self, options: dict | None = None) -> None:
        super().__init__(options)
        self.merged = MergedWeights()
        # (stage, kind) -> layer -> orthonormal columns (in x k, fp32, host); kind "init" sorts before "ext"
        self.subspace: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
        self.last_stage: int | None = None

    @classmethod
    def check_run(cls, cfg: Any) -> list[str]:
        return merge_problems(cfg, cls.name)

    def basis(self, name: str) -> torch.Tensor | None:
        """Layer ``name``'s protected subspace ``U`` (in x k), or None before the first task."""
        keys = sorted(self.subspace, key=lambda k: (k[0], k[1] != "init"))  # stage by stage, init first
        parts = [self.subspace[key][name] for key in keys if name in self.subspace[key]]
        return torch.cat(parts, dim=1) if parts else None

    # ------------------------------------------------------------------ hooks
    def before_task(self, ctx: StageContext) -> None:
        """Protect W's principal subspace (first task), then set each A from the task's projected gradient."""
        model = ctx.vlm.model
        problems = unmergeable(model)
        if problems:
            raise ValueError("keeplora cannot work with this model's adapter: " + "; ".join(problems[:5]))
        layers = lora_layers(model)
        self.merged.capture(model)
        if not self.subspace:
            self.subspace[(ctx.stage, "init")] = {
                n: self._principal(layer.get_base_layer().weight) for n, layer in layers.items()}
        self.last_stage = ctx.stage
        grads = self._gradients(ctx, layers)
        device = next(iter(grads.values())).device
        # the randomized SVD draws from its own seeded stream: A depends on the seed and the stage only,
        # and the training's random stream is the one it would be without KeepLoRA
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            torch.manual_seed(ctx.seed * 1000 + ctx.stage)
            for n, layer in layers.items():
                a = layer.lora_A["default"].weight
                a.copy_(self._frozen_a(grads.pop(n), self.basis(n), a.shape[0]).to(a.device, a.dtype))
                layer.lora_B["default"].weight.zero_()
                a.requires_grad_(False)

    def after_task(self, ctx: StageContext) -> None:
        """Merge the LoRA into W, then grow each layer's protected subspace (by ``grow``'s rule)."""
        self.last_stage = ctx.stage
        model = ctx.vlm.model
        self.merged.merge(model, ctx.stage, reset_a=False)  # B = 0 now: the model is the merged one
        layers = lora_layers(model)
        if self.opts.grow == "gradient":
            grads = self._gradients(ctx, layers)
            new = {n: self._gradient_directions(grads.pop(n), self.basis(n)) for n in layers}
        else:
            factors = self.merged.factors[ctx.stage]
            new = {n: self._update_directions(*factors[n], self.basis(n)) for n in layers}
        self.subspace[(ctx.stage, "ext")] = {n: u for n, u in new.items() if u.shape[1]}

    def restore(self, vlm: VLM) -> None:
        self.merged.apply(vlm.model)
        for layer in lora_layers(vlm.model).values():  # A is frozen whenever KeepLoRA trains
            layer.lora_A["default"].weight.requires_grad_(False)

    # ------------------------------------------------------------------ the linear algebra
    def _gradients(self, ctx: StageContext, layers: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The task's loss gradient of every adapted W at the current model, on the task's seeded samples."""
        data = ctx.train_data[ctx.task]
        idx = sample_indices(len(data), self.opts.grad_samples, ctx.seed, "keeplora", ctx.task)
        return task_gradients(ctx.vlm, [data[i] for i in idx], layers, self.opts.batch_size)

    def _principal(self, weight: torch.Tensor) -> torch.Tensor:
        """Leading right singular vectors of ``weight`` holding just under ``init_energy`` (in x k, fp32, host)."""
        _, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
        return vh[: principal_rank(s, self.opts.init_energy)].T.contiguous().cpu()

    def _frozen_a(self, grad: torch.Tensor, basis: torch.Tensor | None, r: int) -> torch.Tensor:
        """``A`` (r x in): the top input-side singular vectors of ``grad`` with ``basis`` projected out.

        Rows beyond what is left outside ``basis`` (or beyond the gradient's rank) are zero.
        """
        out = torch.zeros(r, grad.shape[1], dtype=torch.float32)
        u = None if basis is None or basis.numel() == 0 else basis.to(grad.device)
        g = grad if u is None else grad - (grad @ u) @ u.T
        q = min(r + self.opts.oversample, *g.shape)
        if q == 0 or float(g.abs().max()) == 0.0:
            return out
        _, s, v = torch.svd_lowrank(g, q=q, niter=self.opts.niter)
        v = v[:, s > s[0] * 1e-6][:, :r]
        rows = orthonormal_outside(v, u).T.cpu()
        out[: rows.shape[0]] = rows
        return out

    def _gradient_directions(self, grad: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
        """The release's growth: ``grad``'s leading input directions outside ``basis`` until ``basis`` and
        they hold ``task_energy`` of its energy (in x k, fp32, host; k = 0 when ``basis`` already does)."""
        total = float(grad.double().pow(2).sum())
        if total == 0.0:
            return torch.zeros(grad.shape[1], 0)
        u = None if basis is None or basis.numel() == 0 else basis.to(grad.device)
        rest = grad if u is None else grad - (grad @ u) @ u.T
        _, s, vh = torch.linalg.svd(rest, full_matrices=False)
        held = 1.0 - float(s.double().pow(2).sum()) / total
        k = growth_rank(held, s, total, self.opts.task_energy)
        if k == 0:
            return torch.zeros(grad.shape[1], 0)
        return orthonormal_outside(vh[:k].T, u).cpu()

    def _update_directions(self, b: torch.Tensor, a: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
        """``grow: update``: the merged update ``b @ a``'s input directions covering ``task_energy`` of its
        energy, outside ``basis`` (``b`` out x r, ``a`` r x in: a stage's merged factors)."""
        qa, ra = torch.linalg.qr(a.T)  # A^T = Qa Ra, so B A = (B Ra^T) Qa^T
        _, s, wh = torch.linalg.svd(b @ ra.T, full_matrices=False)
        k = energy_rank(s, self.opts.task_energy)
        if k == 0:
            return torch.zeros(a.shape[1], 0)
        u = None if basis is None or basis.numel() == 0 else basis.to(a.device)
        return orthonormal_outside(qa @ wh[:k].T, u).cpu()

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        """What the last stage added: its subspace parts (``keep/<stage>/<init|ext>/<layer>``) and merged factors."""
        if self.last_stage is None:
            return {}
        out = {}
        for (stage, kind), layers in self.subspace.items():
            if stage == self.last_stage:
                out.update({f"{self.STATE}{stage:03d}/{kind}/{n}": t.contiguous() for n, t in layers.items()})
        return {**out, **self.merged.state_dict(self.last_stage)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Add a stage's saved parts to those loaded before (a resumed run loads every finished stage in order)."""
        for key, value in state.items():
            if key.startswith(self.STATE):
                stage, kind, name = key[len(self.STATE):].split("/", 2)
                self.subspace.setdefault((int(stage), kind), {})[name] = value.float()
                self.last_stage = max(self.last_stage or 0, int(stage))
            elif key.startswith(MergedWeights.PREFIX):
                self.last_stage = max(self.last_stage or 0, int(key[len(MergedWeights.PREFIX):].split("/", 1)[0]))
        self.merged.load_state_dict(state)
