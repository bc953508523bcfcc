"""Run reports: a terminal summary, ``report.md`` + ``report.html`` per run, and comparisons.

Numbers come from ``coin.metrics`` (pure functions); this module reads run folders and
writes files, each atomically through ``coin.io``. A report
is first built as a list of blocks (headings, tables, images) and then rendered twice, to
Markdown and to one self-contained HTML page (``coin.report.document``), so the two always
say the same thing.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

import yaml

from coin.io import atomic_write_text, read_json
from coin.metrics import seed_summary, summarize
from coin.report.document import _Block, _Heading, _Image, _Para, _Table, _to_html, _to_markdown
from coin.engine.tracking import loss_curves
from coin.report.plots import abbreviate, comparison_bar, forgetting_curves, heatmap, loss_curves_figure

BLANK = "–"
CI_LABEL = "95% CI (test-set bootstrap of one run)"
CI_NOTE = ("The intervals resample the test questions of this one run: they show how much the numbers "
           "depend on which questions were drawn, not seed-to-seed or training variation (run seeds for that).")

# The paper's two task orders, so the comparison table can name them instead of listing tasks.
NAMED_ORDERS = {
    "random": ("ScienceQA", "TextVQA", "ImageNet", "GQA", "VizWiz", "Grounding", "VQAv2", "OCR-VQA"),
    "alphabet": ("GQA", "Grounding", "ImageNet", "OCR-VQA", "ScienceQA", "TextVQA", "VizWiz", "VQAv2"),
}

# Config keys that name or place a run rather than define it: runs differing only in these
# (and in any ``seed``, at any depth) are repetitions of one configuration.
_RUN_IDENTITY_KEYS = {"name", "run_name", "out_dir", "output_dir", "run_dir", "resume", "log"}  # log: telemetry


def _fmt(v: Any, nd: int = 2, signed: bool = False) -> str:
    """A number with ``nd`` decimals, or the blank mark for None/NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return BLANK
    return f"{v:+.{nd}f}" if signed else f"{v:.{nd}f}"


def _fmt_ci(ci: Any) -> str:
    """``[lo, hi]`` or the blank mark."""
    if not ci or any(x is None for x in ci):
        return BLANK
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


# --------------------------------------------------------------------------- loading


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_square(name: str, m: Any, t: int, errors: list[str]) -> None:
    if not isinstance(m, list) or len(m) != t:
        errors.append(f"{name} must be a list of {t} rows")
        return
    for j, row in enumerate(m):
        if not isinstance(row, list) or len(row) != t or not all(v is None or _is_num(v) for v in row):
            errors.append(f"{name}[{j}] must be a list of {t} numbers or nulls")


def load_matrix_json(path: str | os.PathLike) -> dict:
    """Read ``matrix.json`` and check its shape; errors name the file and every problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no matrix.json here (has the run finished a stage?)")
    mj = read_json(path)
    if not isinstance(mj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(mj).__name__}")
    errors: list[str] = []
    tasks = mj.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise ValueError(f"{path}: 'tasks' must be a non-empty list of task names")
    t = len(tasks)
    _check_square("matrix", mj.get("matrix"), t, errors)
    zs = mj.get("zero_shot")
    if zs is not None and not (isinstance(zs, list) and len(zs) == t and all(v is None or _is_num(v) for v in zs)):
        errors.append(f"zero_shot must be null or a list of {t} numbers or nulls")
    if mj.get("format_share") is not None:
        _check_square("format_share", mj["format_share"], t, errors)
    for key in ("metrics", "ci", "cost", "strict", "protocol_card"):
        if mj.get(key) is not None and not isinstance(mj[key], dict):
            errors.append(f"{key} must be null or an object")
    if isinstance(mj.get("strict"), dict):
        _check_square("strict.matrix", mj["strict"].get("matrix"), t, errors)
    if errors:
        raise ValueError(f"{path}: malformed: " + "; ".join(errors))
    return mj


def load_run(run_dir: str | os.PathLike) -> tuple[dict, dict]:
    """The checked ``matrix.json`` and the ``config.yaml`` (empty when absent) of a run folder."""
    run_dir = Path(run_dir)
    mj = load_matrix_json(run_dir / "matrix.json")
    cfg_path = run_dir / "config.yaml"
    config: Any = {}
    if cfg_path.is_file():
        try:
            config = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{cfg_path}: not valid YAML ({e})") from None
        if not isinstance(config, dict):
            raise ValueError(f"{cfg_path}: expected a mapping at the top level")
    return mj, config


def _metrics(mj: dict) -> dict:
    """The stored metrics, with any key that is absent recomputed from the matrix.

    A key stored as null stays null: the run said it is not meaningful (e.g. MAA of multi-task).
    """
    computed = summarize(mj["matrix"], zero_shot=mj.get("zero_shot"))
    return {**computed, **(mj.get("metrics") or {})}


def _get(config: dict, dotted: str) -> Any:
    """``config["a"]["b"]`` for ``"a.b"``, or None when any part is missing."""
    cur: Any = config
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _order_name(order: Sequence[str] | str) -> str:
    """The paper's name for a task order, else the tasks abbreviated; a named order as it is."""
    if isinstance(order, str):  # "paper", "alphabet", "shuffle:3" as written in the config
        return {"paper": "random"}.get(order, order)
    for name, tasks in NAMED_ORDERS.items():
        if tuple(order) == tasks:
            return name
    return ">".join(abbreviate(t) for t in order)


