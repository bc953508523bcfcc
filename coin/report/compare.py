"""A comparison of runs: one row per configuration (its seeds averaged), best MAA first, with figures.

Runs whose configs differ only in their seeds (``seed``, CoIN-Synth's ``data.synth.seed``) and in what
names or places a run (``name``, ``out_dir``...) are repetitions of one configuration and share a row;
the page says whether a row's ± covers the training seed only or the data seed too. Each stored config
is first brought up to today's defaults (``coin.config_load.upgrade``), so a run made before a key
existed groups with today's runs of the same setup.

Only like is compared with like (``coin.report.comparable``): the rows may differ in the method or in one
studied variable, not in their tasks, data or recipe besides; other runs are refused with every key that
differs (``IncomparableRuns``), before anything is written.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from coin.errors import IncomparableRuns
from coin.tracking import loss_curves
from coin.io import atomic_write_text
from coin.metrics import seed_summary
from coin.report.comparable import Setup, comparison_problems, defining, differing, varies_data
from coin.report.cost import cost_table
from coin.report.document import Block, Heading, Image, Para, Table, to_html, to_markdown
from coin.report.format import BLANK, adapter_label, fmt, fmt_ci, order_label
from coin.report.load import config_value, load_run, run_metrics, upgraded
from coin.report.plots import comparison_bar, heatmap, loss_curves_figure
from coin.report.study import study_blocks

__all__ = ["write_comparison"]

_COST_NOTE = ("Per configuration, the mean (± std over seeds) of each run's cost: parameters that train, "
              "parameters the model gains per task (0 for methods that reuse one adapter), training seconds, "
              "the seconds of the method's own work around the training loop (its hooks: a Fisher, gradient "
              "passes, a router's training) and evaluation seconds, each summed over the stages, the main "
              "process's peak memory, and the size of the method's saved state (Fisher, subspaces, merged "
              "factors...) over all stages.")

# The paper calls its default order (``tasks.order: paper``) its random one; the table says "paper".
_PAPER_ORDER_NOTE = "Order \"paper\" is the paper's default task order (the paper calls it its random order)."


def _describe(run_dir: Path) -> dict:
    """One run's row fields, its metrics and the key that groups it with its other seeds."""
    mj, config = load_run(run_dir)
    config = upgraded(config)  # a run made before a key existed groups with today's runs
    m = run_metrics(mj)
    method = config.get("method") or mj.get("method")
    key = json.dumps(defining(config) if config else [method, mj["tasks"]], sort_keys=True, default=str)
    return {
        "dir": run_dir, "mj": mj, "key": key, "config": config,
        "setup": Setup.of(run_dir.name, config, mj["tasks"]),  # what it must share with the runs beside it
        "run": mj.get("run_name") or run_dir.name, "method": str(method or BLANK),
        "order": order_label(config_value(config, "tasks.order") or mj["tasks"]),
        "instructions": str(config_value(config, "data.instructions") or BLANK),
        "volume": str(config_value(config, "data.volume") or BLANK),
        "adapter": adapter_label(config.get("adapter")),
        "seed": config.get("seed", mj.get("seed")),
        "maa": m.get("maa"), "bwt": m.get("bwt"), "acc": m.get("acc"), "ci": mj.get("ci") or {},
    }


def _aggregate(runs: list[dict], key: str) -> tuple[float | None, float | None, str]:
    """Mean, std and text of a metric over a group's seeds.

    Several runs: ``mean ± std (n=k)``, k the seeds the mean used; "n=2 of 3" when a seed
    has no value (it is not silently dropped). One run: ``value [CI]``, the CI a test-set
    bootstrap of that run.
    """
    s = seed_summary([r[key] for r in runs])
    if s.mean is None:
        return None, None, BLANK if len(runs) == 1 else f"{BLANK} (n=0 of {s.total})"
    if len(runs) == 1:
        ci = runs[0]["ci"].get(key)
        return s.mean, None, fmt(s.mean, signed=key == "bwt") + (f" {fmt_ci(ci)}" if ci else "")
    n = f"n={s.n}" if s.n == s.total else f"n={s.n} of {s.total}"
    return s.mean, s.std, f"{fmt(s.mean, signed=key == 'bwt')} ± {fmt(s.std)} ({n})"


