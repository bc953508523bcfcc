"""Elastic Weight Consolidation: a quadratic pull towards earlier tasks' weights, weighted by Fisher.

After each task the diagonal (empirical) Fisher ``F_t`` of the trainable parameters is estimated
from K of the task's training samples (the paper: K = 1000) with their ground-truth answers;
later tasks add ``lambda/2 * sum_t sum_p F_t (theta - theta*_t)^2`` to their loss (the paper:
lambda = 0.1).

Which gradient is squared (``fisher``):

- ``sum`` (default): the empirical Fisher's own definition, ``(grad log p(answer | prompt))^2``
  per sample, the log-likelihood summed over the answer's tokens. Every sample weighs the same
  whatever the length of its answer.
- ``token_mean``: the gradient of the per-token mean loss (the training loss), as many LLM
  implementations of EWC do. A sample with L answer tokens then gets ``1/L^2`` of its Fisher:
  a 25-token Grounding box is protected about 100x less than a 2-token ScienceQA letter.

The two differ in scale by about ``L^2``, so the same lambda means different strengths; the
paper does not say which form its lambda = 0.1 was set for.

Storage stays at two tensors per parameter however many tasks pass, without approximating:
``sum_t F_t (theta - theta*_t)^2`` equals ``F (theta - anchor)^2`` plus a constant, with
``F = sum_t F_t`` and ``anchor`` the F-weighted mean of the ``theta*_t``; the gradient, which is
all that training sees, is identical. ``online: true`` gives online EWC instead (Schwarz et al.
2018): ``F <- decay * F + F_t`` and the anchor is simply the latest weights.

The Fisher and anchor are saved with every stage (safetensors), so a resumed run continues with
exactly the penalty it had.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

from coin.methods.base import METHODS, Method, StageContext, sample_indices

if TYPE_CHECKING:
    from coin.models.backbone import VLM


@dataclass
class EWCOptions:
    """``method_options`` of EWC."""

    samples: int = 1000  # K: samples per task for the Fisher (fewer when the task has fewer)
    lambda_: float = 0.1  # weight of the penalty
    online: bool = False  # online EWC: decay the old Fisher, anchor at the latest weights
    decay: float = 1.0  # online EWC's gamma (only with online: true)
    batch_size: int = 1  # 1: exact per-sample Fisher; larger: squared gradients of batch means (faster, coarser)
    fisher: str = "sum"  # which gradient is squared: "sum" (summed log-likelihood) or "token_mean" (see above)

    def check(self) -> list[str]:
        out = []
        if self.samples < 1:
            out.append(f"samples must be >= 1, got {self.samples}")
        if self.lambda_ < 0:
            out.append(f"lambda_ must be >= 0, got {self.lambda_}")
        if not 0 <= self.decay <= 1:
            out.append(f"decay must be in [0, 1], got {self.decay}")
        if self.decay != 1.0 and not self.online:
            out.append("decay only applies with online: true")
        if self.batch_size < 1:
            out.append(f"batch_size must be >= 1, got {self.batch_size}")
        if self.fisher not in FISHER_LOSSES:
            out.append(f"fisher must be one of {', '.join(FISHER_LOSSES)}, got {self.fisher!r}")
        return out


def _trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


@METHODS.register
class EWC(Method):
    """EWC over the trainable parameters (the adapter and the projector)."""

    name = "ewc"
    Options = EWCOptions
    # under dist.strategy fsdp the trainable weights stay whole on every process (coin.engine.fsdp), and every
    # process runs the same seeded Fisher samples, so the Fisher, the anchor and the penalty are unchanged
    supports_fsdp = True

    def __init__(self, options: dict | None = None) -> None:
        super().__init__(options)
        self.fisher: dict[str, torch.Tensor] = {}  # parameter name -> accumulated diagonal Fisher (float32)
        self.anchor: dict[str, torch.Tensor] = {}  # parameter name -> F-weighted mean of the theta*_t

    # ------------------------------------------------------------------ the penalty
    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        """``1/2 * sum F (theta - anchor)^2`` over the parameters with a Fisher (without lambda)."""
        params = _trainable(model)
        device = next(iter(params.values())).device if params else torch.device("cpu")
        total = torch.zeros((), device=device)
        for name, f in self.fisher.items():
            p = params.get(name)
            if p is None:
                raise KeyError(f"EWC has a Fisher for {name!r}, which is not a trainable parameter of the model")
            f, a = f.to(p.device), self.anchor[name].to(p.device)
            total = total + (f * (p.float() - a).pow(2)).sum()
        return 0.5 * total

    def loss(self, ctx: StageContext, batch: dict, outputs, loss: torch.Tensor) -> torch.Tensor:
        """The task loss plus ``lambda/2 * sum F (theta - anchor)^2`` (nothing before the first Fisher)."""
        if not self.fisher or self.opts.lambda_ == 0:
            self._terms = {}
            return loss
        penalty = self.opts.lambda_ * self.penalty(ctx.vlm.model).to(loss.dtype)
        self._terms = {"penalty": penalty.item()}  # logged beside the loss (Method.last_terms)
        return loss + penalty

    # ------------------------------------------------------------------ after a task
    def after_task(self, ctx: StageContext) -> None:
        """Estimate this task's Fisher at the weights just trained and fold it into the penalty."""
        model = ctx.vlm.model
        samples = ctx.train_data[ctx.task]
        idx = sample_indices(len(samples), self.opts.samples, ctx.seed, "ewc", ctx.task)
        fisher = estimate_fisher(ctx.vlm, [samples[i] for i in idx], self.opts.batch_size, self.opts.fisher)
        theta = {n: p.detach().float().clone() for n, p in _trainable(model).items()}
        self.consolidate(fisher, theta)

    def consolidate(self, fisher: dict[str, torch.Tensor], theta: dict[str, torch.Tensor]) -> None:
        """Add one task's Fisher ``F_t`` and weights ``theta*_t`` to the penalty (see the module doc)."""
        for name, f_t in fisher.items():
            f_t, th = f_t.detach().float(), theta[name].detach().float()
            if name not in self.fisher:
                self.fisher[name], self.anchor[name] = f_t.clone(), th.clone()
            elif self.opts.online:
                self.fisher[name] = self.opts.decay * self.fisher[name] + f_t
                self.anchor[name] = th.clone()
            else:
                f_old, a_old = self.fisher[name], self.anchor[name]
                f_new = f_old + f_t
                mean = (f_old * a_old + f_t * th) / f_new.clamp_min(torch.finfo(torch.float32).tiny)
                self.anchor[name] = torch.where(f_new > 0, mean, th)
                self.fisher[name] = f_new

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {f"fisher/{n}": t for n, t in self.fisher.items()}
        out.update({f"anchor/{n}": t for n, t in self.anchor.items()})
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.fisher = {k.split("/", 1)[1]: v.float() for k, v in state.items() if k.startswith("fisher/")}
        self.anchor = {k.split("/", 1)[1]: v.float() for k, v in state.items() if k.startswith("anchor/")}
        missing = set(self.fisher) ^ set(self.anchor)
        if missing:
            raise ValueError(f"EWC state has a Fisher without an anchor (or the reverse) for {sorted(missing)[:3]}")


