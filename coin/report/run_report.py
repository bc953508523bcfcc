"""One run's report: the terminal summary, and ``report.md`` + ``report.html`` with their figures.

Numbers come from ``coin.metrics`` (pure functions) through ``matrix.json``; this module
decides what the report says, as a list of blocks (``coin.report.document``) rendered to
Markdown and to one self-contained HTML page, each written atomically through ``coin.io``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from coin.tracking import loss_curves
from coin.scoring.judge.protocols import CARD_LINE as JUDGE_CARD_LINE
from coin.io import atomic_write_text, read_json
from coin.report.cost import cost_rows
from coin.report.document import Block, Heading, Image, Para, Table, to_html, to_markdown
from coin.report.format import (BLANK, CI_LABEL, CI_NOTE, adapter_label, fmt, fmt_ci, matrix_table,
                                metrics_table)
from coin.report.judge_blocks import judge_blocks
from coin.report.load import config_value, load_run, run_metrics, upgraded
from coin.report.plots import abbreviate, forgetting_curves, heatmap, loss_curves_figure

__all__ = ["summary_table", "write_report"]


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
        lines.append(f"{label:<{lw}}" + "".join(f"{fmt(v, 1):>{w}}" for v in row))
    m, ci = run_metrics(matrix_json), matrix_json.get("ci") or {}
    lines.append("")
    if isinstance(matrix_json.get("strict"), dict):
        lines.append("paper protocol:")
    for key in ("maa", "bwt", "acc"):
        cis = f"  {CI_LABEL} {fmt_ci(ci[key])}" if ci.get(key) else ""
        lines.append(f"{key.upper():<4}{fmt(m.get(key)):>8}{cis}")
    if m.get("zero_shot_mean") is not None:
        lines.append(f"zero-shot mean {fmt(m['zero_shot_mean'])}")
    if isinstance(matrix_json.get("strict"), dict):
        sm = run_metrics({"tasks": tasks, **matrix_json["strict"]})
        lines.append("strict protocol: " + "  ".join(f"{k.upper()} {fmt(sm.get(k))}" for k in ("maa", "bwt", "acc")))
    if isinstance(matrix_json.get("knowledge"), dict):
        km = run_metrics({"tasks": tasks, **matrix_json["knowledge"]})
        lines.append("knowledge (content, any format): "
                     + "  ".join(f"{k.upper()} {fmt(km.get(k))}" for k in ("maa", "bwt", "acc")))
    return "\n".join(lines)


def _card_blocks(mj: dict) -> list[Block]:
    """The protocol card stored in ``matrix.json``: per task and column, how it was scored (none: no section)."""
    card = mj.get("protocol_card")
    if not card:
        return []
    from coin.tasks.protocol_sets import card_rows

    return [Heading(2, "Protocol card"),
            Para("How each task was scored in each table: the scorer, the answer normaliser, where the "
                 "answers come from, how its test images were preprocessed (eval.image_mode) and each "
                 "deliberate difference from the original CoIN code."),
            Table(["task", "table", "protocol", "scorer", "normaliser", "answers", "rule", "test images",
                   "differences from the original"], card_rows(card), "protocol-card"),
            *_limit_blocks(mj), *_model_card(mj), Para(JUDGE_CARD_LINE)]


def _limit_blocks(mj: dict) -> list[Block]:
    """Each task's generation limit and the rule behind it (``generation_card``; older files: nothing)."""
    card = mj.get("generation_card")
    if not isinstance(card, dict) or not card:
        return []
    rows = [[t, fmt(e.get("max_new_tokens"), 0), e.get("rule", ""), fmt(e.get("at_limit"), 0)]
            for t, e in card.items() if isinstance(e, dict)]
    return [Para("New tokens per answer at evaluation (every row stops at its end-of-sequence token). The "
                 "original code's limits: LLaVA 128 (TextVQA, GQA, VizWiz, OCR-VQA) or 1024 (the others), Qwen-VL "
                 "30, MiniGPT-v2 100; the shipped paper configs set them in eval.max_new_tokens."),
            Table(["task", "max new tokens", "set by", "answers at the limit (last stage)"], rows, "generation-card")]