# --------------------------------------------------------------------------- terminal


def summary_table(matrix_json: dict) -> str:
    """A compact plain-text view of a run: the matrix, then MAA/BWT/ACC (with CIs) and zero-shot mean."""
    tasks, a = matrix_json["tasks"], matrix_json["matrix"]
    names = [abbreviate(t) for t in tasks]
    w = max(7, max(len(n) for n in names) + 2)
    labels = [f"{j + 1} {n}" for j, n in enumerate(names)]
    lw = max(len("zero-shot"), *(len(x) for x in labels)) + 1
    lines = []
    keys = ("run_name", "method", "seed")
    head = " ".join(f"{k}={matrix_json[k]}" for k in keys if matrix_json.get(k) is not None)
    if head:
        lines.append(head)
    lines.append(" " * lw + "".join(f"{n:>{w}}" for n in names))
    rows = list(zip(labels, a))
    if matrix_json.get("zero_shot") is not None:
        rows.insert(0, ("zero-shot", matrix_json["zero_shot"]))
    for label, row in rows:
        lines.append(f"{label:<{lw}}" + "".join(f"{_fmt(v, 1):>{w}}" for v in row))
    m, ci = _metrics(matrix_json), matrix_json.get("ci") or {}
    lines.append("")
    if isinstance(matrix_json.get("strict"), dict):
        lines.append("paper protocol:")
    for key in ("maa", "bwt", "acc"):
        cis = f"  {CI_LABEL} {_fmt_ci(ci[key])}" if ci.get(key) else ""
        lines.append(f"{key.upper():<4}{_fmt(m.get(key)):>8}{cis}")
    if m.get("zero_shot_mean") is not None:
        lines.append(f"zero-shot mean {_fmt(m['zero_shot_mean'])}")
    if isinstance(matrix_json.get("strict"), dict):
        sm = _metrics({"tasks": tasks, **matrix_json["strict"]})
        lines.append("strict protocol: " + "  ".join(f"{k.upper()} {_fmt(sm.get(k))}" for k in ("maa", "bwt", "acc")))
    return "\n".join(lines)


# --------------------------------------------------------------------------- documents

def _matrix_table(tasks: Sequence[str], rows: Sequence[Sequence[Any]], zero_shot: Sequence[Any] | None,
                  table_id: str | None, scale: float = 1.0) -> _Table:
    """Rows "after <task>" (plus a zero-shot row on top), columns = tasks; None -> blank mark."""
    body = [[f"after {t}"] + [_fmt(None if v is None else v * scale) for v in row] for t, row in zip(tasks, rows)]
    if zero_shot is not None:
        body.insert(0, ["zero-shot"] + [_fmt(v) for v in zero_shot])
    return _Table(["stage"] + list(tasks), body, table_id)


