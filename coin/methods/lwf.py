"""Learning without Forgetting: distil the model's own earlier answers while it learns a new task.

Two forms, chosen by ``inputs`` (the method table names them apart):

- ``inputs: memory`` (the default; CoIN's LwF row): the teacher's answers on M stored training
  samples of every earlier task. This keeps samples of old tasks, so it is a memory method, as
  the CoIN paper describes its LwF.
- ``inputs: current``: exemplar-free LwF as Li and Hoiem wrote it: the teacher (the model as
  task t starts) answers the new task's own training inputs, and the student is distilled
  towards those answers on the same batch it learns from. Nothing of an earlier task is kept;
  the teacher's weights are a copy of the trainable parameters (adapter and projector) taken
  before the task, run through ``torch.func.functional_call`` on each distilled micro-batch (one
  extra forward without gradient). The distilled positions are the answer tokens of the batch
  (teacher-forced on the new task's answers), the positions the task loss reads.

``inputs: memory`` in detail. Before training task t (t > 1), the model as it stands (trained through task t-1: the teacher)
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
samples) or the same teacher copy. Memory: with ``memory``, M x (answer tokens) x vocabulary
floats per earlier task, kept on the CPU (about 13 MB per task for 100 five-token answers and a
32k vocabulary); with ``current``, one copy of the trainable parameters on the device (LLaVA-1.5-7B
with CoIN's LoRA r 128 and the projector: about 1.3 GB in fp32). ``current`` is refused under
``dist.strategy: fsdp`` (the copy would be of sharded parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch.func import functional_call

from coin.methods.base import METHODS, Method, StageContext, sample_indices
from coin.models.sequences import keep_mask

if TYPE_CHECKING:
    from coin.models.backbone import VLM


INPUTS = ("memory", "current")  # LwFOptions.inputs's values


@dataclass
class LwFOptions:
    """``method_options`` of LwF."""

    samples: int = 100  # M: stored samples per earlier task
    lambda_: float = 0.1  # weight of the distillation term
    temperature: float = 2.0  # softens both distributions (Hinton et al.; LwF's T = 2)
    batch_size: int = 8  # stored samples distilled per micro-batch
    every: int = 1  # distil on every k-th micro-batch (k > 1 trades fidelity for speed)
    # whose outputs are distilled: "memory" (M stored samples per earlier task; CoIN's row) or "current"
    # (the new task's own batch, exemplar-free; samples and batch_size then do not apply)
    inputs: str = "memory"

    def check(self) -> list[str]:
        out = [] if self.inputs in INPUTS else [f"inputs must be one of {', '.join(INPUTS)}, got {self.inputs!r}"]
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
        self.teacher: dict[str, torch.Tensor] = {}  # inputs: current: the trainable parameters as the task starts

    @classmethod
    def check_run(cls, cfg: Any) -> list[str]:
        opts = (getattr(cfg, "method_options", None) or {})
        strategy = getattr(getattr(cfg, "dist", None), "strategy", None)
        if opts.get("inputs") == "current" and strategy == "fsdp":
            return ["method_options.inputs: lwf's exemplar-free form (current) copies the trainable parameters "
                    "as its teacher, which dist.strategy fsdp shards; use dist.strategy ddp or inputs: memory"]
        return []

    def before_task(self, ctx: StageContext) -> None:
        """``memory``: the current model's answer distributions on M samples of each earlier task;
        ``current``: a copy of the trainable parameters, the teacher of this task's batches."""
        self.memory, self._order, self.teacher = [], [], {}
        if self.opts.inputs == "current":
            if ctx.stage > 0:
                self.teacher = {n: p.detach().clone() for n, p in ctx.vlm.model.named_parameters() if p.requires_grad}
            return
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
        """The task loss plus ``lambda * KD`` on the next stored batch, or on this batch for ``current``
        (every ``every``-th micro-batch)."""
        self._terms = {}
        if not (self.memory or self.teacher) or self.opts.lambda_ == 0:
            return loss
        if ctx.micro % self.opts.every:
            return loss
        if self.teacher:
            student, teacher = self._on_batch(ctx, batch, outputs)
            kd = distillation_loss(student, teacher, self.opts.temperature)
            self._terms = {"distillation": self.opts.lambda_ * kd.item()}
            return loss + self.opts.lambda_ * kd.to(loss.dtype)
        items = self._batch(ctx.micro // self.opts.every)
        student = torch.cat(answer_logits(ctx.vlm, [s for s, _ in items]))
        teacher = torch.cat([t for _, t in items]).to(student.device)
        kd = distillation_loss(student, teacher, self.opts.temperature)
        self._terms = {"distillation": self.opts.lambda_ * kd.item()}  # logged beside the loss (Method.last_terms)
        return loss + self.opts.lambda_ * kd.to(loss.dtype)

    def _on_batch(self, ctx: StageContext, batch: dict, outputs) -> tuple[torch.Tensor, torch.Tensor]:
        """(student, teacher) logits at the batch's answer positions, each ``(n, vocab)``.

        The student's are the training forward's own (``outputs.logits``: already the labelled
        positions under ``train.logits: labelled``, else the whole sequence, cut here); the
        teacher's come from the same model run with the copied parameters, without gradient and
        without dropout.
        """
        keep = keep_mask(batch["labels"])
        student = outputs.logits
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if student.dim() == 3:  # full logits: keep the answer positions
            student = student[keep]
        else:
            inputs["logits_to_keep"] = keep
        model = ctx.vlm.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                teacher = functional_call(model, self.teacher, args=(), kwargs=inputs, strict=False).logits
        finally:
            model.train(was_training)
        if teacher.dim() == 3:
            teacher = teacher[keep]
        return student, teacher
