"""The cost of a run and of a configuration over its seeds: parameters, seconds, memory, saved state.

``matrix.json``'s ``cost`` (written by ``coin.engine.cost``) holds the numbers; this module only
names and formats them, for one run's report and for the comparison (mean ± std over seeds).
A key a run did not record (an older run folder) shows the blank mark.
"""

from __future__ import annotations

from typing import Any, Sequence

from coin.metrics import seed_summary
from coin.report.document import Table
from coin.report.format import BLANK, fmt

__all__ = ["COST_ITEMS", "cost_rows", "cost_table"]

# (key in matrix.json's cost, label, decimals; None: an integer count written with thousands separators)
COST_ITEMS: tuple[tuple[str, str, int | None], ...] = (
    ("trainable_params", "trainable parameters", None),
    ("params_added_per_task", "parameters added per task", None),
    ("train_seconds", "train time (s)", 1),
    ("method_seconds", "method hooks time (s)", 1),
    ("eval_seconds", "eval time (s)", 1),
    ("peak_memory_mb", "peak memory (MB)", 0),
    ("method_state_mb", "method state saved, all stages (MB)", 2),
)


def _text(value: Any, digits: int | None) -> str:
    if value is None:
        return BLANK
    return f"{round(value):,}" if digits is None else fmt(value, digits)


def cost_rows(cost: dict) -> list[list[str]]:
    """``[label, value]`` per cost item of one run."""
    return [[label, _text(cost.get(key), digits)] for key, label, digits in COST_ITEMS]


def cost_table(names: Sequence[str], costs: Sequence[Sequence[dict]], table_id: str = "cost") -> Table:
    """One row per configuration (its runs' ``cost`` dicts): mean, ± std when several seeds have a value, and how
    many seeds the mean is over when some lack the key."""
    body = []
    for name, runs in zip(names, costs):
        cells = [name]
        for key, _, digits in COST_ITEMS:
            s = seed_summary([c.get(key) if isinstance(c, dict) else None for c in runs])
            text = _text(s.mean, digits)
            if s.mean is not None and s.n > 1 and s.std:
                text += f" ± {_text(s.std, digits)}"
            if s.mean is not None and s.n < s.total:  # a seed without the key (a run older than it): say so
                text += f" (n={s.n} of {s.total})"
            cells.append(text)
        body.append(cells)
    return Table(["configuration", *(label for _, label, _ in COST_ITEMS)], body, table_id)