def _model_card(mj: dict) -> list[Block]:
    """The backbone's own differences from the code CoIN ran it with (none: nothing)."""
    card = mj.get("model_card") or {}
    if not card.get("deviations"):
        return []
    return [Para(f"Backbone {card.get('backbone')}: differences from the original code:"),
            Table(["difference"], [[d] for d in card["deviations"]], "model-card")]


def _prompt_blocks(tasks: Sequence[str], family: str | None, sources: dict | None = None) -> list[Block]:
    """Where the run's prompts came from, and its format-instruction lines that are not the paper's:
    coin's own and fallbacks (nothing to say: no section).

    ``sources``: the run's ``data_sources.json`` (``coin.benchmarks.layout.data_sources``; a run made
    before it existed has none, and every task is taken as rewritten, as such runs were). A task
    whose files were read as released (the family's own folder: the paper's prompts) gets no
    note about coin's lines; a task rewritten with coin's lines says so, naming the folder the
    release would have held.
    """
    from coin.tasks.instructions import prompt_notes

    fam = family or "original"
    per_task = (sources or {}).get("tasks") if isinstance(sources, dict) else None
    per_task = per_task if isinstance(per_task, dict) else {}
    entries = {t: {sp: e for sp, e in (per_task.get(t) or {}).items() if isinstance(e, dict)} for t in tasks}
    rewritten = [t for t in tasks if not entries[t] or any(e.get("derive") for e in entries[t].values())]
    blocks: list[Block] = []
    rows = [[t] + [str(entries[t].get(sp, {}).get("line") or entries[t].get(sp, {}).get("missing") or BLANK)
                   for sp in ("train", "test")] for t in tasks if entries[t]]
    plain = all(str(e.get("origin", "")) == "(as released)" for t in tasks for e in entries[t].values())
    if rows and not (fam == "original" and plain):
        as_released = [t for t in tasks if entries[t] and t not in rewritten]
        said = f"Instruction family {fam}"
        if fam != "original":
            said += (f": {len(as_released)} task(s) read as released (the paper's own {fam} prompts), "
                     f"{len(rewritten)} rewritten with coin's instruction lines from the Original files")
        blocks += [Para(said + ". Where each task's files and prompts came from (data_sources.json):"),
                   Table(["task", "train", "test"], rows, "data-sources")]
    notes = prompt_notes(fam, rewritten)
    if notes:
        blocks += [Para(f"Instruction family {fam}; lines not taken from the paper:"), *[Para(n) for n in notes]]
    return [Heading(2, "Prompts"), *blocks] if blocks else []


ERROR_KINDS = (("format", "right content, wrong format"), ("confusion", "another task's answer"),
               ("content", "wrong content"), ("other", "none of these"))  # coin.tasks.knowledge's tags, in order


