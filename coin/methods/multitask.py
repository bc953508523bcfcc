"""Multi-task: the paper's upper reference, one training on the union of every task's data.

As a plugin over the sequential loop: stages 1..T-1 train on nothing (their rows of the
accuracy matrix are the untrained model), and the last stage, whose context holds every task's
training data, trains once on the union (the loop shuffles it) and is evaluated on every task.
Only the matrix's last row (ACC) describes the multi-task model; MAA and BWT of such a run are
not meaningful and a report should show ACC only (``final_row_only``).
"""

from __future__ import annotations

from coin.methods.base import METHODS, Method, StageContext


@METHODS.register
class MultiTask(Method):
    """Train once, at the last stage, on every task's training data."""

    name = "multitask"
    final_row_only = True  # for reports: only the last row of the matrix is this method's result

    def train_data(self, ctx: StageContext, samples: list) -> list:
        if ctx.stage < len(ctx.tasks) - 1:
            return []
        return [s for task in ctx.tasks for s in ctx.train_data[task]]
