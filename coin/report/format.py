"""How reports write numbers and describe a run's setup, shared by one run's report and comparisons.

Numbers: two decimals, a blank mark for "not evaluated" (None or NaN), intervals as
``[lo, hi]``. Setup: the task order by its name where it has one, the adapter as its own
registry entry summarises it, so no method, adapter or backbone name is written here.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from coin.report.document import Table
from coin.report.plots import abbreviate

__all__ = ["BLANK", "CI_LABEL", "CI_NOTE", "adapter_label", "fmt", "fmt_ci", "matrix_table", "metrics_table",
           "order_label"]

BLANK = "–"
CI_LABEL = "95% CI (test-set bootstrap of one run)"
CI_NOTE = ("The intervals resample the test questions of this one run: they show how much the numbers "
           "depend on which questions were drawn, not seed-to-seed or training variation (run seeds for that).")


def fmt(v: Any, nd: int = 2, signed: bool = False) -> str:
    """A number with ``nd`` decimals, or the blank mark for None/NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return BLANK
    return f"{v:+.{nd}f}" if signed else f"{v:.{nd}f}"


def fmt_ci(ci: Any) -> str:
    """``[lo, hi]`` or the blank mark."""
    if not ci or any(x is None for x in ci):
        return BLANK
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def matrix_table(tasks: Sequence[str], rows: Sequence[Sequence[Any]], zero_shot: Sequence[Any] | None,
                 table_id: str | None, scale: float = 1.0) -> Table:
    """Rows "after <task>" (plus a zero-shot row on top), columns = tasks; None -> blank mark."""
    body = [[f"after {t}"] + [fmt(None if v is None else v * scale) for v in row] for t, row in zip(tasks, rows)]
    if zero_shot is not None:
        body.insert(0, ["zero-shot"] + [fmt(v) for v in zero_shot])
    return Table(["stage"] + list(tasks), body, table_id)


def metrics_table(m: dict, ci: dict, table_id: str) -> Table:
    """MAA/BWT/ACC with their test-set bootstrap intervals, then the metrics without one."""
    rows = [
        ["MAA", fmt(m.get("maa")), fmt_ci(ci.get("maa"))],
        ["BWT", fmt(m.get("bwt"), signed=True), fmt_ci(ci.get("bwt"))],
        ["ACC", fmt(m.get("acc")), fmt_ci(ci.get("acc"))],
        ["Plasticity", fmt(m.get("plasticity")), BLANK],
        ["Mean forgetting", fmt(m.get("mean_forgetting")), BLANK],
        ["FWT", fmt(m.get("fwt"), signed=True), BLANK],
        ["Zero-shot mean", fmt(m.get("zero_shot_mean")), BLANK],
    ]
    return Table(["metric", "value", CI_LABEL], rows, table_id)


def order_label(order: Sequence[str] | str) -> str:
    """A task order as a report names it: its name ("paper", "alphabet", "shuffle:3"), else the tasks abbreviated.

    A list equal to a named order (``coin.tasks.orders.ORDERS``) is called by that name.
    """
    if isinstance(order, str):
        return order
    from coin.tasks.orders import order_name

    tasks = [str(t) for t in order]
    return order_name(tasks) or ">".join(abbreviate(t) for t in tasks)


def adapter_label(section: Any) -> str:
    """The adapter section in one line, as its registry entry summarises it (``coin.adapters.describe``).

    No adapter name is written here: ``lora r=128 alpha=256``, ``moelora ... experts=4`` come from
    the entries; an adapter this install does not know (a plugin not loaded) shows its type and rank.
    """
    if not isinstance(section, dict) or not section:
        return BLANK
    from coin.adapters import describe

    return describe(section)