def _rows(groups: dict[str, list[dict]]) -> list[tuple[float | None, float | None, list[str]]]:
    """Per configuration: its mean MAA, the MAA's std and the table cells; best MAA first."""
    rows = []
    for members in groups.values():
        members.sort(key=lambda r: (not isinstance(r["seed"], int), r["seed"] if isinstance(r["seed"], int) else 0,
                                    r["run"]))
        first = members[0]
        (maa, maa_std, maa_s), (_, _, bwt_s), (_, _, acc_s) = (_aggregate(members, k) for k in ("maa", "bwt", "acc"))
        cells = [", ".join(r["run"] for r in members), first["method"], first["order"], first["instructions"],
                 first["volume"], first["adapter"], ", ".join(str(r["seed"]) for r in members), str(len(members)),
                 maa_s, bwt_s, acc_s]
        rows.append((maa, maa_std, cells))
    rows.sort(key=lambda r: (r[0] is None, -(r[0] or 0.0), r[2][0]))
    return rows


def _refuse_unlike(runs: list[dict], allow: Sequence[str]) -> None:
    """Raise ``IncomparableRuns`` naming every key in which ``runs`` differ beyond what a comparison may vary
    (and the keys under ``allow``)."""
    labels = [r["dir"].name for r in runs]
    if len(set(labels)) < len(labels):  # folders of one name under other parents: their paths
        for r in runs:
            r["setup"] = replace(r["setup"], label=str(r["dir"]))
    problems = comparison_problems([r["setup"] for r in runs], allow)
    if problems:
        raise IncomparableRuns(
            "coin report compares runs made the same way: they may differ in their seeds, their method (method, "
            "method_options, the adapter's type and own keys) or one studied variable (the keys of one config "
            "section), not in their tasks, data or recipe besides. These runs may not be compared:\n  - "
            + "\n  - ".join(problems)
            + "\nA difference you mean (a method's own recipe, as the zeroshot config's eval.zero_shot: false): "
              "name its key with --allow-diff KEY, and the report lists it.")


def _spread_note(groups: Sequence[list[dict]]) -> str:
    """What the ± of the rows with several runs covers: the training seed only, or the data seed too."""
    varied, fixed = [], []
    for members in groups:
        if len(members) > 1 and (v := varies_data([r["setup"] for r in members])) is not None:
            (varied if v else fixed).append(", ".join(r["run"] for r in members))
    if varied and fixed:
        return (f" The ± is over training and data seeds for {'; '.join(varied)}; over training seeds only for "
                "the others (the same data in each of their runs).")
    if varied:
        return " The ± is over training and data seeds: each run drew its own CoIN-Synth data (data.synth.seed)."
    if fixed:
        return (" The ± is over training seeds only: the runs of a row used the same data (CoIN-Synth's "
                "data.synth.seed, or the benchmark's own files), so it leaves out the sampling error of the test "
                "set (`coin sweep --data-seeds` draws CoIN-Synth's data anew for each seed).")
    return ""


def _label(group: list[dict]) -> str:
    """A configuration's name for a legend: its runs' common name without the seed suffix."""
    names = {re.sub(r"-s\d+$", "", r["run"]) for r in group}
    return names.pop() if len(names) == 1 else ", ".join(r["run"] for r in group)


def config_curves(groups: Sequence[list[dict]]) -> dict[str, list[dict]]:
    """One loss curve per configuration: per stage and step, the mean over its seeds' logged losses.

    Seeds of one configuration take the same steps; a group whose runs do not (one still
    running) shows its first run's curve. Forty runs as forty lines would hide every one of them.
    """
    out: dict[str, list[dict]] = {}
    for group in sorted(groups, key=_label):
        per_run = [c for r in sorted(group, key=lambda r: r["run"]) if (c := loss_curves(r["dir"]))]
        if not per_run:
            continue
        first = per_run[0]
        aligned = all(len(c) == len(first) and all(a["steps"] == b["steps"] for a, b in zip(c, first))
                      for c in per_run)
        if aligned and len(per_run) > 1:
            first = [{**st, "loss": [sum(c[k]["loss"][i] for c in per_run) / len(per_run)
                                     for i in range(len(st["loss"]))]} for k, st in enumerate(first)]
        out[_label(group)] = first
    return out


