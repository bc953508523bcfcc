"""Zero-shot: the base model, never trained, evaluated after every stage.

Every stage trains on nothing, so the adapter keeps its initial state (LoRA's and MoELoRA's
B = 0, the projector's trainable copy equal to the original): each row of the matrix is the
base model's score, BWT is 0 and ACC = MAA = the mean zero-shot score. The same numbers as the
run's ``00-zeroshot`` stage, in the shape every other method reports.
"""

from __future__ import annotations

from coin.methods.base import METHODS, Method, StageContext


@METHODS.register
class ZeroShot(Method):
    """No training at all."""

    name = "zeroshot"

    def train_data(self, ctx: StageContext, samples: list) -> list:
        return []
