"""The Reasoning-Capability sections of a run's report, from what ``coin judge`` wrote into the run folder.

One section per judge in ``<run>/judge/*/rc_matrix.json`` (its matrix, its metrics next to
truth alignment's, its agreement with truth alignment), then the agreement between judges
from ``<run>/judge/agreement.json``. A run nobody judged gets no section.
"""

from __future__ import annotations

from pathlib import Path

from coin.io import read_json
from coin.report.document import Block, Heading, Para, Table
from coin.report.format import BLANK, fmt, matrix_table
from coin.report.load import run_metrics

__all__ = ["judge_blocks"]


def _decoding(judge: dict) -> str:
    """How the judge decoded: greedy (coin's protocol; files written before protocols existed) or sampled."""
    sampling = judge.get("sampling") or {}
    if not sampling.get("temperature"):
        return "temperature 0"
    settings = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sampling.items())
    return (f"the original's protocol ({judge.get('protocol')}): sampled at {settings}, so a second grading "
            "gives other scores")


def _rounding(judge: dict) -> str:
    return ", rounded to an integer as the original did" if judge.get("protocol") == "paper" else ""


def judge_blocks(run_dir: Path, mj: dict) -> list[Block]:
    """The judges' sections of the report of the run in ``run_dir`` (``mj``: its ``matrix.json``)."""
    blocks: list[Block] = []
    ta = run_metrics(mj)
    for k, path in enumerate(sorted((run_dir / "judge").glob("*/rc_matrix.json"))):
        rc = read_json(path)
        judge, rm, tot = rc["judge"], rc.get("metrics") or {}, rc["counts"]["total"]
        n = sum(tot.values())
        blocks += [
            Heading(2, f"Reasoning Capability: {judge['name']}"),
            Para(f"Judge {judge['id']}, prompt {judge['prompt_version']}, {_decoding(judge)}. Task score = sum of "
                 f"judge scores (0–10) / (10 N) × 100{_rounding(judge)}. Of {n} answers: {tot['ok']} scored, "
                 f"{tot['unparsable']} "
                 f"unparsable and {tot['out_of_range']} out of range (both score 0), {tot['missing']} missing "
                 f"predictions (0), {tot['failed']} failed and {tot['pending']} not yet judged ({BLANK} cells)."),
            matrix_table(rc["tasks"], rc["matrix"], rc.get("zero_shot"), f"rc-matrix-{k}"),
            Table(["metric", "Truth Alignment", "Reasoning Capability"],
                  [["MAA", fmt(ta.get("maa")), fmt(rm.get("maa"))],
                   ["BWT", fmt(ta.get("bwt"), signed=True), fmt(rm.get("bwt"), signed=True)],
                   ["ACC", fmt(ta.get("acc")), fmt(rm.get("acc"))]], f"rc-metrics-{k}"),
            Heading(3, "Agreement with truth alignment"),
            Para("Mean judge score (0–10) of the answers truth alignment marks correct and wrong, over all "
                 "stages; a judge that tracks correctness shows a large positive gap."),
        ]
        rows = [[task, str(a["n"]), str(a["n_correct"]), fmt(a["judge_mean_correct"]), str(a["n_wrong"]),
                 fmt(a["judge_mean_wrong"]), fmt(a["gap"], signed=True), fmt(a["spearman"])]
                for task, a in rc["truth_agreement"].items()]
        blocks.append(Table(["task", "n", "TA-correct", "judge mean", "TA-wrong", "judge mean", "gap",
                             "Spearman"], rows, f"rc-truth-{k}"))
    agree_path = run_dir / "judge" / "agreement.json"
    pairs = read_json(agree_path)["pairs"] if agree_path.is_file() else []
    if pairs:
        rows = [[p["a"], p["b"], task, str(a["n"]), fmt(a["spearman"]),
                 fmt(None if a["bin_agreement"] is None else 100 * a["bin_agreement"], 1), fmt(a["kappa"])]
                for p in pairs for task, a in [("all", p["all"]), *p["tasks"].items()]]
        blocks += [Heading(2, "Agreement between judges"),
                   Para("Answers both judges scored; bins are 0–4, 4–7 and 7–10; kappa is Cohen's on the bins."),
                   Table(["judge A", "judge B", "task", "n", "Spearman", "same bin %", "kappa"], rows,
                         "judge-agreement")]
    return blocks