def _format_blocks(tasks: Sequence[str], a: list, share: list | None, tags: dict | None = None) -> list[Block]:
    """After the last stage, each task's lost points split by kind of error.

    With the knowledge tags (every run since they exist) the split is theirs, the one taxonomy of the
    report: the error points of a task shared out over its wrong answers' tags (right content in another
    format, an answer of another task, a well-formed wrong answer, none of these). A run made before the
    tags has only the scorers' format share, shown as it was: format errors against the rest.
    """
    if isinstance(tags, dict) and tags:
        rows = []
        for i, task in enumerate(tasks):
            score = a[-1][i]
            err = None if score is None else 100.0 - score
            counts = tags.get(task) or {}
            wrong = sum(int(counts.get(k, 0)) for k, _ in ERROR_KINDS)
            parts = [None if err is None or not wrong else err * int(counts.get(k, 0)) / wrong for k, _ in ERROR_KINDS]
            rows.append([task, fmt(score), fmt(err), *[fmt(p) for p in parts]])
        return [Heading(2, "Where the lost points went"),
                Para("After the last stage, each task's error points (100 − score) shared out over its wrong "
                     "answers by kind, the tags of the knowledge scorer (coin.tasks.knowledge; their counts are "
                     "under \"Knowledge matrix\"): right content in another format (instruction following "
                     "lost, knowledge kept), an answer of another task (task confusion), a well-formed wrong "
                     "answer (knowledge lost), none of these."),
                Table(["task", "final score", "error points", *[label for _, label in ERROR_KINDS]], rows,
                      "error-kinds")]
    rows = []
    for i, task in enumerate(tasks):
        score, s = a[-1][i], share[-1][i]
        err = None if score is None else 100.0 - score
        fmt_err = None if err is None or s is None else err * s
        know_err = None if fmt_err is None else err - fmt_err
        pct = None if s is None else 100 * s
        rows.append([task, fmt(score), fmt(err), fmt(fmt_err), fmt(know_err), fmt(pct, 1)])
    return [Heading(2, "Format vs knowledge errors"),
            Para("After the last stage, the points lost on each task split into answers in the wrong "
                 "format (instruction alignment lost) and well-formed wrong answers (knowledge); a run made "
                 "before the knowledge tags, so the split is the scorers' format share."),
            Table(["task", "final score", "error points", "format errors", "knowledge errors",
                   "format share %"], rows, "format"),
            Para("Share of errors that are format errors (%), per stage:"),
            matrix_table(tasks, share, None, "format-share", scale=100.0)]


def benchmark_title(config: dict) -> str:
    """The run's benchmark as a title: the first words of its registry doc ("UCIT", "MLLM-CL domain stream")."""
    from coin.benchmarks import BENCHMARKS

    name = config_value(config, "data.benchmark") or "coin"
    if name not in BENCHMARKS:
        return str(name)
    return BENCHMARKS.doc(name).split(":")[0].split(" (")[0] or str(name)


def _knowledge_blocks(mj: dict) -> list[Block]:
    """The knowledge matrix (content scored in any format) and its error tags after the last stage."""
    k = mj.get("knowledge")
    if not isinstance(k, dict):
        return []
    tasks = mj["tasks"]
    km = run_metrics({"tasks": tasks, **k})
    blocks: list[Block] = [
        Heading(2, "Knowledge matrix (content, any format)"),
        Para("Each answer scored by whether its content is right in any wording or format (coin.tasks.knowledge): "
             "the gap to the accuracy matrix is instruction following lost while the knowledge was kept."),
        matrix_table(tasks, k["matrix"], k.get("zero_shot"), "matrix-knowledge"),
        metrics_table(km, k.get("ci") or {}, "metrics-knowledge")]
    tags = mj.get("knowledge_tags")
    if isinstance(tags, dict) and tags:
        names = ("correct", "format", "confusion", "content", "other")
        rows = [[task] + [str(tags.get(task, {}).get(n, BLANK)) for n in names] for task in tasks if task in tags]
        blocks += [Para("Answers after the last stage by tag: right in the task's format (correct); right content "
                        "in another format (format); an answer of another task (confusion); a well-formed wrong "
                        "answer (content); none of these (other)."),
                   Table(["task", *names], rows, "knowledge-tags")]
    return blocks


