"""The method table of a sweep: one row per configuration, its seeds pooled, with the tests beside it.

``coin table runs/methods`` reads every ``<config>-s<seed>`` run folder of a sweep (``coin sweep``'s
layout) and writes, as Markdown, what docs/methods.md shows (``coin table runs/studies/ewc-lambda
runs/methods/lora-s*``: a study's configurations beside the baseline's runs):

- per configuration: MAA, BWT and ACC (mean ± sample std over its seeds) under the paper protocol,
  the strict protocol's and the knowledge matrix's beside them, the routing accuracy of methods that
  route test inputs (the last stage's ``routing.json``: the mean over the tasks of the share of a
  task's inputs whose top route is its own adapter), and Welch's t test of the ACC difference from
  a baseline configuration (``coin.stats.welch``; SciPy's);
- the routing accuracy per task after the last stage, for the routed configurations;
- the cost per configuration (``coin.report.cost``);
- where the numbers come from: how many runs, the seeds, the coin commits, threads, processes and
  CPU each run's ``env.json`` names, and the period the runs ran in (``env-history.jsonl``).

Only like is compared with like (``coin.report.comparable``, as ``coin report``): runs that differ in
more than their seeds, their method or one studied variable are refused with each key named.
Nothing here is typed by hand: the page is this function's output over run folders.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

from coin import stats
from coin.errors import IncomparableRuns
from coin.io import read_json, read_jsonl
from coin.metrics import seed_summary
from coin.report.comparable import Setup, comparison_problems, differing, varies_data
from coin.report.cost import cost_table
from coin.engine.export import RUN
from coin.report.document import Table, to_markdown
from coin.report.format import BLANK, adapter_label, fmt
from coin.report.load import load_run, run_metrics, upgraded

__all__ = ["Group", "groups", "method_table"]



@dataclasses.dataclass
class Group:
    """One configuration of a sweep: its runs' folders, matrix.json dicts and configs, by seed."""

    name: str
    dirs: list[Path]
    mjs: list[dict]
    configs: list[dict]

    def values(self, key: str, part: str | None = None) -> list[float | None]:
        """Each seed's ``key`` metric, from the paper protocol's metrics or ``part`` (strict, knowledge)."""
        if part is None:
            return [run_metrics(mj).get(key) for mj in self.mjs]
        return [((mj.get(part) or {}).get("metrics") or {}).get(key) for mj in self.mjs]

    def routing(self) -> list[dict[str, float]] | None:
        """Per seed, the last stage's routing accuracy per task; None when no run of the group routes."""
        out = []
        for d, mj in zip(self.dirs, self.mjs):
            tasks = mj["tasks"]
            path = d / "stages" / f"{len(tasks):02d}-{tasks[-1]}" / "routing.json"
            entries = read_json(path) if path.is_file() else {}
            out.append({t: e["accuracy"] for t, e in entries.items()
                        if isinstance(e, dict) and e.get("accuracy") is not None})
        return out if any(out) else None


def groups(sweeps: str | os.PathLike | Sequence[str | os.PathLike], allow: Sequence[str] = ()) -> list[Group]:
    """The configurations of sweep folders (their ``<config>-s<seed>`` runs with a ``matrix.json``) and of single
    run folders given beside them (``runs/methods/lora-s*``: a baseline for a study's table), by name. A name that
    two folders hold is written ``<folder>/<config>``.

    Raises ``IncomparableRuns`` when the runs differ in more than their seeds, their method or one studied
    variable (or the keys under ``allow``, as ``coin report --allow-diff``), and ``FileNotFoundError`` when
    a folder holds no finished run."""
    paths = [Path(sweeps)] if isinstance(sweeps, (str, os.PathLike)) else [Path(p) for p in sweeps]
    runs: list[tuple[str, Path]] = []  # (config name, run folder)
    for path in paths:
        dirs = [path] if (path / "matrix.json").is_file() else [mj.parent for mj in sorted(path.glob("*/matrix.json"))]
        dirs = [d for d in dirs if RUN.match(d.name)]
        if not dirs:
            raise FileNotFoundError(f"{path}: no finished run (a <config>-s<seed>/matrix.json) in it")
        runs += [(RUN.match(d.name)["config"], d) for d in dirs]
    parents: dict[str, set[Path]] = {}
    for name, d in runs:
        parents.setdefault(name, set()).add(d.parent.resolve())
    found: dict[str, list[tuple[int, Path]]] = {}
    for name, d in runs:
        key = f"{d.parent.name}/{name}" if len(parents[name]) > 1 else name
        found.setdefault(key, []).append((int(RUN.match(d.name)["seed"]), d))
    out, setups = [], []
    for name in sorted(found):
        dirs = [d for _, d in sorted(found[name])]
        loaded = [load_run(d) for d in dirs]
        configs = [upgraded(cfg) for _, cfg in loaded]
        out.append(Group(name, dirs, [mj for mj, _ in loaded], configs))
        setups += [Setup.of(d.name if len(paths) == 1 else f"{d.parent.name}/{d.name}", cfg, mj["tasks"])
                   for d, cfg, (mj, _) in zip(dirs, configs, loaded)]
    problems = comparison_problems(setups, allow)
    if problems:
        raise IncomparableRuns("coin table compares runs made the same way; these may not be set side by side:\n  - "
                               + "\n  - ".join(problems))
    return out


