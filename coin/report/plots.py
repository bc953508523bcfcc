"""Figures for run reports: accuracy-matrix heatmaps, forgetting curves, comparison bars, loss curves.

Everything draws on a bare ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot
state, no display), and PNGs are saved without the version stamp so the same matrix
gives the same bytes. Files are written atomically through ``coin.io``.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Sequence

from coin.report.mpl import matplotlib  # noqa: F401 - first: the Agg canvas, the cache folder

import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from coin.io import atomic_write_bytes  # noqa: E402
from coin.tasks import TASKS  # noqa: E402

Matrix = Sequence[Sequence[float | None]]

_DPI = 110
_FONT = 10


def abbreviate(task: str, width: int = 6) -> str:
    """The short name of ``task``: its spec's ``abbreviation``, else its first ``width`` characters.

    A task not registered in this process (a plugin's, read back without the plugin) gets
    its first letters too, so a report of any run folder can be drawn.
    """
    spec = TASKS.get(task) if task in TASKS else None
    return spec.abbreviation if spec is not None and spec.abbreviation else task[:width]


def _cells(matrix: Matrix) -> np.ndarray:
    """A float array with NaN where the matrix holds None."""
    return np.array(
        [[math.nan if v is None else float(v) for v in row] for row in matrix], dtype=float
    )


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically, without metadata that varies by version."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return atomic_write_bytes(path, buf.getvalue())


def heatmap(
    matrix: Matrix,
    tasks: Sequence[str],
    path: str | os.PathLike,
    title: str | None = None,
    zero_shot: Sequence[float | None] | None = None,
) -> Path:
    """Draw the accuracy matrix (rows: after each stage, columns: tasks) with values in cells.

    A zero-shot row goes on top when given; None cells stay blank.
    """
    rows = [list(r) for r in matrix]
    labels = [f"after {abbreviate(t)}" for t in tasks]
    if zero_shot is not None:
        rows = [list(zero_shot)] + rows
        labels = ["zero-shot"] + labels
    offset = 0 if zero_shot is None else 1  # row index of stage 1
    data = _cells(rows)
    n_rows, n_cols = data.shape
    fig = Figure(figsize=(1.5 + 0.95 * n_cols, 1.3 + 0.55 * n_rows), layout="constrained")
    ax = fig.subplots()
    cmap = colormaps["viridis"].with_extremes(bad="white")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0.0, vmax=100.0, aspect="auto")
    for j in range(n_rows):
        for i in range(n_cols):
            v = data[j, i]
            if math.isnan(v):
                continue
            # Light text on the dark (low) end of viridis, dark text on the bright end.
            color = "white" if v < 60 else "black"
            ax.text(i, j, f"{v:.1f}", ha="center", va="center", color=color, fontsize=_FONT - 1)
            if i == j - offset:  # outline the task just learned at this stage
                ax.add_patch(Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, edgecolor="black",
                                       linewidth=1.6))
    ax.set_xticks(range(n_cols), [abbreviate(t) for t in tasks], fontsize=_FONT)
    ax.set_yticks(range(n_rows), labels, fontsize=_FONT)
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False, length=0)
    if zero_shot is not None:
        ax.axhline(0.5, color="black", linewidth=1.5)
    ax.set_xlabel("evaluated task", fontsize=_FONT)
    ax.xaxis.set_label_position("top")
    ax.set_ylabel("training stage", fontsize=_FONT)
    if title:
        ax.set_title(title, fontsize=_FONT + 2, pad=8)
    cbar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    cbar.set_label("score", fontsize=_FONT)
    cbar.ax.tick_params(labelsize=_FONT - 1)
    return _save(fig, path)


def forgetting_curves(matrix: Matrix, tasks: Sequence[str], path: str | os.PathLike) -> Path:
    """Plot each task's score across stages, from the stage where it was learned to the end."""
    data = _cells(matrix)
    n = len(tasks)
    fig = Figure(figsize=(max(6.0, 1.0 + 0.9 * n), 4.4), layout="constrained")
    ax = fig.subplots()
    cmap = colormaps["tab10"]
    markers = "osD^vP*Xh<>p"
    stages = np.arange(1, n + 1)
    for i, task in enumerate(tasks):
        ys = data[i:, i]
        if np.all(np.isnan(ys)):
            continue
        ax.plot(stages[i:], ys, color=cmap(i % 10), marker=markers[i % len(markers)],
                markersize=5, linewidth=1.8, label=task)
    ax.set_xticks(stages, [f"{k}\n{abbreviate(t)}" for k, t in zip(stages, tasks)], fontsize=_FONT - 1)
    ax.set_xlim(0.6, n + 0.4)
    ax.set_ylim(0, 100)
    ax.set_xlabel("after training stage", fontsize=_FONT)
    ax.set_ylabel("score", fontsize=_FONT)
    ax.set_title("Score of each task after it is learned", fontsize=_FONT + 1)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=_FONT - 1, frameon=False)
    return _save(fig, path)


