"""RegLoRA, the regulariser of SEFE (Chen et al., ICML 2025, arXiv 2505.02486): keep new updates off old key entries.

After each task the LoRA's update is merged into the base weights (``coin.adapters.merge``) and
the LoRA restarts (``B = 0``, ``A`` drawn afresh). Before the merge, for every adapted layer, the
positions of the ``top`` (2%) largest entries of ``|B A|`` are recorded; the records of all
finished tasks are kept together (a union). While later tasks train, the loss gains

    lambda * mean over layers of mean |(B A)[recorded positions]|      (lambda = 2.5e3)

so the new task's update stays small exactly where earlier tasks wrote their largest changes,
and is free elsewhere. The penalty is averaged over the adapted layers before lambda multiplies
it, as SEFE's released code (and MCITlib's port) does: a sum over layers would make the same
lambda 28x stronger on the tiny model's 28 adapted layers and 224x on LLaVA-1.5-7B's 224. Both
defaults are SEFE's released values; the
product is ``B A`` without LoRA's ``alpha / r`` scaling, as written there (with CoIN's r 128 and
alpha 256 the scaling is 2, so the choice is a factor 2 on lambda).

Cost: the penalty forms each layer's dense ``B A`` once per micro-batch (recomputed in the
backward pass rather than kept, so its memory is one layer's at a time), and the records are a
boolean mask per layer on the model's device (one byte per adapted weight: 6.5 GB for
LLaVA-1.5-7B's LM). Saved with each stage (only what the stage added): the flat indices of its
recorded positions and its merged factors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.checkpoint import checkpoint

from coin.adapters.merge import MergedWeights, lora_layers, merge_problems, top_fraction, unmergeable
from coin.methods.base import METHODS, Method, StageContext

if TYPE_CHECKING:
    from coin.models.backbone import VLM


@dataclass
class RegLoRAOptions:
    """``method_options`` of RegLoRA."""

    lambda_: float = 2.5e3  # weight of the penalty (SEFE: 2.5e3)
    top: float = 0.02  # share of each layer's |BA| entries recorded after a task (SEFE: 2%)

    def check(self) -> list[str]:
        out = []
        if self.lambda_ < 0:
            out.append(f"lambda_ must be >= 0, got {self.lambda_}")
        if not 0 < self.top <= 1:
            out.append(f"top must be in (0, 1], got {self.top}")
        return out


def masked_mean_abs(b: torch.Tensor, a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mean |(b @ a)[mask]|`` in fp32 (autocast off), for one layer."""
    with torch.autocast(b.device.type, enabled=False):
        d = (b.float() @ a.float()).abs()
        return (d * mask).sum() / mask.sum().clamp_min(1)


@METHODS.register
class RegLoRA(Method):
    """SEFE's RegLoRA: merge after each task, penalise |BA| at earlier tasks' top-2% positions."""

    name = "reglora"
    Options = RegLoRAOptions
    STATE = "reg/"

    def __init__(self, options: dict | None = None) -> None:
        super().__init__(options)
        self.merged = MergedWeights()
        self.records: dict[int, dict[str, torch.Tensor]] = {}  # stage -> layer -> flat indices it recorded
        self.last_stage: int | None = None
        self._masks: dict[str, torch.Tensor] = {}  # layer -> bool mask of every recorded position (built lazily)

    @classmethod
    def check_run(cls, cfg: Any) -> list[str]:
        return merge_problems(cfg, cls.name)

    def mask(self, name: str, weight: torch.Tensor) -> torch.Tensor | None:
        """Layer ``name``'s recorded positions as a boolean mask shaped like its weight (None when none)."""
        if name not in self._masks:
            parts = [r[name] for _, r in sorted(self.records.items()) if name in r]
            if not parts:
                return None
            flat = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
            for idx in parts:
                flat[idx.long().to(weight.device)] = True
            self._masks[name] = flat.view(weight.shape)
        return self._masks[name]

    # ------------------------------------------------------------------ hooks
    def before_task(self, ctx: StageContext) -> None:
        problems = unmergeable(ctx.vlm.model)
        if problems:
            raise ValueError("reglora cannot work with this model's adapter: " + "; ".join(problems[:5]))
        self.merged.capture(ctx.vlm.model)

    def penalty(self, model: torch.nn.Module) -> torch.Tensor | None:
        """``mean over layers of mean |(B A)[recorded]|`` (without lambda); None before any record.

        The mean is over the layers that have recorded positions (every adapted layer once a task
        is merged), so the penalty's scale does not grow with the model's depth.
        """
        total, layers = None, 0
        for name, layer in lora_layers(model).items():
            b, a = layer.lora_B["default"].weight, layer.lora_A["default"].weight
            mask = self.mask(name, layer.get_base_layer().weight)
            if mask is None:
                continue
            if torch.is_grad_enabled():  # recompute B A in backward instead of keeping it
                term = checkpoint(masked_mean_abs, b, a, mask, use_reentrant=False)
            else:
                term = masked_mean_abs(b, a, mask)
            total = term if total is None else total + term
            layers += 1
        return None if total is None else total / layers

    def loss(self, ctx: StageContext, batch: dict, outputs, loss: torch.Tensor) -> torch.Tensor:
        """The task loss plus ``lambda * penalty`` (nothing before the first task is merged)."""
        self._terms = {}
        if not self.records or self.opts.lambda_ == 0:
            return loss
        penalty = self.penalty(ctx.vlm.model)
        if penalty is None:
            return loss
        term = self.opts.lambda_ * penalty
        self._terms = {"penalty": term.item()}  # logged beside the loss (Method.last_terms)
        return loss + term.to(loss.dtype)

    def after_task(self, ctx: StageContext) -> None:
        """Record each layer's top |BA| positions, then merge the LoRA into W and restart it."""
        self.last_stage = ctx.stage
        found = {}
        with torch.no_grad():
            for name, layer in lora_layers(ctx.vlm.model).items():
                d = layer.lora_B["default"].weight.float() @ layer.lora_A["default"].weight.float()
                idx = top_fraction(d.abs(), self.opts.top)
                found[name] = idx.to(torch.int32 if d.numel() < 2**31 else torch.int64).sort().values.cpu()
        self.records[ctx.stage] = found
        self._masks = {}
        self.merged.merge(ctx.vlm.model, ctx.stage, reset_a=True)

    def restore(self, vlm: VLM) -> None:
        self.merged.apply(vlm.model)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        """What the last stage added: its recorded positions (``reg/<stage>/<layer>``) and merged factors."""
        if self.last_stage is None:
            return {}
        out = {f"{self.STATE}{self.last_stage:03d}/{n}": t for n, t in self.records.get(self.last_stage, {}).items()}
        return {**out, **self.merged.state_dict(self.last_stage)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Add a stage's saved parts to those loaded before (a resumed run loads every finished stage in order)."""
        for key, value in state.items():
            if key.startswith(self.STATE):
                stage, name = key[len(self.STATE):].split("/", 1)
                self.records.setdefault(int(stage), {})[name] = value
                self.last_stage = max(self.last_stage or 0, int(stage))
            elif key.startswith(MergedWeights.PREFIX):
                self.last_stage = max(self.last_stage or 0, int(key[len(MergedWeights.PREFIX):].split("/", 1)[0]))
        self._masks = {}
        self.merged.load_state_dict(state)
