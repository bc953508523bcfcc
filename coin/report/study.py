"""A study in a comparison: the configurations differ in one variable; the metrics against it, with seeds.

A study sweep (``configs/synth/studies/<study>/``) runs configurations that differ in one
thing (the task order, the instruction family, the data volume, the LoRA rank, the number
of MoELoRA experts, the model's size) with several seeds. ``study_blocks`` finds the config
keys whose values differ between the configurations, names the variable after them, and
gives a table (mean ± std over seeds of MAA, BWT and ACC, for truth alignment and, where the
runs have it, for knowledge) and a plot of each metric against the variable with error bars.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

from coin.report.mpl import matplotlib  # noqa: F401 - first: the Agg canvas, the cache folder

from matplotlib import colormaps  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from coin.io import atomic_write_bytes  # noqa: E402
from coin.metrics import seed_summary  # noqa: E402
from coin.report.document import Block, Heading, Image, Para, Table  # noqa: E402
from coin.report.format import BLANK, fmt  # noqa: E402
from coin.report.load import run_metrics  # noqa: E402

__all__ = ["study_blocks", "varying_keys"]

METRICS = ("maa", "bwt", "acc")


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {prefix.rstrip("."): obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def varying_keys(configs: Sequence[dict]) -> list[str]:
    """The dotted config keys whose values differ between ``configs`` (sorted)."""
    flat = [_flat(c) for c in configs]
    keys = set().union(*flat) if flat else set()
    return sorted(k for k in keys if len({repr(f.get(k)) for f in flat}) > 1)


def _value(config: dict, keys: list[str]) -> str:
    flat = _flat(config)
    return ", ".join(str(flat.get(k)) for k in keys) if len(keys) > 1 else str(flat.get(keys[0]))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _metric(mj: dict, column: str | None, key: str) -> float | None:
    part = mj if column is None else mj.get(column)
    if not isinstance(part, dict) or part.get("matrix") is None:
        return None
    return run_metrics({"tasks": mj["tasks"], **part}).get(key)


def _cell(values: list[float | None]) -> tuple[float | None, float | None, str]:
    s = seed_summary(values)
    if s.mean is None:
        return None, None, BLANK
    if s.total == 1:
        return s.mean, None, fmt(s.mean)
    return s.mean, s.std, f"{fmt(s.mean)} ± {fmt(s.std)} (n={s.n})"


def _plot(xs: list[str], series: dict[str, tuple[list, list]], path: Path, variable: str) -> Path:
    """Each metric against the variable, mean ± std over seeds (numeric variables on a numeric axis)."""
    numeric = all(_number(x) is not None for x in xs)
    pos = [_number(x) for x in xs] if numeric else list(range(len(xs)))
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for k, (label, (means, stds)) in enumerate(series.items()):
        ys = [math.nan if m is None else m for m in means]
        es = [0.0 if s is None else s for s in stds]
        ax.errorbar(pos, ys, yerr=es, marker="o", capsize=3, linewidth=1.2, color=colormaps["tab10"](k),
                    linestyle="--" if label.startswith("knowledge") else "-", label=label)
    if not numeric:
        ax.set_xticks(pos, xs, rotation=20, ha="right")
    ax.set_xlabel(variable)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write_bytes(Path(path), buf.getvalue())


def study_blocks(groups: Sequence[list[dict]], configs: Sequence[dict], out_dir: str | os.PathLike) -> list[Block]:
    """The study section for configurations ``groups`` (each a list of its seeds' described runs, with
    ``mj``) whose configs (seed and naming keys removed) are ``configs``; empty unless they differ."""
    keys = varying_keys(configs)
    parents = {k.rsplit(".", 1)[0] for k in keys}
    if len(groups) < 2 or not keys or len(parents) > 1:
        return []  # not one studied variable (e.g. methods with their own options: method + method_options.*)
    if len(keys) <= 2:
        variable, labels = " + ".join(keys), [_value(c, keys) for c in configs]
    else:  # several keys of one section (the model's sizes): the configurations by name
        variable = parents.pop()
        labels = [str(g[0]["mj"].get("run_name") or g[0]["run"]).rsplit("-s", 1)[0] for g in groups]
    points = sorted(zip(labels, groups), key=lambda p: (_number(p[0]) is None, _number(p[0]) or 0.0, p[0]))
    has_knowledge = any(isinstance(r["mj"].get("knowledge"), dict) for _, g in points for r in g)
    columns = [(None, "")] + ([("knowledge", "knowledge ")] if has_knowledge else [])
    header, rows = [variable, "seeds"], [[x, str(len(g))] for x, g in points]
    series: dict[str, tuple[list, list]] = {}
    for column, label in columns:
        for key in METRICS:
            header.append(f"{label}{key.upper()}")
            means, stds = [], []
            for row, (_, g) in zip(rows, points):
                mean, std, text = _cell([_metric(r["mj"], column, key) for r in g])
                row.append(text)
                means.append(mean)
                stds.append(std)
            series[f"{label}{key.upper()}"] = (means, stds)
    png = _plot([x for x, _ in points], series, Path(out_dir) / "study.png", variable)
    note = ("The configurations differ only in the variable above; each cell is the mean ± std over the seeds. "
            + ("Knowledge: each answer scored by its content in any format (coin.tasks.knowledge). "
               if has_knowledge else ""))
    return [Heading(2, f"Study: {variable}"), Para(note), Table(header, rows, "study"),
            Image(f"metrics against {variable}", png, "study-plot")]