def _answer_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The negative log-likelihood summed over a batch's answer tokens, and how many there are.

    Position i's logits predict token i+1; only labelled positions (not -100) are computed, in
    float32, so the vocabulary-sized tensor stays as small as the answers.
    """
    mask = labels[:, 1:] != -100
    nll = F.cross_entropy(logits[:, :-1][mask].float(), labels[:, 1:][mask], reduction="sum")
    return nll, int(mask.sum())


def _sum_loss(nll: torch.Tensor, tokens: int, rows: int) -> torch.Tensor:
    return nll / rows  # each sample's summed NLL, averaged over the batch's samples


def _token_mean_loss(nll: torch.Tensor, tokens: int, rows: int) -> torch.Tensor:
    return nll / max(tokens, 1)  # the training loss: the mean over the batch's answer tokens


# ``fisher`` option -> the loss whose gradient is squared, from (summed NLL, answer tokens, samples)
FISHER_LOSSES: dict[str, Callable[[torch.Tensor, int, int], torch.Tensor]] = {
    "sum": _sum_loss,
    "token_mean": _token_mean_loss,
}


def estimate_fisher(vlm: VLM, samples: list, batch_size: int = 1, form: str = "sum") -> dict[str, torch.Tensor]:
    """The mean over batches of the squared gradient of each batch's loss, per trainable parameter.

    ``form`` picks the loss (``FISHER_LOSSES``; see the module doc). With ``batch_size=1`` and
    ``sum`` this is the empirical Fisher diagonal. Dropout is off (eval mode) so the estimate
    is deterministic; ``torch.autograd.grad`` leaves the parameters' ``.grad`` untouched, so the
    next stage's optimiser starts clean. Every process of a distributed run computes the same
    estimate from the same seeded samples on its own (no gradient is synchronised here); under
    ``dist.strategy: fsdp`` too, since the trainable weights stay whole on every process and each
    forward gathers the sharded blocks in the same order everywhere.
    """
    reduce = FISHER_LOSSES[form]
    model = vlm.model
    params = _trainable(model)
    names, tensors = list(params), list(params.values())
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    if not samples:
        return fisher
    device = tensors[0].device
    was_training = model.training
    model.eval()
    n_batches = 0
    try:
        for k in range(0, len(samples), batch_size):
            batch = {key: v.to(device) for key, v in vlm.train_batch(samples[k : k + batch_size]).items()}
            labels = batch.pop("labels")
            nll, tokens = _answer_nll(model(**batch).logits, labels)
            loss = reduce(nll, tokens, labels.shape[0])
            grads = torch.autograd.grad(loss, tensors, allow_unused=True)
            for n, g in zip(names, grads):
                if g is not None:
                    fisher[n] += g.detach().float().pow(2)
            n_batches += 1
    finally:
        model.train(was_training)
    return {n: f / n_batches for n, f in fisher.items()}
