"""Experience replay: a seeded memory of M training samples per finished task, mixed into later tasks.

After task t trains, M of its training samples (seeded by the run seed and the task name, so the
choice does not depend on what ran before) enter the memory; every later task trains on its own
data plus the whole memory. The training loop shuffles the union, so memories are spread over
the stage rather than appended at its end. A stage therefore grows by M samples per earlier task.

The default M = 100 matches LwF's stored-sample budget, so the two are compared at equal memory.
The memory is saved with each stage as index tensors into the tasks' (seeded, deterministic)
training lists, so a resumed run replays exactly the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from coin.methods.base import METHODS, Method, StageContext, sample_indices


@dataclass
class ReplayOptions:
    """``method_options`` of replay."""

    samples: int = 100  # M: samples kept per finished task

    def check(self) -> list[str]:
        return [f"samples must be >= 0, got {self.samples}"] if self.samples < 0 else []


@METHODS.register
class Replay(Method):
    """Rehearsal of stored samples from every earlier task."""

    name = "replay"
    Options = ReplayOptions
    supports_fsdp = True  # it only chooses data; its after_task never touches the model

    def __init__(self, options: dict | None = None) -> None:
        super().__init__(options)
        self.memory: dict[str, list[int]] = {}  # task -> indices into that task's training samples

    def after_task(self, ctx: StageContext) -> None:
        """Keep M seeded samples of the task just trained."""
        data = ctx.train_data[ctx.task]
        self.memory[ctx.task] = sample_indices(len(data), self.opts.samples, ctx.seed, "replay", ctx.task)

    def train_data(self, ctx: StageContext, samples: list) -> list:
        """This task's samples followed by the memory of every earlier task (the loop shuffles)."""
        extra = []
        for task in ctx.tasks[: ctx.stage]:
            idx = self.memory.get(task, [])
            data = ctx.train_data[task]
            if idx and idx[-1] >= len(data):
                raise ValueError(f"replay memory of {task} points past its {len(data)} training samples; "
                                 "the data changed since the memory was saved")
            extra += [data[i] for i in idx]
        return list(samples) + extra

    def replayed(self, ctx: StageContext) -> list:
        """The stored samples a stage ``ctx`` would add (for reports and tests)."""
        return self.train_data(ctx, [])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"memory/{t}": torch.tensor(idx, dtype=torch.int64) for t, idx in self.memory.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.memory = {k.split("/", 1)[1]: v.tolist() for k, v in state.items() if k.startswith("memory/")}
