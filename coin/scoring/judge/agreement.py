"""How far to trust a judge: its agreement with truth alignment, and with another judge.

The paper's table 4 asks whether the LLM judge measures something real; it answered
with a user study. Here the question is answered by code on every run:

- ``truth_agreement``: do answers that truth alignment marks correct get higher judge
  scores than the ones it marks wrong? (mean judge score of each group, their gap, and
  the Spearman correlation between the two scores);
- ``agreement``: do two judges rank the same answers alike? (Spearman correlation,
  the share of answers falling in the same score bin, and Cohen's kappa on the bins,
  which discounts the agreement two judges would reach by chance).

Pure functions on score lists (None = no score: dropped pairwise, and counted).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["BIN_EDGES", "spearman", "score_bins", "agreement", "truth_agreement"]

# Judge scores (0-10) binned as low [0, 4), middle [4, 7), high [7, 10].
BIN_EDGES = (4.0, 7.0)


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (what Spearman's rho needs)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation; None for fewer than 2 pairs or a constant side."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"spearman needs two sequences of one length, got {a.size} and {b.size}")
    if a.size < 2:
        return None
    ra, rb = _ranks(a) - (a.size + 1) / 2.0, _ranks(b) - (b.size + 1) / 2.0
    den = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return None if den == 0.0 else float((ra * rb).sum() / den)


def score_bins(scores: Sequence[float], edges: Sequence[float] = BIN_EDGES) -> np.ndarray:
    """The bin index of each score: 0 below ``edges[0]``, 1 below ``edges[1]``, ..."""
    return np.searchsorted(np.asarray(edges, dtype=float), np.asarray(scores, dtype=float), side="right")


def _pairs(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray, int]:
    if len(a) != len(b):
        raise ValueError(f"paired scores must have one length, got {len(a)} and {len(b)}")
    keep = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    xs = np.array([float(x) for x, _ in keep])
    ys = np.array([float(y) for _, y in keep])
    return xs, ys, len(a) - len(keep)


def agreement(a: Sequence[float | None], b: Sequence[float | None],
              edges: Sequence[float] = BIN_EDGES) -> dict:
    """Agreement of two judges' scores (0-10) on the same answers, in the same order.

    Returns ``n`` (pairs with both scores), ``dropped``, both means, ``spearman``,
    ``bin_agreement`` (share of pairs in the same bin) and ``kappa`` (Cohen's, on the
    bins); statistics that need data they lack are None.
    """
    xs, ys, dropped = _pairs(a, b)
    out: dict = {"n": int(xs.size), "dropped": dropped, "mean_a": None, "mean_b": None,
                 "spearman": None, "bin_agreement": None, "kappa": None}
    if xs.size == 0:
        return out
    ba, bb = score_bins(xs, edges), score_bins(ys, edges)
    po = float((ba == bb).mean())
    k = len(edges) + 1
    pe = float((np.bincount(ba, minlength=k) / xs.size * np.bincount(bb, minlength=k) / xs.size).sum())
    out.update(mean_a=float(xs.mean()), mean_b=float(ys.mean()), spearman=spearman(xs, ys),
               bin_agreement=po, kappa=None if pe >= 1.0 else (po - pe) / (1.0 - pe))
    return out


def truth_agreement(judge: Sequence[float | None], truth: Sequence[float | None]) -> dict:
    """How judge scores (0-10) relate to truth-alignment scores (0-1) of the same answers.

    An answer is TA-correct when its truth-alignment score is above 0 (as the scorers'
    ``correct`` tag). Returns the counts, the mean judge score of TA-correct and TA-wrong
    answers, ``gap`` (correct minus wrong: a judge that tracks correctness has a large
    positive gap) and the Spearman correlation of the two scores.
    """
    js, ts, dropped = _pairs(judge, truth)
    correct = ts > 0
    out: dict = {"n": int(js.size), "dropped": dropped, "n_correct": int(correct.sum()),
                 "n_wrong": int((~correct).sum()), "judge_mean_correct": None, "judge_mean_wrong": None,
                 "gap": None, "spearman": spearman(js, ts) if js.size else None}
    if correct.any():
        out["judge_mean_correct"] = float(js[correct].mean())
    if (~correct).any():
        out["judge_mean_wrong"] = float(js[~correct].mean())
    if out["judge_mean_correct"] is not None and out["judge_mean_wrong"] is not None:
        out["gap"] = out["judge_mean_correct"] - out["judge_mean_wrong"]
    return out