def comparison_bar(
    names: Sequence[str],
    values: Sequence[float | None],
    path: str | os.PathLike,
    errors: Sequence[float | None] | None = None,
    label: str = "MAA",
) -> Path:
    """Horizontal bars of one metric per run (best on top), with optional ± error bars."""
    vals = np.array([math.nan if v is None else float(v) for v in values], dtype=float)
    errs = None
    if errors is not None:
        errs = np.array([math.nan if e is None else float(e) for e in errors], dtype=float)
    n = len(names)
    fig = Figure(figsize=(7.5, 1.2 + 0.45 * max(n, 1)), layout="constrained")
    ax = fig.subplots()
    ys = np.arange(n)[::-1]  # first name on top
    ax.barh(ys, np.nan_to_num(vals), xerr=errs, color=colormaps["tab10"](0), alpha=0.85,
            error_kw={"capsize": 3, "linewidth": 1})
    ends = np.nan_to_num(vals) + (np.nan_to_num(errs) if errs is not None else 0.0)
    for y, v, end in zip(ys, vals, ends):
        if not math.isnan(v):  # the value just past the bar or its error bar
            ax.text(max(end, 0.0), y, f"  {v:.2f}", va="center", ha="left", fontsize=_FONT - 1)
    lo = min(0.0, float(np.nanmin(vals, initial=0.0)))
    ax.set_xlim(lo * 1.15, max(1.0, float(np.max(ends, initial=0.0))) * 1.15)
    ax.set_yticks(ys, list(names), fontsize=_FONT - 1)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(label, fontsize=_FONT)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def smooth(values: Sequence[float], weight: float | None = None) -> list[float]:
    """A debiased exponential moving average (TensorBoard's smoothing).

    ``weight`` defaults to one that averages about ``len / 20`` points (none below 20 points),
    so a short stage is drawn as it is and a long one shows its trend.
    """
    n = len(values)
    w = min(0.95, max(0.0, 1.0 - 20.0 / n)) if weight is None and n else (weight or 0.0)
    out, ema, norm = [], 0.0, 0.0
    for v in values:
        ema, norm = w * ema + (1 - w) * v, w * norm + (1 - w)
        out.append(ema / norm if norm else v)
    return out


def loss_curves_figure(runs: dict[str, list[dict]], path: str | os.PathLike, title: str = "Training loss") -> Path:
    """Training loss against the global step, smoothed, with the stage boundaries marked.

    ``runs`` maps a run's name to its stages' curves (``coin.tracking.loss_curves``:
    ``task``, ``steps``, ``loss`` per stage). One run: each stage in its own colour, the raw
    loss faint under the smoothed one. Several runs (a comparison): one colour per run,
    smoothed, the boundaries of the first run. The loss is what the run optimised, a method's
    penalty included; when the curves span more than two decades the axis is logarithmic.
    """
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.subplots()
    single = len(runs) == 1
    cmap = colormaps["tab10" if single or len(runs) <= 10 else "tab20"]
    for r, (name, stages) in enumerate(runs.items()):
        for s, st in enumerate(stages):
            color = cmap((s if single else r) % cmap.N)
            if single:
                ax.plot(st["steps"], st["loss"], color=color, alpha=0.25, linewidth=1)
            ax.plot(st["steps"], smooth(st["loss"]), color=color, linewidth=1.8,
                    label=(st["task"] if single else (name if s == 0 else None)))
    first = next(iter(runs.values()), [])
    for st in first[1:]:  # a boundary before each later stage's first step
        ax.axvline(st["steps"][0] - 0.5, color="grey", linestyle="--", linewidth=0.8)
    for st in first:
        ax.annotate(abbreviate(st["task"]), (st["steps"][0] - 0.5, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(3, -12), textcoords="offset points", fontsize=_FONT - 2, color="grey")
    if not any(runs.values()):
        ax.text(0.5, 0.5, "no training steps logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("optimiser step (all stages)", fontsize=_FONT)
    values = [v for stages in runs.values() for st in stages for v in st["loss"] if v == v]
    log = bool(values) and min(values) > 0 and max(values) / min(values) > 100
    if log:  # a method's penalty (O-LoRA's starts in the hundreds) next to task losses near 0.01
        ax.set_yscale("log")
    ax.set_ylabel("loss (log scale)" if log else "loss", fontsize=_FONT)
    ax.set_title(title, fontsize=_FONT + 1)
    ax.grid(True, alpha=0.3)
    if any(runs.values()):
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=_FONT - 1, frameon=False)
    return _save(fig, path)