def _run_blocks(mj: dict, config: dict, heatmap_png: Path, forgetting_png: Path,
                extra: Sequence[Block] = (), loss_png: Path | None = None, sources: dict | None = None) -> list[Block]:
    """Everything one run's report says, in order; ``extra`` goes before the figures.

    ``config`` is the run's config with today's defaults filled in (``load.upgraded``).
    ``loss_png``: the training-loss figure (absent for runs made before step logs existed).
    ``sources``: the run's ``data_sources.json`` (absent for runs made before it existed).
    """
    tasks, a, t = mj["tasks"], mj["matrix"], len(mj["tasks"])
    m, ci = run_metrics(mj), mj.get("ci") or {}
    name = mj.get("run_name") or heatmap_png.parent.name
    info = [
        ["run", name], ["method", str(mj.get("method") or config.get("method") or BLANK)],
        ["seed", str(mj.get("seed", config.get("seed", BLANK)))],
        ["task order", " → ".join(tasks)],
        ["instructions", str(config_value(config, "data.instructions") or BLANK)],
        ["data volume", str(config_value(config, "data.volume") or BLANK)],
        ["adapter", adapter_label(config.get("adapter"))],
    ]
    info.insert(1, ["benchmark", str(config_value(config, "data.benchmark") or BLANK)])
    strict = mj.get("strict") if isinstance(mj.get("strict"), dict) else None
    # the key result first: the three numbers and the heatmap, then what the run was, then the details
    headline = " · ".join(f"{label} {fmt(m.get(key))}" for label, key in (("MAA", "maa"), ("BWT", "bwt"), ("ACC", "acc")))
    blocks: list[Block] = [Heading(1, f"{benchmark_title(config)} report: {name}"),
                           Para(f"**{headline}**" + (" (paper protocol; the strict one below)" if strict else "")),
                           Image("accuracy matrix heatmap", heatmap_png, "heatmap"),
                           Table(["field", "value"], info, "run-info")]

    which = " (paper protocol)" if strict is not None else ""
    blocks += [Heading(2, "Accuracy matrix" + which),
               Para("Score (0–100) on each task (columns) after each training stage (rows); "
                    f"{BLANK} = not evaluated." + (" Each task scored by the original CoIN rule with its bugs "
                                                   "fixed; see the protocol card." if strict is not None else "")),
               matrix_table(tasks, a, mj.get("zero_shot"), "matrix")]
    blocks += [Heading(2, "Metrics" + which), metrics_table(m, ci, "metrics"), Para(CI_NOTE)]
    if strict is not None:
        sm = run_metrics({"tasks": tasks, **strict})
        blocks += [Heading(2, "Accuracy matrix (strict protocol)"),
                   Para("The same answers scored by coin's own rules where they differ from the paper's "
                        "(tasks without a strict rule repeat their paper score); see the protocol card."),
                   matrix_table(tasks, strict["matrix"], strict.get("zero_shot"), "matrix-strict"),
                   metrics_table(sm, strict.get("ci") or {}, "metrics-strict")]
    blocks += _knowledge_blocks(mj)
    blocks += _card_blocks(mj) + _prompt_blocks(tasks, config_value(config, "data.instructions"), sources)

    forgetting = m.get("forgetting") or [None] * t
    rows = [[task, fmt(a[i][i]), fmt(a[-1][i]),
             fmt(None if a[i][i] is None or a[-1][i] is None else a[-1][i] - a[i][i], signed=True),
             fmt(forgetting[i])] for i, task in enumerate(tasks)]
    blocks += [Heading(2, "Per-task forgetting"),
               Table(["task", "just learned", "final", "final − learned", "forgetting"], rows, "forgetting-table")]

    if mj.get("knowledge_tags") or mj.get("format_share") is not None:
        blocks += _format_blocks(tasks, a, mj.get("format_share"), mj.get("knowledge_tags"))

    cost = mj.get("cost")
    if cost:
        blocks += [Heading(2, "Cost"), Table(["item", "value"], cost_rows(cost), "cost")]

    blocks += list(extra)
    blocks += [Heading(2, "Figures")]
    if loss_png is not None:
        blocks += [Image("training loss per stage", loss_png, "loss"),
                   Para("Training loss per optimiser step (faint) and smoothed, the stages one after another; "
                        "dashed lines mark where a stage begins. TensorBoard shows the same curves from logs/.")]
    blocks += [Image("forgetting curves", forgetting_png, "forgetting")]
    return blocks


THUMBNAIL = 160  # pixels, the longer side of an example's image in the report