def _metrics_table(m: dict, ci: dict, table_id: str) -> _Table:
    """MAA/BWT/ACC with their test-set bootstrap intervals, then the metrics without one."""
    rows = [
        ["MAA", _fmt(m.get("maa")), _fmt_ci(ci.get("maa"))],
        ["BWT", _fmt(m.get("bwt"), signed=True), _fmt_ci(ci.get("bwt"))],
        ["ACC", _fmt(m.get("acc")), _fmt_ci(ci.get("acc"))],
        ["Plasticity", _fmt(m.get("plasticity")), BLANK],
        ["Mean forgetting", _fmt(m.get("mean_forgetting")), BLANK],
        ["FWT", _fmt(m.get("fwt"), signed=True), BLANK],
        ["Zero-shot mean", _fmt(m.get("zero_shot_mean")), BLANK],
    ]
    return _Table(["metric", "value", CI_LABEL], rows, table_id)


def _card_blocks(mj: dict) -> list[_Block]:
    """The protocol card stored in ``matrix.json``: per task and column, how it was scored (none: no section)."""
    card = mj.get("protocol_card")
    if not card:
        return []
    from coin.eval.protocols import card_rows

    return [_Heading(2, "Protocol card"),
            _Para("How each task was scored in each table: the scorer, the answer normaliser, where the "
                  "answers come from and each deliberate difference from the original CoIN code."),
            _Table(["task", "table", "protocol", "scorer", "normaliser", "answers", "rule",
                    "differences from the original"], card_rows(card), "protocol-card")]


def _experts(config: dict) -> str:
    """MoELoRA's expert count; LoRA (or an unknown adapter type with no count) has none."""
    kind, n = _get(config, "adapter.type"), _get(config, "adapter.experts")
    return str(n) if n and kind in (None, "moelora") else BLANK


def _run_blocks(mj: dict, config: dict, heatmap_png: Path, forgetting_png: Path,
                extra: Sequence[_Block] = (), loss_png: Path | None = None) -> list[_Block]:
    """Everything one run's report says, in order; ``extra`` goes before the figures.

    ``loss_png``: the training-loss figure (absent for runs made before step logs existed).
    """
    tasks, a, t = mj["tasks"], mj["matrix"], len(mj["tasks"])
    m, ci = _metrics(mj), mj.get("ci") or {}
    name = mj.get("run_name") or heatmap_png.parent.name
    info = [
        ["run", name], ["method", str(mj.get("method") or config.get("method") or BLANK)],
        ["seed", str(mj.get("seed", config.get("seed", BLANK)))],
        ["task order", " → ".join(tasks)],
        ["instructions", str(_get(config, "data.instructions") or BLANK)],
        ["data volume", str(_get(config, "data.volume") or BLANK)],
        ["LoRA rank", str(_get(config, "adapter.r") or BLANK)],
        ["experts", _experts(config)],
    ]
    blocks: list[_Block] = [_Heading(1, f"CoIN report: {name}"), _Table(["field", "value"], info, "run-info")]

    strict = mj.get("strict") if isinstance(mj.get("strict"), dict) else None
    which = " (paper protocol)" if strict is not None else ""
    blocks += [_Heading(2, "Accuracy matrix" + which),
               _Para("Score (0–100) on each task (columns) after each training stage (rows); "
                     f"{BLANK} = not evaluated." + (" Each task scored by the original CoIN rule with its bugs "
                                                    "fixed; see the protocol card." if strict is not None else "")),
               _matrix_table(tasks, a, mj.get("zero_shot"), "matrix")]
    blocks += [_Heading(2, "Metrics" + which), _metrics_table(m, ci, "metrics"), _Para(CI_NOTE)]
    if strict is not None:
        sm = _metrics({"tasks": tasks, **strict})
        blocks += [_Heading(2, "Accuracy matrix (strict protocol)"),
                   _Para("The same answers scored by coin's own rules where they differ from the paper's "
                         "(tasks without a strict rule repeat their paper score); see the protocol card."),
                   _matrix_table(tasks, strict["matrix"], strict.get("zero_shot"), "matrix-strict"),
                   _metrics_table(sm, strict.get("ci") or {}, "metrics-strict")]
    blocks += _card_blocks(mj)

    forgetting = m.get("forgetting") or [None] * t
    rows = [[task, _fmt(a[i][i]), _fmt(a[-1][i]),
             _fmt(None if a[i][i] is None or a[-1][i] is None else a[-1][i] - a[i][i], signed=True),
             _fmt(forgetting[i])] for i, task in enumerate(tasks)]
    blocks += [_Heading(2, "Per-task forgetting"),
               _Table(["task", "just learned", "final", "final − learned", "forgetting"], rows,
                      "forgetting-table")]

    share = mj.get("format_share")
    if share is not None:
        rows = []
        for i, task in enumerate(tasks):
            score, s = a[-1][i], share[-1][i]
            err = None if score is None else 100.0 - score
            fmt_err = None if err is None or s is None else err * s
            know_err = None if fmt_err is None else err - fmt_err
            pct = None if s is None else 100 * s
            rows.append([task, _fmt(score), _fmt(err), _fmt(fmt_err), _fmt(know_err), _fmt(pct, 1)])
        blocks += [_Heading(2, "Format vs knowledge errors"),
                   _Para("After the last stage, the points lost on each task split into answers in the wrong "
                         "format (instruction alignment lost) and well-formed wrong answers (knowledge)."),
                   _Table(["task", "final score", "error points", "format errors", "knowledge errors",
                           "format share %"], rows, "format"),
                   _Para("Share of errors that are format errors (%), per stage:"),
                   _matrix_table(tasks, share, None, "format-share", scale=100.0)]

    cost = mj.get("cost")
    if cost:
        params = cost.get("trainable_params")
        rows = [["trainable parameters", BLANK if params is None else f"{params:,}"],
                ["train time (s)", _fmt(cost.get("train_seconds"), 1)],
                ["eval time (s)", _fmt(cost.get("eval_seconds"), 1)],
                ["peak memory (MB)", _fmt(cost.get("peak_memory_mb"), 0)]]
        blocks += [_Heading(2, "Cost"), _Table(["item", "value"], rows, "cost")]

    blocks += list(extra)
    blocks += [_Heading(2, "Figures"), _Image("accuracy matrix heatmap", heatmap_png, "heatmap")]
    if loss_png is not None:
        blocks += [_Image("training loss per stage", loss_png, "loss"),
                   _Para("Training loss per optimiser step (faint) and smoothed, the stages one after another; "
                         "dashed lines mark where a stage begins. TensorBoard shows the same curves from logs/.")]
    blocks += [_Image("forgetting curves", forgetting_png, "forgetting")]
    return blocks


