"""KeepLoRA (Luo et al., ICLR 2026, arXiv 2601.19659; the InfLoRA family): a frozen A outside what earlier tasks use.

For every adapted weight ``W`` (out x in, PyTorch's layout: ``y = W x``) the method keeps an
orthonormal basis ``U`` (in x k) of input directions to leave alone:

1. Before the first task, ``U`` is the principal subspace of ``W`` itself: its leading right
   singular vectors covering ``init_energy`` (0.6) of the spectrum's energy ``sum sigma^2``.
2. Before each task, the gradient ``G`` of the task's loss with respect to ``W`` is accumulated
   over ``grad_samples`` training samples, ``U`` is projected out (``G - G U U^T``), and the top-r
   input-side singular vectors of what remains (randomized SVD, ``torch.svd_lowrank``) become the
   rows of the LoRA's ``A``, which stays frozen; only ``B`` (and the projector) train. So the
   task's update ``scaling * B A`` maps every direction of ``U`` to zero: ``(W + BA) u = W u``.
3. After the task, ``scaling * B A`` is merged into ``W`` (``coin.adapters.merge``), and ``U`` grows
   by the update's leading input directions covering ``task_energy`` (0.99) of its energy.

Orientation: the paper writes ``y = x W`` and speaks of *left* singular vectors; in PyTorch's
``y = W x`` those are the right singular vectors, the input side, which is where PEFT's ``A``
lives. That the extension in step 3 uses the merged update (rather than the task's projected
gradient) is our reading of the paper's description; the released code was not available to us.

Defaults: rank 32 with alpha = r / 4 (``adapter.r: 32, adapter.alpha: 8``, set in the shipped
configs, not here) and the energies 0.6 / 0.99 are the paper's scripts' values as the issue
quotes them; ``grad_samples``, ``batch_size``, ``oversample`` and ``niter`` are ours.

When ``U`` already spans (nearly) all of a layer's input space, fewer than r directions are
left: the remaining rows of ``A`` are zero and that part of the LoRA learns nothing.

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


@dataclass
class KeepLoRAOptions:
    """``method_options`` of KeepLoRA."""

    init_energy: float = 0.6  # share of each W's spectral energy its protected subspace covers at first (paper: 0.6)
    task_energy: float = 0.99  # share of each merged update's energy added to the protected subspace (paper: 0.99)
    grad_samples: int = 64  # training samples of the task whose loss gradient of W initialises A (ours)
    batch_size: int = 4  # samples per batch of that gradient (ours; eval mode, no dropout)
    oversample: int = 10  # randomized SVD: columns beyond r (torch.svd_lowrank's q = r + oversample)
    niter: int = 2  # randomized SVD: power iterations (torch.svd_lowrank's default)

    def check(self) -> list[str]:
        out = []
        if not 0 <= self.init_energy < 1:
            out.append(f"init_energy must be in [0, 1), got {self.init_energy}")
        if not 0 < self.task_energy <= 1:
            out.append(f"task_energy must be in (0, 1], got {self.task_energy}")
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
        data = ctx.train_data[ctx.task]
        idx = sample_indices(len(data), self.opts.grad_samples, ctx.seed, "keeplora", ctx.task)
        grads = task_gradients(ctx.vlm, [data[i] for i in idx], layers, self.opts.batch_size)
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
        """Grow each layer's protected subspace by the update's directions, then merge the LoRA into W."""
        self.last_stage = ctx.stage
        ext = {}
        for n, layer in lora_layers(ctx.vlm.model).items():
            new = self._update_directions(layer, self.basis(n))
            if new.shape[1]:
                ext[n] = new
        self.subspace[(ctx.stage, "ext")] = ext
        self.merged.merge(ctx.vlm.model, ctx.stage, reset_a=False)

    def restore(self, vlm: VLM) -> None:
        self.merged.apply(vlm.model)
        for layer in lora_layers(vlm.model).values():  # A is frozen whenever KeepLoRA trains
            layer.lora_A["default"].weight.requires_grad_(False)

    # ------------------------------------------------------------------ the linear algebra
    def _principal(self, weight: torch.Tensor) -> torch.Tensor:
        """Leading right singular vectors of ``weight`` covering ``init_energy`` (in x k, fp32, host)."""
        _, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
        return vh[: energy_rank(s, self.opts.init_energy)].T.contiguous().cpu()

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

    def _update_directions(self, layer: Any, basis: torch.Tensor | None) -> torch.Tensor:
        """The merged update's input directions covering ``task_energy`` of its energy, outside ``basis``."""
        b = layer.lora_B["default"].weight.detach().float()
        a = layer.lora_A["default"].weight.detach().float()
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
