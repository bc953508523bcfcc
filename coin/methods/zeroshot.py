"""Zero-shot: the base model, never trained, evaluated after every stage.

Every stage trains on nothing, so the adapter keeps its initial state (LoRA's and MoELoRA's
B = 0, the projector's trainable copy equal to the original): each row of the matrix is the
base model's score, so BWT is 0 and ACC is the mean zero-shot score over all tasks. MAA is not
ACC: it averages each stage's mean over the tasks seen so far, so the first tasks weigh more
(task 1 enters every stage's mean, task 8 only the last); on CoIN-Synth's tiny base MAA is 13.6
and ACC 10.6. The same numbers as the run's ``00-zeroshot`` stage, in the shape every other
method reports.
"""

from __future__ import annotations

from coin.methods.base import METHODS, Method, StageContext


@METHODS.register
class ZeroShot(Method):
    """No training at all."""

    name = "zeroshot"

    def train_data(self, ctx: StageContext, samples: list) -> list:
        return []