def write_comparison(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                     allow: Sequence[str] = ()) -> Path:
    """Compare runs in ``out_dir/report.md`` + ``report.html``; runs differing only by seed share a row.

    Rows are sorted by MAA (mean over seeds), best first. Runs that differ in more than their seeds, their
    method or one studied variable raise ``IncomparableRuns`` (``coin.report.comparable``), unless the keys
    (or sections) under ``allow`` are all they differ in besides; the page lists those. Returns the path
    of ``report.md``.
    """
    if not run_dirs:
        raise ValueError("write_comparison needs at least one run folder")
    out_dir = Path(out_dir)
    runs = [_describe(Path(d)) for d in run_dirs]
    _refuse_unlike(runs, allow)
    if len({r["run"] for r in runs}) < len(runs):  # e.g. one config's seeds share its ``name``
        for r in runs:
            r["run"] = r["dir"].name
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["key"], []).append(r)

    rows = _rows(groups)
    header = ["run", "method", "order", "instructions", "volume", "adapter", "seed", "seeds", "MAA", "BWT", "ACC"]
    intro = (f"{len(runs)} runs in {len(groups)} configurations, best MAA first. Runs that differ only by "
             "seed share a row: mean ± std over the seeds that have the metric (n = how many of the "
             "group's seeds); a single run shows its 95% CI, a test-set bootstrap of that one run "
             "(not seed variation). Scores are the paper protocol's.")
    intro += _spread_note(list(groups.values()))
    allowed = differing([r["setup"] for r in runs], allow)
    if allowed:
        intro += " These keys differ as well (allowed by --allow-diff): " + "; ".join(allowed) + "."
    if any(r["order"] == "paper" for r in runs):
        intro += " " + _PAPER_ORDER_NOTE
    blocks: list[Block] = [Heading(1, "CoIN comparison"), Para(intro),
                           Table(header, [c for _, _, c in rows], "comparison")]
    bar = comparison_bar([c[0] for _, _, c in rows], [m for m, _, _ in rows], out_dir / "comparison.png",
                         errors=[s for _, s, _ in rows], label="MAA (mean ± std over seeds)")
    blocks += [Image("MAA per configuration", bar, "comparison-bar")]
    configs = [defining(g[0]["config"]) for g in groups.values()]
    blocks += study_blocks(list(groups.values()), configs, out_dir)
    members = {", ".join(r["run"] for r in group): group for group in groups.values()}  # _rows sorted each group
    blocks += [Heading(2, "Cost"), Para(_COST_NOTE),
               cost_table([c[0] for _, _, c in rows], [[r["mj"].get("cost") or {} for r in members[c[0]]]
                                                       for _, _, c in rows])]
    curves = config_curves(list(groups.values()))
    if curves:
        png = loss_curves_figure(curves, out_dir / "loss.png",
                                 title="Training loss (smoothed; mean over seeds) per configuration")
        blocks += [Heading(2, "Training loss"), Image("training loss per configuration", png, "loss")]
    blocks += [Heading(2, "Accuracy matrices")]
    for k, r in enumerate(sorted(runs, key=lambda r: r["run"])):
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", r["run"])
        png = heatmap(r["mj"]["matrix"], r["mj"]["tasks"], out_dir / "heatmaps" / f"{k:02d}_{safe}.png",
                      title=r["run"], zero_shot=r["mj"].get("zero_shot"))
        blocks += [Heading(3, r["run"]), Image(f"accuracy matrix of {r['run']}", png, f"heatmap-{k}")]
    md = atomic_write_text(out_dir / "report.md", to_markdown(blocks, out_dir))
    atomic_write_text(out_dir / "report.html", to_html(blocks, "CoIN comparison"))
    return md
