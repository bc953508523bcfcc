"""Tests of a difference over seeds: Welch's t, the one-sample t and one-way ANOVA, by SciPy.

A study has a handful of seeds per configuration, so whether a difference is more than seed
noise is a small-sample question. The statistics and p-values are SciPy's
(``scipy.stats.ttest_ind(..., equal_var=False)``, ``ttest_1samp``, ``f_oneway``); this module adds
what a table of findings needs around them:

- ``welch(a, b)``: two groups with unequal variances (Welch–Satterthwaite degrees of freedom);
- ``one_sample(a, mu)``: mean(a) against ``mu``, n − 1 degrees of freedom (for pairs, pass the differences);
- ``anova(groups)``: do the groups' means differ? F with (k − 1, N − k) degrees of freedom.

Each returns a ``Test`` (statistic, degrees of freedom, p, the difference it tested). A test that
cannot be made is *undefined*, never significant: ``Test.undefined`` says why (``TOO_FEW``: a group
with fewer than two values, as a test over one seed means nothing; ``ZERO_VARIANCE``: every group
constant, so no spread to measure the difference against), and its statistic and p are NaN. Where
SciPy answers t = ±inf and p = 0 for two constant groups with different means, that is a division by a
zero spread estimated from two or three seeds (CoIN-Synth's two tasks at 20% data gave equal numbers at
both seeds), not evidence. ``None`` values (a seed whose metric is undefined) are dropped first.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Sequence

from scipy import special
from scipy import stats as sp

__all__ = ["TOO_FEW", "ZERO_VARIANCE", "Test", "welch", "one_sample", "anova", "t_sf2", "f_sf", "betainc"]

TOO_FEW = "fewer than two values"
ZERO_VARIANCE = "zero variance"
_REL_TOL = 1e-9  # values this close (relative to their size, at least 1) are equal: float noise is no spread


class Test(NamedTuple):
    statistic: float  # t or F; NaN when undefined
    df: float | tuple[float, float]
    p: float  # two-sided for t, upper tail for F; NaN when undefined
    difference: float  # mean_a − mean_b, mean − mu, or the range of the group means (ANOVA)
    undefined: str | None = None  # why no test could be made (TOO_FEW, ZERO_VARIANCE); None: a test


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail P(|T| >= |t|) of Student's t with ``df`` (possibly fractional) degrees of freedom."""
    return float(min(1.0, 2.0 * sp.t.sf(abs(t), df)))


def f_sf(f: float, d1: float, d2: float) -> float:
    """Upper tail P(F >= f) of Fisher's F with (d1, d2) degrees of freedom."""
    return float(sp.f.sf(f, d1, d2)) if f > 0 else 1.0


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got {x}")
    return float(special.betainc(a, b, x))


def _values(xs: Sequence[float | None]) -> list[float]:
    return [float(v) for v in xs if v is not None]


def _mean(vals: list[float]) -> float:
    return sum(vals) / len(vals) if vals else math.nan


def _constant(vals: list[float]) -> bool:
    return max(vals) - min(vals) <= _REL_TOL * max(1.0, max(abs(v) for v in vals))


def _undefined(why: str, df, difference: float) -> Test:
    return Test(math.nan, df, math.nan, difference, why)


def _quiet(test, *args, **kwargs):
    """SciPy's test, without its "catastrophic cancellation" warning for a group of equal values (one
    constant group beside one that varies is a defined Welch test: the other group's spread is the error)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        return test(*args, **kwargs)


def welch(a: Sequence[float | None], b: Sequence[float | None]) -> Test:
    """Welch's two-sample t test of mean(a) = mean(b) (``scipy.stats.ttest_ind(a, b, equal_var=False)``)."""
    a, b = _values(a), _values(b)
    diff = _mean(a) - _mean(b)
    if len(a) < 2 or len(b) < 2:
        return _undefined(TOO_FEW, math.nan, diff)
    if _constant(a) and _constant(b):
        return _undefined(ZERO_VARIANCE, math.nan, diff)
    r = _quiet(sp.ttest_ind, a, b, equal_var=False)
    return Test(float(r.statistic), float(r.df), float(r.pvalue), diff)


def one_sample(a: Sequence[float | None], mu: float = 0.0) -> Test:
    """The one-sample t test of mean(a) = mu (``scipy.stats.ttest_1samp``)."""
    a = _values(a)
    diff = _mean(a) - mu
    if len(a) < 2:
        return _undefined(TOO_FEW, math.nan, diff)
    if _constant(a):
        return _undefined(ZERO_VARIANCE, len(a) - 1, diff)
    r = sp.ttest_1samp(a, mu)
    return Test(float(r.statistic), len(a) - 1, float(r.pvalue), diff)


def anova(groups: Sequence[Sequence[float | None]]) -> Test:
    """One-way ANOVA (``scipy.stats.f_oneway``): do the groups' means differ? ``difference`` is max − min of
    the group means."""
    if len(groups) < 2:
        raise ValueError(f"anova needs at least two groups, got {len(groups)}")
    gs = [_values(g) for g in groups]
    means = [_mean(g) for g in gs]
    spread = max(means) - min(means) if all(g for g in gs) else math.nan
    n, k = sum(len(g) for g in gs), len(gs)
    if any(len(g) < 2 for g in gs):
        return _undefined(TOO_FEW, (k - 1, n - k), spread)
    if all(_constant(g) for g in gs):
        return _undefined(ZERO_VARIANCE, (k - 1, n - k), spread)
    r = _quiet(sp.f_oneway, *gs)
    return Test(float(r.statistic), (k - 1, n - k), float(r.pvalue), spread)
