"""Learning without Forgetting: distil the model's own earlier answers while it learns a new task.

Before training task t (t > 1), the model as it stands (trained through task t-1: the teacher)
answers M stored training samples of every earlier task (the paper: M = 100), and their output
distributions over the answer tokens (teacher-forced on the ground-truth answer, full vocabulary)
are kept. While task t trains, the loss hook adds ``lambda * KD`` (the paper: lambda = 0.1) with
``KD = T^2 * mean over answer tokens of KL(softmax(teacher/T) || softmax(student/T))``.

How the stored samples reach the loss: the hook only sees the current task's batch, whose
inputs the teacher never saw. So the method keeps its own queue of stored (sample, teacher
logits) pairs in a seeded order and, on every ``every``-th micro-batch, runs the student on the
next ``batch_size`` of them and adds their KD term; the gradient of that extra forward flows
into the same backward as the task loss. Which stored batch comes next follows from the
micro-batch's index in the stage (``ctx.micro``), not from a counter, so a resumed stage and a
run split over several processes distil exactly the batches an uninterrupted single process
does. One pass over the queue takes ``M * (t-1) / batch_size * every`` micro-batches, after
which it wraps around.

Nothing is saved with a stage: an interrupted stage restarts from the adapter of the stage
before it, so ``before_task`` rebuilds the very same teacher outputs (same weights, same seeded
samples). Memory: M x (answer tokens) x vocabulary floats per earlier task, kept on the CPU
(about 13 MB per task for 100 five-token answers and a 32k vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from coin.methods.base import METHODS, Method, StageContext, sample_indices

if TYPE_CHECKING:
    from coin.models.backbone import VLM


@dataclass
class LwFOptions:
    """``method_options`` of LwF."""

    samples: int = 100  # M: stored samples per earlier task
    lambda_: float = 0.1  # weight of the distillation term
    temperature: float = 2.0  # softens both distributions (Hinton et al.; LwF's T = 2)
    batch_size: int = 8  # stored samples distilled per micro-batch
    every: int = 1  # distil on every k-th micro-batch (k > 1 trades fidelity for speed)

    def check(self) -> list[str]:
        out = []
        for key in ("samples", "batch_size", "every"):
            if getattr(self, key) < 1:
                out.append(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.lambda_ < 0:
            out.append(f"lambda_ must be >= 0, got {self.lambda_}")
        if self.temperature <= 0:
            out.append(f"temperature must be > 0, got {self.temperature}")
        return out


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * mean_tokens KL(softmax(teacher/T) || softmax(student/T))`` for (tokens, vocab) logits.

    Computed in float32; exactly zero when ``student`` equals ``teacher``. The ``T^2`` keeps the
    gradient's size independent of the temperature.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student logits {tuple(student.shape)} and teacher logits {tuple(teacher.shape)} differ")
    if student.numel() == 0:
        return student.sum() * 0.0
    log_s = F.log_softmax(student.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher.float() / temperature, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1)
    return kl.mean() * temperature**2


def answer_logits(vlm: VLM, samples: list) -> list[torch.Tensor]:
    """The model's next-token logits at every answer position, one (tokens, vocab) tensor per sample.

    Position i's logits predict token i+1, so the answer's predictions sit one column to the left
    of the answer's labels. Right padding leaves each row's real tokens where they are.
    """
    model = vlm.model
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in vlm.train_batch(samples).items()}
    labels = batch.pop("labels")
    logits = model(**batch).logits
    mask = labels[:, 1:] != -100
    return [logits[k, :-1][mask[k]] for k in range(len(samples))]


@METHODS.register
class LwF(Method):
    """Distillation from the previous stage's model on stored samples of earlier tasks."""

    name = "lwf"
    Options = LwFOptions
    # every process computes the teacher outputs of the same stored samples and distils on every micro-batch
    # alike, so under dist.strategy fsdp each runs the same forwards (each one gathers the sharded blocks)
    supports_fsdp = True

    def __init__(self, options: dict | None = None) -> None:
        super().__init__(options)
        self.memory: list[tuple[object, torch.Tensor]] = []  # (sample, teacher logits on its answer tokens)
        self._order: list[int] = []

    def before_task(self, ctx: StageContext) -> None:
        """Record the current model's answer distributions on M samples of each earlier task."""
        self.memory, self._order = [], []
        chosen = []
        for task in ctx.tasks[: ctx.stage]:
            data = ctx.train_data.get(task, [])
            chosen += [data[i] for i in sample_indices(len(data), self.opts.samples, ctx.seed, "lwf", task)]
        if not chosen:
            return
        model = ctx.vlm.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for k in range(0, len(chosen), self.opts.batch_size):
                    part = chosen[k : k + self.opts.batch_size]
                    for s, t in zip(part, answer_logits(ctx.vlm, part)):
                        self.memory.append((s, t.float().cpu()))
        finally:
            model.train(was_training)
        g = torch.Generator().manual_seed(ctx.seed * 1000 + ctx.stage)
        self._order = torch.randperm(len(self.memory), generator=g).tolist()

    def _batch(self, number: int) -> list[tuple[object, torch.Tensor]]:
        """Stored batch ``number`` of the seeded cycle through the memory."""
        size = min(self.opts.batch_size, len(self._order))
        return [self.memory[self._order[(number * size + i) % len(self._order)]] for i in range(size)]

    def loss(self, ctx: StageContext, batch: dict, outputs, loss: torch.Tensor) -> torch.Tensor:
        """The task loss plus ``lambda * KD`` on the next stored batch (every ``every``-th micro-batch)."""
        self._terms = {}
        if not self.memory or self.opts.lambda_ == 0:
            return loss
        if ctx.micro % self.opts.every:
            return loss
        items = self._batch(ctx.micro // self.opts.every)
        student = torch.cat(answer_logits(ctx.vlm, [s for s, _ in items]))
        teacher = torch.cat([t for _, t in items]).to(student.device)
        kd = distillation_loss(student, teacher, self.opts.temperature)
        self._terms = {"distillation": self.opts.lambda_ * kd.item()}  # logged beside the loss (Method.last_terms)
        return loss + self.opts.lambda_ * kd.to(loss.dtype)