def _judge_blocks(run_dir: Path, mj: dict) -> list[_Block]:
    """The Reasoning-Capability sections written by ``coin judge`` (none when it has not run).

    One section per judge in ``<run>/judge/*/rc_matrix.json`` (its matrix, its metrics next
    to truth alignment's, its agreement with truth alignment), then the agreement between
    judges from ``<run>/judge/agreement.json``.
    """
    blocks: list[_Block] = []
    ta = _metrics(mj)
    for k, path in enumerate(sorted((run_dir / "judge").glob("*/rc_matrix.json"))):
        rc = read_json(path)
        judge, rm, tot = rc["judge"], rc.get("metrics") or {}, rc["counts"]["total"]
        n = sum(tot.values())
        blocks += [
            _Heading(2, f"Reasoning Capability: {judge['name']}"),
            _Para(f"Judge {judge['id']}, prompt {judge['prompt_version']}, temperature 0. Task score = sum of "
                  f"judge scores (0–10) / (10 N) × 100. Of {n} answers: {tot['ok']} scored, {tot['unparsable']} "
                  f"unparsable and {tot['out_of_range']} out of range (both score 0), {tot['missing']} missing "
                  f"predictions (0), {tot['failed']} failed and {tot['pending']} not yet judged ({BLANK} cells)."),
            _matrix_table(rc["tasks"], rc["matrix"], rc.get("zero_shot"), f"rc-matrix-{k}"),
            _Table(["metric", "Truth Alignment", "Reasoning Capability"],
                   [["MAA", _fmt(ta.get("maa")), _fmt(rm.get("maa"))],
                    ["BWT", _fmt(ta.get("bwt"), signed=True), _fmt(rm.get("bwt"), signed=True)],
                    ["ACC", _fmt(ta.get("acc")), _fmt(rm.get("acc"))]], f"rc-metrics-{k}"),
            _Heading(3, "Agreement with truth alignment"),
            _Para("Mean judge score (0–10) of the answers truth alignment marks correct and wrong, over all "
                  "stages; a judge that tracks correctness shows a large positive gap."),
        ]
        rows = [[task, str(a["n"]), str(a["n_correct"]), _fmt(a["judge_mean_correct"]), str(a["n_wrong"]),
                 _fmt(a["judge_mean_wrong"]), _fmt(a["gap"], signed=True), _fmt(a["spearman"])]
                for task, a in rc["truth_agreement"].items()]
        blocks.append(_Table(["task", "n", "TA-correct", "judge mean", "TA-wrong", "judge mean", "gap",
                              "Spearman"], rows, f"rc-truth-{k}"))
    agree_path = run_dir / "judge" / "agreement.json"
    pairs = read_json(agree_path)["pairs"] if agree_path.is_file() else []
    if pairs:
        rows = [[p["a"], p["b"], task, str(a["n"]), _fmt(a["spearman"]),
                 _fmt(None if a["bin_agreement"] is None else 100 * a["bin_agreement"], 1), _fmt(a["kappa"])]
                for p in pairs for task, a in [("all", p["all"]), *p["tasks"].items()]]
        blocks += [_Heading(2, "Agreement between judges"),
                   _Para("Answers both judges scored; bins are 0–4, 4–7 and 7–10; kappa is Cohen's on the bins."),
                   _Table(["judge A", "judge B", "task", "n", "Spearman", "same bin %", "kappa"], rows,
                          "judge-agreement")]
    return blocks


