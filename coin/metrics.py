"""Continual-learning metrics over an accuracy matrix, computed by code and not by hand.

``A[j][i]`` is the score (0..100) on task i after training task j, 0-based, T x T.
``None`` (or NaN) marks an entry that was not evaluated. Every metric returns ``None``
when an entry it needs is missing instead of quietly averaging fewer numbers, so a
partly evaluated run can never print a number that means something else.

The metric cores work on numpy stacks of matrices (``(..., T, T)``), so the bootstrap
computes 1,000 replicates with the same code as the point estimate.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

__all__ = [
    "maa",
    "bwt",
    "acc",
    "fwt",
    "forgetting",
    "plasticity",
    "summarize",
    "bootstrap_ci",
    "mean_std",
    "SeedSummary",
    "seed_summary",
]

Matrix = Sequence[Sequence[float | None]]


def _as_array(A: Matrix) -> np.ndarray:
    """Check that ``A`` is a non-empty square matrix and return it as floats with NaN."""
    try:
        rows = [list(r) for r in A]
    except TypeError:
        raise ValueError("accuracy matrix must be a list of rows") from None
    T = len(rows)
    if T == 0:
        raise ValueError("accuracy matrix is empty")
    bad = [j for j, r in enumerate(rows) if len(r) != T]
    if bad:
        raise ValueError(
            f"accuracy matrix must be square ({T} rows of {T} entries); "
            f"row {bad[0]} has {len(rows[bad[0]])} entries"
        )
    return np.array([[np.nan if v is None else float(v) for v in r] for r in rows], dtype=float)


def _out(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


# Vectorised cores: M has shape (..., T, T), NaN propagates to "missing".


def _maa_np(M: np.ndarray) -> np.ndarray:
    T = M.shape[-1]
    lower = np.tril(np.ones((T, T), dtype=bool))
    row_means = np.where(lower, M, 0.0).sum(-1) / np.arange(1, T + 1)
    return row_means.mean(-1)


def _bwt_np(M: np.ndarray, denominator: str) -> np.ndarray:
    T = M.shape[-1]
    if denominator not in ("T", "T-1"):
        raise ValueError(f"bwt denominator must be 'T' or 'T-1', got {denominator!r}")
    den = T if denominator == "T" else T - 1
    diff = (M[..., -1, :] - np.diagonal(M, axis1=-2, axis2=-1)).sum(-1)
    if den == 0:
        return np.full(diff.shape, np.nan)
    return diff / den


def _acc_np(M: np.ndarray) -> np.ndarray:
    return M[..., -1, :].mean(-1)


def maa(A: Matrix) -> float | None:
    """Mean average accuracy: the mean over stages j of the mean of A[j][0..j].

    It rewards a model that is good throughout training, not only at the end.
    """
    return _out(_maa_np(_as_array(A)))


def bwt(A: Matrix, denominator: str = "T") -> float | None:
    """Backward transfer: sum_i (A[T-1][i] - A[i][i]) divided by T (or T-1).

    The paper's tables divide by T (its last term is 0); one version of its text writes
    T-1, available as ``denominator="T-1"`` (None for a single task). Negative = forgetting.
    """
    return _out(_bwt_np(_as_array(A), denominator))


def acc(A: Matrix) -> float | None:
    """Final average accuracy: the mean of the last row."""
    return _out(_acc_np(_as_array(A)))


def plasticity(A: Matrix) -> float | None:
    """Mean of the diagonal: how well each task is learned when it is trained."""
    return _out(np.diagonal(_as_array(A)).mean())


def fwt(A: Matrix, zero_shot: Sequence[float | None] | None) -> float | None:
    """Forward transfer: mean over i >= 1 of A[i-1][i] - zero_shot[i].

    How much training on the earlier tasks helps task i before it is trained, against
    the untouched model. Needs the entries above the diagonal, which only an
    evaluate-all-tasks-after-every-stage run has; None otherwise, for T = 1 or
    without ``zero_shot``.
    """
    M = _as_array(A)
    T = M.shape[0]
    if zero_shot is None or T < 2:
        return None
    if len(zero_shot) != T:
        raise ValueError(f"zero_shot has {len(zero_shot)} entries for {T} tasks")
    z = np.array([np.nan if v is None else float(v) for v in zero_shot])
    return _out((M[np.arange(T - 1), np.arange(1, T)] - z[1:]).mean())


def forgetting(A: Matrix) -> list[float | None]:
    """Per task i: the best score before the last stage (stages i..T-2) minus the final one.

    Entries of those stages that were not evaluated are skipped (the maximum over what
    was seen); None for the last task, when the final score is missing, or when no
    earlier score is known.
    """
    M = _as_array(A)
    T = M.shape[0]
    out: list[float | None] = []
    for i in range(T):
        earlier = M[i : T - 1, i]
        earlier = earlier[~np.isnan(earlier)]
        if i == T - 1 or earlier.size == 0 or np.isnan(M[T - 1, i]):
            out.append(None)
        else:
            out.append(float(earlier.max() - M[T - 1, i]))
    return out


def summarize(
    A: Matrix, zero_shot: Sequence[float | None] | None = None, bwt_denominator: str = "T"
) -> dict:
    """Every metric of a run in one dict (what the report and the results table show)."""
    f = forgetting(A)
    head = f[:-1]
    z = None
    if zero_shot is not None and len(zero_shot) and all(v is not None for v in zero_shot):
        z = float(np.mean([float(v) for v in zero_shot]))
    return {
        "maa": maa(A),
        "bwt": bwt(A, bwt_denominator),
        "acc": acc(A),
        "plasticity": plasticity(A),
        "fwt": fwt(A, zero_shot),
        "forgetting": f,
        "mean_forgetting": (
            float(np.mean(head)) if head and all(v is not None for v in head) else None
        ),
        "zero_shot_mean": z,
    }


def bootstrap_ci(
    samples: Sequence[Sequence[Sequence[float] | None]],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap intervals for MAA, BWT and ACC over the test samples.

    ``samples[j][i]`` holds the per-sample scores (0..1) of task i after stage j, or
    None. A task's test set is the same at every stage, so each replicate draws one
    index vector per task and applies it to all stages: the intervals account for the
    correlation between stages instead of treating them as independent. A metric whose
    entries are missing maps to None.
    """
    T = len(samples)
    if T == 0 or any(len(row) != T for row in samples):
        raise ValueError(f"samples must be a square T x T nesting of sequences, got {T} rows")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    point = np.full((T, T), np.nan)
    reps = np.full((n_resamples, T, T), np.nan)
    for i in range(T):
        stages = [j for j in range(T) if samples[j][i] is not None]
        if not stages:
            continue
        vecs = [np.asarray(samples[j][i], dtype=float).ravel() for j in stages]
        n = vecs[0].size
        if n == 0 or any(v.size != n for v in vecs):
            sizes = {j: v.size for j, v in zip(stages, vecs)}
            raise ValueError(
                f"task {i} needs the same non-zero sample count at every stage, got {sizes}"
            )
        X = np.stack(vecs, axis=1)
        point[stages, i] = X.mean(0) * 100.0
        reps[:, stages, i] = _resampled_means(X, n_resamples, rng) * 100.0
    lo, hi = 100.0 * (1 - level) / 2, 100.0 * (1 + level) / 2
    out: dict[str, tuple[float, float] | None] = {}
    for name, fn in (("maa", _maa_np), ("bwt", lambda m: _bwt_np(m, "T")), ("acc", _acc_np)):
        if np.isnan(fn(point)):
            out[name] = None
        else:
            a, b = np.percentile(fn(reps), [lo, hi])
            out[name] = (float(a), float(b))
    return out


