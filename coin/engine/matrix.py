"""``matrix.json`` from a run's stages: every column (paper, strict, knowledge), metrics, intervals, cards.

A finished stage's ``scores.json`` and stored predictions are all a matrix needs, so a run
folder is assembled again whenever it continues, and a folder written before a scoring
change reports under today's rules (its stages are rescored from the stored outputs first).
"""

from __future__ import annotations

from pathlib import Path

from coin import metrics
from coin.config import RunConfig
from coin.benchmarks.load import BenchmarkData
from coin.engine.evaluate import rescore_stage
from coin.engine.limits import limit_card
from coin.tasks.knowledge import answer_spaces
from coin.io import atomic_write_json, read_json
from coin.models import BACKBONES

__all__ = ["CI_KIND", "answer_spaces_of", "write_matrix", "wrong_examples"]


def answer_spaces_of(bench: BenchmarkData) -> dict[str, frozenset[str]] | None:
    """Every task's answer space, from its training answers (for the knowledge column); None without them."""
    train = getattr(bench, "train", None)
    if not train:
        return None
    return answer_spaces({t: [s.answer for s in samples] for t, samples in train.items()})


def _per_sample(stage_dir: Path, task: str, column: str = "paper") -> list[float]:
    """Per-sample scores of one column; rows written before protocols existed hold only ``score`` (paper)."""
    from coin.io import read_jsonl

    return [float(r["scores"][column] if "scores" in r else r["score"])
            for r in read_jsonl(stage_dir / "predictions" / f"{task}.jsonl")]


def _entry(entry: dict, column: str, key: str):
    """``key`` of a scores.json entry under ``column``; an entry without protocols is the paper column."""
    if "protocols" in entry:  # a column the task has no entry in (knowledge of a caption task) is None
        return entry["protocols"].get(column, {}).get(key)
    return entry[key] if column == "paper" else None


def _column(cfg: RunConfig, order: list[str], stages: list[tuple[Path, dict]], zero: dict | None,
            column: str) -> dict:
    """One protocol column's matrix, zero-shot row, metrics, intervals and format shares."""
    T = len(order)
    matrix = [[None] * T for _ in range(T)]
    fmt = [[None] * T for _ in range(T)]
    samples: list[list] = [[None] * T for _ in range(T)]
    for j, (d, scores) in enumerate(stages):
        for i, task in enumerate(order):
            if task in scores and _entry(scores[task], column, "score") is not None:
                matrix[j][i] = _entry(scores[task], column, "score")
                fmt[j][i] = _entry(scores[task], column, "format_share")
                samples[j][i] = _per_sample(d, task, column)
    zero_row = None if zero is None else [_entry(zero[t], column, "score") if t in zero else None for t in order]
    summary = metrics.summarize(matrix, zero_shot=zero_row)
    ci = None
    if cfg.eval.bootstrap > 0:
        ci = {k: None if v is None else list(v)
              for k, v in metrics.bootstrap_ci(samples, n_resamples=cfg.eval.bootstrap, seed=cfg.seed).items()}
    from coin.methods import METHODS

    if METHODS.get(cfg.method).final_row_only:
        # e.g. multi-task: earlier rows are not this method's model, so only ACC means anything
        for key in ("maa", "bwt", "plasticity", "fwt", "mean_forgetting"):
            summary[key] = None
        summary["forgetting"] = [None] * len(order)
        if ci is not None:
            ci["maa"] = ci["bwt"] = None
    return {"matrix": matrix, "zero_shot": zero_row, "metrics": summary, "ci": ci, "format_share": fmt}


def _last_tags(stages: list[tuple[Path, dict]], order: list[str], column: str) -> dict:
    """Each task's tag counts under ``column`` at the last stage that evaluated it."""
    out: dict = {}
    for _, scores in stages:
        for task in order:
            tags = scores.get(task, {}).get("protocols", {}).get(column, {}).get("tags")
            if tags is not None:
                out[task] = tags
    return out


EXAMPLES_PER_TASK = 3  # wrong answers per task the report shows, with their images


def _reference(item) -> str:
    """What a test item is scored against, as one line (its answer, its first human answer, or its box)."""
    for value in (item.answer, (item.answers or [None])[0], item.answer_bbox):
        if value not in (None, "", []):
            return str(value)
    return ""