def _env_blocks(run_dir: Path) -> list[_Block]:
    """The environment the run recorded (``env.json``): versions, device, seed, coin's commit."""
    path = run_dir / "env.json"
    if not path.is_file():
        return []
    try:
        env = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return [_Heading(2, "Environment"), _Para(f"{path.name} is not valid JSON.")]
    rows = [[str(k), BLANK if v is None else str(v)] for k, v in env.items()]
    return [_Heading(2, "Environment"), _Table(["item", "value"], rows, "environment")]


def write_report(run_dir: str | os.PathLike) -> Path:
    """Write ``report.md``, ``report.html``, ``heatmap.png``, ``forgetting.png`` and ``loss.png`` into a run folder.

    Returns the path of ``report.md``.
    """
    run_dir = Path(run_dir)
    mj, config = load_run(run_dir)
    name = mj.get("run_name") or run_dir.name
    title = name + (" (paper protocol)" if isinstance(mj.get("strict"), dict) else "")
    hm = heatmap(mj["matrix"], mj["tasks"], run_dir / "heatmap.png", title=title, zero_shot=mj.get("zero_shot"))
    fc = forgetting_curves(mj["matrix"], mj["tasks"], run_dir / "forgetting.png")
    curves = loss_curves(run_dir)
    lc = loss_curves_figure({name: curves}, run_dir / "loss.png") if curves else None
    blocks = _run_blocks(mj, config, hm, fc, extra=_judge_blocks(run_dir, mj) + _env_blocks(run_dir), loss_png=lc)
    md = atomic_write_text(run_dir / "report.md", _to_markdown(blocks, run_dir))
    atomic_write_text(run_dir / "report.html", _to_html(blocks, f"CoIN report: {name}"))
    return md


# --------------------------------------------------------------------------- comparison


def _without_identity(obj: Any, top: bool = True) -> Any:
    """``obj`` minus every ``seed`` key and, at the top level, the keys that only name a run."""
    if not isinstance(obj, dict):
        return obj
    return {k: _without_identity(v, False) for k, v in obj.items()
            if k != "seed" and not (top and k in _RUN_IDENTITY_KEYS)}