def _mean_std(values: Sequence[float | None], signed: bool = False, scale: float = 1.0, nd: int = 2) -> str:
    s = seed_summary([None if v is None else v * scale for v in values])
    if s.mean is None:
        return BLANK
    text = fmt(s.mean, nd, signed=signed)
    if s.n > 1:
        text += f" ± {fmt(s.std, nd)}"
    return text + ("" if s.n == s.total else f" (n={s.n} of {s.total})")


def _method_label(config: dict) -> str:
    """``method`` and the options its config sets away from the method's defaults, the adapter if not LoRA's."""
    from coin.methods import METHODS

    method = str(config.get("method") or BLANK)
    given = config.get("method_options") or {}
    words = []
    def plain(v):  # a YAML list and a default tuple (or a factory's list) are the same value
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v

    try:
        defaults = {f.name: plain(f.default if f.default is not dataclasses.MISSING else f.default_factory())
                    for f in dataclasses.fields(METHODS.options_of(method))
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    except Exception:  # a method this install does not know (a plugin not loaded): every option given
        defaults = {}
    for key, value in sorted(given.items()):
        if key not in defaults or defaults[key] != plain(value):
            words.append(f"{key} {value}")
    label = f"`{method}`" + (f" ({', '.join(words)})" if words else "")
    from coin.config import AdapterConfig

    adapter, default = config.get("adapter") or {}, AdapterConfig().type
    if adapter.get("type", default) != default:
        label += f", {adapter_label(adapter)}"
    return label


def _delta(group: Group, baseline: Group | None, alpha: float) -> str:
    if baseline is None or group is baseline:
        return BLANK
    t = stats.welch(group.values("acc"), baseline.values("acc"))
    if t.undefined:
        return f"{fmt(t.difference, 1, signed=True)} (no test: {t.undefined})"
    p = "p < 0.001" if t.p < 0.001 else f"p = {t.p:.3f}" if t.p < 0.01 else f"p = {t.p:.2f}"
    text = f"{fmt(t.difference, 1, signed=True)} ({p})"
    return f"**{text}**" if t.p < alpha else text


def _triple(group: Group, part: str, keys: Sequence[str]) -> str:
    parts = []
    for k in keys:
        s = seed_summary(group.values(k, part))
        parts.append(fmt(s.mean, 2, signed=k == "bwt"))
    return " / ".join(parts)


def _provenance(gs: Sequence[Group]) -> str:
    """How many runs, seeds, commits, threads, processes, CPUs and when, from each run's env files."""
    commits, threads, procs, cpus, times = set(), set(), set(), set(), []
    for g in gs:
        for d in g.dirs:
            env_path = d / "env.json"
            env = read_json(env_path) if env_path.is_file() else {}
            commits.add(str(env.get("coin_commit") or "unknown")[:7] + (" with edits" if env.get("coin_dirty") else ""))
            threads.add(env.get("threads"))
            procs.add(env.get("processes"))
            cpu = env.get("cpu") or {}
            cpus.add(" ".join(str(cpu[k]) for k in ("name",) if cpu.get(k))
                     + (f" family {cpu['family']} model {cpu['model']}" if cpu.get("family") else ""))
            hist = d / "env-history.jsonl"
            if hist.is_file():
                times += [row.get("time") for row in read_jsonl(hist)]
    n = sum(len(g.dirs) for g in gs)
    seeds = sorted({mj.get("seed") for g in gs for mj in g.mjs}, key=str)
    times = sorted(t for t in times if t)
    when = f", started between {times[0]} and {times[-1]}" if times else ""
    spread = [varies_data([Setup.of(d.name, c, mj["tasks"]) for d, c, mj in zip(g.dirs, g.configs, g.mjs)])
              for g in gs if len(g.dirs) > 1]
    covers = ("training and data seeds (each run drew its own CoIN-Synth data)" if spread and all(spread)
              else "training seeds only (every run read the same data, so the ± leaves out the test set's "
                   "sampling error; `coin sweep --data-seeds` draws the data anew per seed)")
    return (f"{n} runs in {len(gs)} configurations, seeds {', '.join(map(str, seeds))}; coin "
            f"{', '.join(sorted(commits))} (each run's `env.json`); {', '.join(map(str, sorted(threads, key=str)))} "
            f"torch thread(s) and {', '.join(map(str, sorted(procs, key=str)))} process(es) per run on "
            f"{'; '.join(sorted(c for c in cpus if c)) or 'an unrecorded CPU'}{when}. The ± is the sample std over "
            f"{covers}.")


def _allowed_note(gs: Sequence[Group], allow: Sequence[str]) -> str:
    if not allow:
        return ""
    setups = [Setup.of(d.name, c, mj["tasks"]) for g in gs for d, c, mj in zip(g.dirs, g.configs, g.mjs)]
    found = differing(setups, allow)
    return (" These keys differ as well (allowed by --allow-diff): " + "; ".join(found) + ".") if found else ""


def method_table(sweep: str | os.PathLike | Sequence[str | os.PathLike], baseline: str | None = None, alpha: float = 0.05,
                 allow: Sequence[str] = ()) -> str:
    """The Markdown of a sweep's method table, routing table and cost table (see the module's doc); ``allow``:
    config keys the configurations may differ in besides their method and one studied variable."""
    gs = groups(sweep, allow)
    if baseline is None:  # the plain sequential run with the default adapter, the table's usual reference
        baseline = next((g.name for g in gs if _method_label(g.configs[0]) == "`sequential`"), "")
    base = next((g for g in gs if g.name == baseline), None)
    order = sorted(gs, key=lambda g: (seed_summary(g.values("maa")).mean is None,
                                      -(seed_summary(g.values("maa")).mean or 0.0), g.name))
    routed = [g for g in order if g.routing()]

    def routing_cell(g: Group) -> str:
        per_seed = g.routing()
        if not per_seed:
            return BLANK
        return _mean_std([sum(r.values()) / len(r) if r else None for r in per_seed], scale=100.0, nd=1)

    rows = []
    for g in order:
        rows.append([f"`{g.name}`", _method_label(g.configs[0]), str(len(g.dirs)),
                     _mean_std(g.values("maa")), _mean_std(g.values("bwt"), signed=True), _mean_std(g.values("acc")),
                     _triple(g, "strict", ("maa", "bwt", "acc")), _triple(g, "knowledge", ("maa", "bwt")),
                     routing_cell(g), _delta(g, base, alpha)])
    header = ["config", "method (options set)", "seeds", "MAA", "BWT", "ACC", "strict MAA / BWT / ACC",
              "knowledge MAA / BWT", "routing accuracy (%)", f"ΔACC vs {baseline} (Welch p)"]
    blocks: list = [Table(header, rows, "methods")]
    text = [_provenance(gs) + _allowed_note(gs, allow),
            "",
            f"Sorted by MAA (paper protocol); strict and knowledge are the means over the seeds. Routing accuracy: "
            f"after the last stage, the share of each task's test inputs whose top route is its own adapter, "
            f"averaged over the tasks ({BLANK}: the method does not route). The last column is Welch's t test of "
            f"the ACC difference from `{baseline}` over the seeds; bold: p < {alpha}.",
            "", to_markdown(blocks, Path('.')).rstrip(), ""]
    if routed:
        tasks = routed[0].mjs[0]["tasks"]
        rrows = []
        for g in routed:
            per_seed = g.routing() or []
            rrows.append([f"`{g.name}`"] + [_mean_std([r.get(t) for r in per_seed], scale=100.0, nd=1) for t in tasks])
        text += ["Routing accuracy (%) per task after the last stage (mean ± std over seeds):", "",
                 to_markdown([Table(["config", *tasks], rrows, "routing")], Path('.')).rstrip(), ""]
    cost = cost_table([f"`{g.name}`" for g in order], [[mj.get("cost") or {} for mj in g.mjs] for g in order])
    text += ["Cost per configuration (mean ± std over seeds; training seconds, the seconds of the method's own work "
             "around the training loop (its hooks: a Fisher, gradient passes, a router's training) and evaluation "
             "seconds, each summed over the stages; the main process's peak memory; the method's saved state over all "
             "stages; n = the seeds a mean is over when a run lacks the key):", "",
             to_markdown([cost], Path('.')).rstrip(), ""]
    return "\n".join(text)