def _resampled_means(X: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``X``'s columns over bootstrap resamples of its rows: (n_resamples, cols).

    Draws are turned into per-row counts, so one matrix product handles every stage;
    replicates go in chunks to keep memory bounded for large test sets.
    """
    n = X.shape[0]
    out = np.empty((n_resamples, X.shape[1]))
    chunk = max(1, min(n_resamples, 4_000_000 // n))
    for start in range(0, n_resamples, chunk):
        r = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(r, n)) + (np.arange(r) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=r * n).reshape(r, n)
        out[start : start + r] = counts @ X / n
    return out


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over seeds; std is 0.0 for one value.

    None entries (a seed whose metric is undefined) are dropped.
    """
    vals = [float(v) for v in values if v is not None]
    if not vals:
        raise ValueError("mean_std needs at least one value")
    if len(vals) == 1:
        return vals[0], 0.0
    return float(np.mean(vals)), float(np.std(vals, ddof=1))


class SeedSummary(NamedTuple):
    """A metric over seeds: mean and std of the seeds that have it, and how many did of how many."""

    mean: float | None
    std: float | None
    n: int  # seeds whose value went into the mean
    total: int  # seeds in the group


def seed_summary(values: Sequence[float | None]) -> SeedSummary:
    """Mean and sample std over the seeds that have a value, with the count used and the total.

    A seed whose metric is undefined (None) cannot enter the mean, but it is counted in
    ``total`` so a report can say "n=2 of 3" instead of quietly averaging fewer runs.
    """
    vals = [v for v in values if v is not None]
    if not vals:
        return SeedSummary(None, None, 0, len(values))
    mean, std = mean_std(vals)
    return SeedSummary(mean, std, len(vals), len(values))
