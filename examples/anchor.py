"""An example continual-learning method in one file: pull the adapter towards its last task's weights.

Use it with ``plugins: [examples/anchor.py]`` and ``method: anchor`` in a run config.
"""

from dataclasses import dataclass

import torch

from coin.methods import METHODS, Method


@dataclass
class AnchorOptions:
    lambda_: float = 0.01  # strength of the L2 pull

    def check(self) -> list[str]:
        return [] if self.lambda_ >= 0 else [f"lambda_ must be >= 0, got {self.lambda_}"]


@METHODS.register
class Anchor(Method):
    name = "anchor"
    Options = AnchorOptions

    def __init__(self, options: dict | None = None) -> None:
        super().__init__(options)
        self.anchor: dict[str, torch.Tensor] = {}

    def after_task(self, ctx) -> None:  # remember where this task left the trainable weights
        self.anchor = {n: p.detach().clone() for n, p in ctx.vlm.model.named_parameters() if p.requires_grad}

    def loss(self, ctx, batch, outputs, loss):  # add lambda * ||theta - theta_prev||^2
        if not self.anchor:
            return loss
        params = dict(ctx.vlm.model.named_parameters())
        return loss + self.opts.lambda_ * sum(((params[n] - a) ** 2).sum() for n, a in self.anchor.items())

    def state_dict(self) -> dict[str, torch.Tensor]:  # saved with each stage, so a resumed run continues exactly
        return {f"anchor/{n}": t for n, t in self.anchor.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.anchor = {k.split("/", 1)[1]: v for k, v in state.items()}