def _describe(run_dir: Path) -> dict:
    """One run's row fields, its metrics and the key that groups it with its other seeds."""
    mj, config = load_run(run_dir)
    if config:
        from coin.config import with_defaults

        config = with_defaults(config)  # a run made before a key existed groups with today's runs
    m = _metrics(mj)
    method = config.get("method") or mj.get("method")
    key = json.dumps(_without_identity(config) if config else [method, mj["tasks"]], sort_keys=True, default=str)
    return {
        "dir": run_dir, "mj": mj, "key": key,
        "run": mj.get("run_name") or run_dir.name, "method": str(method or BLANK),
        "order": _order_name(_get(config, "tasks.order") or mj["tasks"]),
        "instructions": str(_get(config, "data.instructions") or BLANK),
        "volume": str(_get(config, "data.volume") or BLANK),
        "rank": str(_get(config, "adapter.r") or BLANK),
        "experts": _experts(config),
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
        return s.mean, None, _fmt(s.mean, signed=key == "bwt") + (f" {_fmt_ci(ci)}" if ci else "")
    n = f"n={s.n}" if s.n == s.total else f"n={s.n} of {s.total}"
    return s.mean, s.std, f"{_fmt(s.mean, signed=key == 'bwt')} ± {_fmt(s.std)} ({n})"


def write_comparison(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> Path:
    """Compare runs in ``out_dir/report.md`` + ``report.html``; runs differing only by seed share a row.

    Rows are sorted by MAA (mean over seeds), best first. Returns the path of ``report.md``.
    """
    if not run_dirs:
        raise ValueError("write_comparison needs at least one run folder")
    out_dir = Path(out_dir)
    runs = [_describe(Path(d)) for d in run_dirs]
    if len({r["run"] for r in runs}) < len(runs):  # e.g. one config's seeds share its ``name``
        for r in runs:
            r["run"] = r["dir"].name
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["key"], []).append(r)

    rows = []
    for members in groups.values():
        members.sort(key=lambda r: (not isinstance(r["seed"], int), r["seed"] if isinstance(r["seed"], int) else 0,
                                    r["run"]))
        first = members[0]
        (maa, maa_std, maa_s), (_, _, bwt_s), (_, _, acc_s) = (_aggregate(members, k) for k in ("maa", "bwt", "acc"))
        cells = [", ".join(r["run"] for r in members), first["method"], first["order"], first["instructions"],
                 first["volume"], first["rank"], first["experts"],
                 ", ".join(str(r["seed"]) for r in members), str(len(members)), maa_s, bwt_s, acc_s]
        rows.append((maa, maa_std, cells))
    rows.sort(key=lambda r: (r[0] is None, -(r[0] or 0.0), r[2][0]))
    header = ["run", "method", "order", "instructions", "volume", "rank", "experts", "seed", "seeds",
              "MAA", "BWT", "ACC"]
    blocks: list[_Block] = [
        _Heading(1, "CoIN comparison"),
        _Para(f"{len(runs)} runs in {len(groups)} configurations, best MAA first. Runs that differ only by "
              "seed share a row: mean ± std over the seeds that have the metric (n = how many of the "
              "group's seeds); a single run shows its 95% CI, a test-set bootstrap of that one run "
              "(not seed variation). Scores are the paper protocol's."),
        _Table(header, [c for _, _, c in rows], "comparison"),
    ]
    bar = comparison_bar([c[0] for _, _, c in rows], [m for m, _, _ in rows], out_dir / "comparison.png",
                         errors=[s for _, s, _ in rows], label="MAA (mean ± std over seeds)")
    blocks += [_Image("MAA per configuration", bar, "comparison-bar")]
    curves = {r["run"]: c for r in sorted(runs, key=lambda r: r["run"]) if (c := loss_curves(r["dir"]))}
    if curves:
        png = loss_curves_figure(curves, out_dir / "loss.png", title="Training loss (smoothed) of each run")
        blocks += [_Heading(2, "Training loss"), _Image("training loss of each run", png, "loss")]
    blocks += [_Heading(2, "Accuracy matrices")]
    for k, r in enumerate(sorted(runs, key=lambda r: r["run"])):
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", r["run"])
        png = heatmap(r["mj"]["matrix"], r["mj"]["tasks"], out_dir / "heatmaps" / f"{k:02d}_{safe}.png",
                      title=r["run"], zero_shot=r["mj"].get("zero_shot"))
        blocks += [_Heading(3, r["run"]), _Image(f"accuracy matrix of {r['run']}", png, f"heatmap-{k}")]
    md = atomic_write_text(out_dir / "report.md", _to_markdown(blocks, out_dir))
    atomic_write_text(out_dir / "report.html", _to_html(blocks, "CoIN comparison"))
    return md