def _item(record):
    """A test item; a plain JSON record (an older caller's) read as one."""
    from coin.scoring.item import TestItem

    return TestItem.from_row(record) if isinstance(record, dict) else record


def wrong_examples(stages: list[tuple[Path, dict]], order: list[str], bench: BenchmarkData,
                   k: int = EXAMPLES_PER_TASK) -> dict:
    """Per task, the first ``k`` answers (in test order) the paper protocol scores 0 at the last stage that
    evaluated it: the question, the answer given, the reference, the knowledge tag and the image's path."""
    from coin.io import read_jsonl

    last: dict[str, Path] = {}
    for d, scores in stages:
        last.update({t: d for t in order if t in scores})
    out: dict = {}
    for task, d in last.items():
        path = d / "predictions" / f"{task}.jsonl"
        items = {str(r.question_id): r for r in map(_item, (bench.test or {}).get(task, []))}
        if not path.is_file() or not items:
            continue
        picked = []
        for row in read_jsonl(path):
            score = row["scores"]["paper"] if "scores" in row else row.get("score")
            item = items.get(str(row["question_id"]))
            if score is None or float(score) > 0 or item is None:
                continue
            picked.append({"question_id": str(row["question_id"]), "question": item.text,
                           "output": row.get("output"), "reference": _reference(item),
                           "tag": (row.get("tags") or {}).get("knowledge") or row.get("tag"),
                           "image": item.image_path})
            if len(picked) == k:
                break
        out[task] = picked
    return out


def _latest_entries(zero: dict | None, stages: list[tuple[Path, dict]]) -> dict:
    """Each task's scores.json entry from the last stage that evaluated it (the zero-shot row first)."""
    out: dict = dict(zero or {})
    for _, scores in stages:
        out.update(scores)
    return out


CI_KIND = "test-set bootstrap of one run"  # what the intervals are: not seeds, not training randomness


def write_matrix(out: Path, cfg: RunConfig, order: list[str], stage_dirs: list[Path], zero_dir: Path | None,
             cost: dict, bench: BenchmarkData | None = None) -> dict:
    """Build ``matrix.json`` from the stages: both protocol columns and the protocol card.

    The top-level ``matrix``, ``zero_shot``, ``metrics``, ``ci`` and ``format_share`` are the
    ``paper`` protocol's (what readers of older files read); ``strict`` holds the same keys
    for coin's stricter rules; ``protocol_card`` says per task how each column was scored.
    With ``bench`` (a run), finished stages are first rescored from their stored outputs,
    so a folder resumed after a scoring change reports today's rules.
    """
    if bench is not None:
        spaces = answer_spaces_of(bench)
        for d in [zero_dir, *stage_dirs] if zero_dir is not None else stage_dirs:
            rescore_stage(d, bench.test, bench.protocol, spaces)
    stages = [(d, read_json(d / "scores.json")) for d in stage_dirs]
    zero = read_json(zero_dir / "scores.json") if zero_dir is not None else None
    from coin.tasks.protocol_sets import protocol_card, with_backbone

    backbone = BACKBONES.get(cfg.model.name)
    paper = _column(cfg, order, stages, zero, "paper")
    strict = _column(cfg, order, stages, zero, "strict")
    has_knowledge = any("knowledge" in e.get("protocols", {}) for _, sc in stages for e in sc.values())
    result = {
        "tasks": order, **paper, "protocol": "paper", "ci_kind": CI_KIND,
        "strict": strict,
        "protocol_card": protocol_card(order, with_backbone(cfg.eval.protocol, backbone.protocols),
                                       cfg.eval.image_mode if backbone.image_modes else None),
        "generation_card": limit_card(order, cfg.eval.max_new_tokens, _latest_entries(zero, stages)),
        "model_card": {"backbone": cfg.model.name, "deviations": list(backbone.deviations)},
        "knowledge": _column(cfg, order, stages, zero, "knowledge") if has_knowledge else None,
        "knowledge_tags": _last_tags(stages, order, "knowledge") if has_knowledge else None,
        "seed": cfg.seed, "method": cfg.method, "run_name": cfg.name or out.name, "cost": cost,
    }
    if bench is not None:  # the report shows a few of them with their images
        result["wrong_examples"] = wrong_examples(stages, order, bench)
    atomic_write_json(out / "matrix.json", result)
    return result
