"""coin.stats: the tests of a difference over seeds, against closed forms and hand computations."""

from __future__ import annotations

import math

import pytest

from coin.stats import TOO_FEW, ZERO_VARIANCE, anova, betainc, f_sf, one_sample, t_sf2, welch


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 12.0])
def test_t_tails_match_the_closed_forms_for_one_and_two_degrees_of_freedom(t):
    assert t_sf2(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-12)  # Cauchy
    assert t_sf2(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-12)
    assert t_sf2(-t, 2) == pytest.approx(t_sf2(t, 2))


def test_betainc_closed_forms_and_symmetry():
    assert betainc(1, 1, 0.37) == pytest.approx(0.37)
    assert betainc(2, 1, 0.6) == pytest.approx(0.36)  # x^a when b = 1
    assert betainc(2.5, 3.5, 0.8) == pytest.approx(1 - betainc(3.5, 2.5, 0.2), abs=1e-13)
    with pytest.raises(ValueError, match="0 <= x <= 1"):
        betainc(1, 1, 1.5)


def test_f_with_one_numerator_degree_is_t_squared():
    for t, df in [(0.7, 3), (2.1, 4.6), (5.0, 10)]:
        assert f_sf(t * t, 1, df) == pytest.approx(t_sf2(t, df), rel=1e-10)


def test_welch_by_hand():
    # means 2 and 5, variances 1 and 4 over three values each: se² = 1/3 + 4/3 = 5/3
    got = welch([1, 2, 3], [3, 5, 7])
    assert got.statistic == pytest.approx(-3 / math.sqrt(5 / 3))
    assert got.df == pytest.approx((5 / 3) ** 2 / ((1 / 3) ** 2 / 2 + (4 / 3) ** 2 / 2))  # 2.94
    assert got.difference == -3
    assert got.p == pytest.approx(0.104479, abs=1e-6)  # SciPy 1.17 ttest_ind(equal_var=False) gives 0.1044789


def test_one_sample_and_pairs():
    got = one_sample([-50, -45, -55], 0.0)  # mean −50, s = 5, se = 5/√3
    assert got.statistic == pytest.approx(-50 / (5 / math.sqrt(3))) and got.df == 2
    assert got.p == pytest.approx(1 - abs(got.statistic) / math.sqrt(2 + got.statistic ** 2))
    assert got.p < 0.01


def test_anova_of_two_groups_is_the_pooled_t_test():
    a, b = [1.0, 2.0, 4.0], [3.0, 5.0, 6.5]
    pooled = ((2 * (7 / 3)) + (2 * ((3 - 14.5 / 3) ** 2 + (5 - 14.5 / 3) ** 2 + (6.5 - 14.5 / 3) ** 2) / 2)) / 4
    t = (7 / 3 - 14.5 / 3) / math.sqrt(pooled * (2 / 3))
    got = anova([a, b])
    assert got.statistic == pytest.approx(t * t) and got.df == (1, 4)
    assert got.p == pytest.approx(t_sf2(t, 4)) and got.difference == pytest.approx(14.5 / 3 - 7 / 3)


def test_an_undefined_seed_is_dropped():
    assert welch([1, None, 3], [2, 4]).difference == 2 - 3


def test_zero_variance_is_no_test_not_p_zero():
    """Constant groups carry no estimate of the spread: the t (or F) is undefined, never inf with p = 0.

    (``coin findings`` printed "t(1) = -inf, p < 0.001, reproduced" from two seeds with equal numbers.)"""
    for got in (welch([1, 1], [2, 2]), welch([1, 1], [1, 1]), one_sample([3, 3, 3], 0), one_sample([3, 3], 3),
                anova([[1, 1], [2, 2]]), anova([[1, 1], [1, 1]]),
                welch([60.0, 60.0 + 1e-12], [61.0, 61.0 - 1e-12])):  # float noise is no spread either
        assert got.undefined == ZERO_VARIANCE and math.isnan(got.p) and math.isnan(got.statistic), got
    assert welch([1, 1], [2, 2]).difference == -1  # the difference is still reported
    one_constant = welch([1, 1], [2, 3])  # one group's spread estimates the standard error: defined
    assert one_constant.undefined is None
    assert (one_constant.statistic, one_constant.df) == (pytest.approx(-3.0), pytest.approx(1.0))
    assert anova([[1, 1], [2, 2.5]]).undefined is None


def test_fewer_than_two_values_is_no_test():
    for got in (welch([1.0], [2.0, 3.0]), welch([1.0, None], [2.0, 3.0]), one_sample([None, 4.0]),
                anova([[1.0], [2.0, 3.0]])):
        assert got.undefined == TOO_FEW and math.isnan(got.p), got
    with pytest.raises(ValueError, match="at least two groups"):
        anova([[1.0, 2.0]])


def test_the_tests_are_scipys():
    from scipy import stats as sp

    a, b = [51.0, 49.5, 53.25, 50.0], [47.0, 48.5, 46.0]
    want = sp.ttest_ind(a, b, equal_var=False)
    got = welch(a, b)
    assert (got.statistic, got.df, got.p) == (pytest.approx(want.statistic), pytest.approx(want.df),
                                              pytest.approx(want.pvalue))
    want = sp.ttest_1samp(a, 50.0)
    assert one_sample(a, 50.0).p == pytest.approx(want.pvalue)
    assert anova([a, b, [40.0, 41.0]]).p == pytest.approx(sp.f_oneway(a, b, [40.0, 41.0]).pvalue)
