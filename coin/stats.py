"""Tests of a difference over seeds: Welch's t, the one-sample t and one-way ANOVA, with p-values.

A study has a handful of seeds per configuration, so whether a difference is more than seed
noise is a small-sample question. These are the textbook tests, written on numpy and the
standard library (no SciPy dependency): Student's t and Fisher's F tails both come from the
regularized incomplete beta function I_x(a, b), evaluated by its continued fraction.

- ``welch(a, b)``: two groups with unequal variances; t = (mean_a − mean_b) / sqrt(s²_a/n_a + s²_b/n_b),
  Welch–Satterthwaite degrees of freedom, two-sided p = I_{df/(df+t²)}(df/2, 1/2).
- ``one_sample(a, mu)``: t = (mean − mu) / (s / sqrt(n)), n − 1 degrees of freedom.
- ``anova(groups)``: F = between-group mean square / within-group mean square with (k − 1, N − k)
  degrees of freedom, p = I_{d2/(d2 + d1 F)}(d2/2, d1/2).

Each returns a ``Test`` (statistic, degrees of freedom, two-sided p, and the difference it
tested). With zero spread in every group the statistic is infinite (p = 0) when the means
differ and undefined (p = 1) when they do not. Fewer than two values in a group raise
``ValueError``: a test over one seed means nothing.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

__all__ = ["Test", "welch", "one_sample", "anova", "t_sf2", "f_sf", "betainc"]


class Test(NamedTuple):
    statistic: float  # t or F
    df: float | tuple[float, float]
    p: float  # two-sided for t, upper tail for F
    difference: float  # mean_a − mean_b, mean − mu, or the range of the group means (ANOVA)


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), to double precision."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side; use symmetry on the other
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail P(|T| >= |t|) of Student's t with ``df`` (possibly fractional) degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return min(1.0, betainc(df / 2.0, 0.5, df / (df + t * t)))


def f_sf(f: float, d1: float, d2: float) -> float:
    """Upper tail P(F >= f) of Fisher's F with (d1, d2) degrees of freedom."""
    if math.isinf(f):
        return 0.0
    if f <= 0:
        return 1.0
    return min(1.0, betainc(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * f)))


def _values(xs: Sequence[float | None], what: str) -> list[float]:
    vals = [float(v) for v in xs if v is not None]
    if len(vals) < 2:
        raise ValueError(f"{what} needs at least two values, got {len(vals)}")
    return vals


def _mean_var(vals: list[float]) -> tuple[float, float]:
    m = sum(vals) / len(vals)
    return m, sum((v - m) ** 2 for v in vals) / (len(vals) - 1)


def welch(a: Sequence[float | None], b: Sequence[float | None]) -> Test:
    """Welch's two-sample t test of mean(a) = mean(b); None values (undefined seeds) are dropped."""
    a, b = _values(a, "welch (first group)"), _values(b, "welch (second group)")
    (ma, va), (mb, vb) = _mean_var(a), _mean_var(b)
    qa, qb = va / len(a), vb / len(b)
    diff = ma - mb
    if qa + qb == 0.0:
        return Test(math.copysign(math.inf, diff) if diff else math.nan, math.nan, 0.0 if diff else 1.0, diff)
    t = diff / math.sqrt(qa + qb)
    df = (qa + qb) ** 2 / ((qa * qa / (len(a) - 1) if qa else 0.0) + (qb * qb / (len(b) - 1) if qb else 0.0))
    return Test(t, df, t_sf2(t, df), diff)


def one_sample(a: Sequence[float | None], mu: float = 0.0) -> Test:
    """The one-sample t test of mean(a) = mu (for paired data, pass the differences)."""
    a = _values(a, "one_sample")
    m, v = _mean_var(a)
    diff = m - mu
    if v == 0.0:
        return Test(math.copysign(math.inf, diff) if diff else math.nan, len(a) - 1, 0.0 if diff else 1.0, diff)
    t = diff / math.sqrt(v / len(a))
    return Test(t, len(a) - 1, t_sf2(t, len(a) - 1), diff)


def anova(groups: Sequence[Sequence[float | None]]) -> Test:
    """One-way ANOVA: do the groups' means differ? ``difference`` is max − min of the group means."""
    gs = [_values(g, f"anova (group {k})") for k, g in enumerate(groups)]
    if len(gs) < 2:
        raise ValueError(f"anova needs at least two groups, got {len(gs)}")
    n, k = sum(len(g) for g in gs), len(gs)
    means = [sum(g) / len(g) for g in gs]
    grand = sum(sum(g) for g in gs) / n
    between = sum(len(g) * (m - grand) ** 2 for g, m in zip(gs, means)) / (k - 1)
    within = sum((v - m) ** 2 for g, m in zip(gs, means) for v in g) / (n - k)
    spread = max(means) - min(means)
    if within == 0.0:
        return Test(math.inf if between else math.nan, (k - 1, n - k), 0.0 if between else 1.0, spread)
    f = between / within
    return Test(f, (k - 1, n - k), f_sf(f, k - 1, n - k), spread)