def _thumbnail(source: str | None, target: Path) -> Path | None:
    """A small copy of a test image for the report (``examples/`` in the run folder); None when it is gone."""
    if not source or not Path(source).is_file():
        return None
    from PIL import Image as PILImage

    try:
        with PILImage.open(source) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMBNAIL, THUMBNAIL))
            target.parent.mkdir(parents=True, exist_ok=True)
            im.save(target)
    except OSError:
        return None
    return target


def _example_blocks(run_dir: Path, mj: dict) -> list[Block]:
    """Per task, a few answers the last stage got wrong, with their images (``matrix.json``'s ``wrong_examples``)."""
    examples = mj.get("wrong_examples")
    if not isinstance(examples, dict) or not any(examples.values()):
        return []
    blocks: list[Block] = [Heading(2, "Wrong answers after the last stage"),
                           Para("For each task, the first answers in test order that the paper protocol scores 0 "
                                "at the last stage that evaluated it, with the tag the knowledge scorer gave them.")]
    for task in mj["tasks"]:
        rows = examples.get(task) or []
        if not rows:
            continue
        blocks.append(Heading(3, task))
        for k, ex in enumerate(rows):
            thumb = _thumbnail(ex.get("image"), run_dir / "examples" / f"{task}-{k + 1}.png")
            if thumb is not None:
                blocks.append(Image(f"{task} example {k + 1}", thumb, f"example-{task}-{k + 1}"))
            question = " ".join(str(ex.get("question", "")).split())
            blocks.append(Para(f"{question} → answered {ex.get('output')!r}, expected {ex.get('reference')!r}"
                               + (f" ({ex['tag']})" if ex.get("tag") else "")
                               + ("" if thumb is not None or not ex.get("image") else
                                  f" [image not found: {ex['image']}]")))
    return blocks


def _routing_blocks(run_dir: Path, mj: dict) -> list[Block]:
    """Routing accuracy per stage and task, from the stages' ``routing.json`` (written for methods that route
    test inputs to per-task adapters: DISCO, HiDe-LLaVA); a run without any gets no section."""
    tasks, rows = mj["tasks"], []
    for j, stage in enumerate(tasks):
        path = run_dir / "stages" / f"{j + 1:02d}-{stage}" / "routing.json"
        entries = read_json(path) if path.is_file() else {}
        rows.append([(entries.get(t) or {}).get("accuracy") for t in tasks])
    if all(v is None for row in rows for v in row):
        return []
    return [Heading(2, "Routing accuracy"),
            Para("Share (%) of each task's test inputs whose top route (the adapter chosen, or the largest mixing "
                 "weight) was the task's own adapter, after each stage. The router never sees the task; "
                 f"{BLANK} = not evaluated. Counts per adapter: stages/NN-<task>/routing.json."),
            matrix_table(tasks, rows, None, "routing", scale=100.0)]


def _env_blocks(run_dir: Path) -> list[Block]:
    """The environment the run recorded (``env.json``): versions, device, seed, coin's commit."""
    path = run_dir / "env.json"
    if not path.is_file():
        return []
    try:
        env = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return [Heading(2, "Environment"), Para(f"{path.name} is not valid JSON.")]
    rows = [[str(k), BLANK if v is None else str(v)] for k, v in env.items()]
    return [Heading(2, "Environment"), Table(["item", "value"], rows, "environment")]


def _data_sources(run_dir: Path) -> dict | None:
    """The run's ``data_sources.json`` (None: a run made before it existed, or a file that is not JSON)."""
    path = run_dir / "data_sources.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
    extra = (_routing_blocks(run_dir, mj) + _example_blocks(run_dir, mj) + judge_blocks(run_dir, mj)
             + _env_blocks(run_dir))
    blocks = _run_blocks(mj, upgraded(config), hm, fc, extra=extra, loss_png=lc, sources=_data_sources(run_dir))
    md = atomic_write_text(run_dir / "report.md", to_markdown(blocks, run_dir))
    atomic_write_text(run_dir / "report.html", to_html(blocks, f"{benchmark_title(upgraded(config))} report: {name}"))
    return md
