"""Continual-learning metrics: hand-computed matrices, the paper's table, the bootstrap."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from coin.metrics import (
    acc,
    bootstrap_ci,
    bwt,
    forgetting,
    fwt,
    maa,
    mean_std,
    plasticity,
    summarize,
)

# ------------------------------------------------------------------ hand-made 3x3
A3 = [
    [80.0, 10.0, 5.0],
    [60.0, 70.0, 20.0],
    [50.0, 40.0, 90.0],
]
Z3 = [2.0, 4.0, 6.0]
# MAA  = (80 + (60+70)/2 + (50+40+90)/3) / 3 = (80 + 65 + 60) / 3 = 68.333...
# BWT  = ((50-80) + (40-70) + (90-90)) / 3 = -60/3 = -20   (T-1: -60/2 = -30)
# ACC  = (50+40+90)/3 = 60
# plasticity = (80+70+90)/3 = 80
# FWT  = ((A[0][1]-z1) + (A[1][2]-z2)) / 2 = ((10-4) + (20-6)) / 2 = 10
# forgetting: task0 max(80, 60) - 50 = 30; task1 max(70) - 40 = 30; task2 None
EXPECTED3 = {
    "maa": 205 / 3, "bwt": -20.0, "acc": 60.0, "plasticity": 80.0, "fwt": 10.0,
    "forgetting": [30.0, 30.0, None], "mean_forgetting": 30.0, "zero_shot_mean": 4.0,
}  # fmt: skip

# ------------------------------------------------------------------ hand-made 4x4
A4 = [
    [90.0, 0.0, 0.0, 0.0],
    [70.0, 80.0, 10.0, 0.0],
    [75.0, 60.0, 85.0, 20.0],
    [50.0, 65.0, 70.0, 95.0],
]
Z4 = [1.0, 2.0, 3.0, 4.0]
# MAA  rows: 90; (70+80)/2 = 75; (75+60+85)/3 = 73.333; (50+65+70+95)/4 = 70
#      (90 + 75 + 73.333 + 70) / 4 = 308.333 / 4 = 77.0833
# BWT  = ((50-90) + (65-80) + (70-85) + (95-95)) / 4 = -70/4 = -17.5   (T-1: -23.333)
# ACC  = 280/4 = 70;  plasticity = (90+80+85+95)/4 = 87.5
# FWT  = ((0-2) + (10-3) + (20-4)) / 3 = 21/3 = 7
# forgetting: task0 max(90,70,75)-50 = 40; task1 max(80,60)-65 = 15; task2 85-70 = 15
#      mean over the first three = 70/3 = 23.333;  zero-shot mean = 2.5
EXPECTED4 = {
    "maa": (90 + 75 + 220 / 3 + 70) / 4, "bwt": -17.5, "acc": 70.0, "plasticity": 87.5,
    "fwt": 7.0, "forgetting": [40.0, 15.0, 15.0, None], "mean_forgetting": 70 / 3,
    "zero_shot_mean": 2.5,
}  # fmt: skip


def _assert_summary(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        if isinstance(value, list):
            assert got[key] == [None if v is None else pytest.approx(v) for v in value], key
        else:
            assert got[key] == pytest.approx(value), key


@pytest.mark.parametrize(("A", "Z", "expected"), [(A3, Z3, EXPECTED3), (A4, Z4, EXPECTED4)])
def test_summary_by_hand(A: list, Z: list, expected: dict) -> None:
    _assert_summary(summarize(A, zero_shot=Z), expected)
    assert maa(A) == pytest.approx(expected["maa"])
    assert bwt(A) == pytest.approx(expected["bwt"])
    assert acc(A) == pytest.approx(expected["acc"])
    assert plasticity(A) == pytest.approx(expected["plasticity"])
    assert fwt(A, Z) == pytest.approx(expected["fwt"])
    want = [None if v is None else pytest.approx(v) for v in expected["forgetting"]]
    assert forgetting(A) == want


def test_bwt_denominator() -> None:
    assert bwt(A3, denominator="T-1") == pytest.approx(-30.0)
    assert bwt(A4, denominator="T-1") == pytest.approx(-70 / 3)
    assert summarize(A4, bwt_denominator="T-1")["bwt"] == pytest.approx(-70 / 3)
    assert bwt([[50.0]]) == 0.0
    assert bwt([[50.0]], denominator="T-1") is None
    with pytest.raises(ValueError, match="denominator"):
        bwt(A3, denominator="N")


def test_numpy_input_and_nan_as_missing() -> None:
    M = np.array(A4)
    assert maa(M) == pytest.approx(EXPECTED4["maa"])
    M[1, 0] = np.nan
    assert maa(M) is None
    assert acc(M) == pytest.approx(70.0)


# ------------------------------------------------------------- missing entries


def _lower(A: list) -> list:
    return [[v if i <= j else None for i, v in enumerate(row)] for j, row in enumerate(A)]


def test_lower_triangular_run_has_no_fwt_but_everything_else() -> None:
    got = summarize(_lower(A4), zero_shot=Z4)
    assert got["fwt"] is None
    expected = dict(EXPECTED4, fwt=None)
    _assert_summary(got, expected)


def test_missing_entries_make_only_dependent_metrics_none() -> None:
    A = _lower(A4)
    A[2][1] = None  # needed by MAA only; forgetting of task 1 uses what is known
    got = summarize(A)
    assert got["maa"] is None
    assert got["bwt"] == pytest.approx(-17.5)
    assert got["acc"] == pytest.approx(70.0)
    assert got["forgetting"][1] == pytest.approx(15.0)  # max(80) - 65
    assert got["zero_shot_mean"] is None and got["fwt"] is None
    A[3][0] = None  # the final score of task 0
    got = summarize(A)
    assert got["bwt"] is None and got["acc"] is None
    assert got["forgetting"][0] is None and got["mean_forgetting"] is None


def test_single_task() -> None:
    got = summarize([[42.0]], zero_shot=[1.0])
    assert got["maa"] == got["acc"] == got["plasticity"] == 42.0
    assert got["fwt"] is None and got["forgetting"] == [None] and got["mean_forgetting"] is None


@pytest.mark.parametrize(
    ("A", "message"),
    [
        ([], "empty"),
        ([[1.0, 2.0], [3.0]], "square"),
        ([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], "square"),
    ],
)
def test_bad_matrix(A: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        summarize(A)


def test_fwt_zero_shot_length() -> None:
    with pytest.raises(ValueError, match="zero_shot"):
        fwt(A3, [1.0, 2.0])
    assert fwt(A3, None) is None


# ------------------------------------------------------ the paper (CoIN table 2)
# LLaVA-1.5-7B, LoRA, sequential fine-tuning, Original (Type1) and Type2 instructions.
# The full matrices are tables 7 and 8 of the CoIN paper (arXiv v1); table 2 reports
# MCC (= MAA) 32.97 / 32.92, ACC 28.74 / 26.55 and BWT -32.62 / -33.67.
TYPE1 = [
    [82.45],
    [31.64, 49.99],
    [0.00, 0.04, 96.05],
    [4.12, 18.62, 6.42, 56.40],
    [1.13, 25.13, 4.70, 40.08, 55.45],
    [0.00, 0.00, 0.00, 7.25, 0.05, 31.27],
    [3.60, 36.83, 8.43, 50.18, 22.77, 2.49, 62.20],
    [21.26, 28.74, 10.25, 36.78, 32.45, 0.83, 42.50, 57.08],
]
TYPE2 = [
    [82.45],
    [38.15, 50.14],
    [0.96, 0.58, 96.03],
    [13.91, 15.78, 5.67, 55.65],
    [8.46, 25.17, 4.60, 38.12, 51.42],
    [0.00, 0.00, 0.00, 0.27, 0.00, 34.00],
    [9.10, 27.58, 6.62, 43.92, 19.10, 0.03, 59.17],
    [26.00, 25.38, 8.40, 33.07, 26.52, 0.10, 40.00, 52.92],
]


def _square(rows: list) -> list:
    return [row + [None] * (len(rows) - len(row)) for row in rows]


@pytest.mark.parametrize(
    ("rows", "paper"),
    [
        (TYPE1, {"maa": 32.97, "acc": 28.74, "bwt": -32.62}),
        (TYPE2, {"maa": 32.92, "acc": 26.55, "bwt": -33.67}),
    ],
)
def test_paper_table2(rows: list, paper: dict) -> None:
    A = _square(rows)
    got = summarize(A)
    for key, value in paper.items():
        assert got[key] == pytest.approx(value, abs=0.01), key
    # BWT and ACC need only the diagonal and the last row
    T = len(A)
    sparse = [[A[j][i] if (i == j or j == T - 1) else None for i in range(T)] for j in range(T)]
    assert bwt(sparse) == pytest.approx(paper["bwt"], abs=0.01)
    assert acc(sparse) == pytest.approx(paper["acc"], abs=0.01)
    assert maa(sparse) is None


def test_paper_table2_type1_diagonal_only_rows() -> None:
    diag = [82.45, 49.99, 96.05, 56.40, 55.45, 31.27, 62.20, 57.08]
    final = [21.26, 28.74, 10.25, 36.78, 32.45, 0.83, 42.50, 57.08]
    A: list = [[None] * 8 for _ in range(8)]
    for i in range(8):
        A[i][i] = diag[i]
    A[7] = final
    # (229.89 - 490.89) / 8 = -32.625 and 229.89 / 8 = 28.736
    assert bwt(A) == pytest.approx(-32.62, abs=0.01)
    assert acc(A) == pytest.approx(28.74, abs=0.01)


# ------------------------------------------------------------------- bootstrap


def _samples(T: int, n: int, seed: int = 0, lower: bool = True) -> list:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.2, 0.9, size=(T, T))
    return [
        [
            (rng.random(n) < p[j, i]).astype(float) if (i <= j or not lower) else None
            for i in range(T)
        ]
        for j in range(T)
    ]


def _point(samples: list) -> list:
    return [[None if v is None else 100.0 * float(np.mean(v)) for v in row] for row in samples]


def test_bootstrap_contains_point_and_narrows() -> None:
    widths = {}
    for n in (100, 2000):
        samples = _samples(4, n)
        point = summarize(_point(samples))
        ci = bootstrap_ci(samples, n_resamples=500, seed=1)
        for key in ("maa", "bwt", "acc"):
            lo, hi = ci[key]
            assert lo <= point[key] <= hi, (key, n)
        widths[n] = {k: ci[k][1] - ci[k][0] for k in ci}
    for key in ("maa", "bwt", "acc"):
        assert widths[2000][key] < widths[100][key] / 2, key  # ~1/sqrt(20) as wide


def test_bootstrap_is_deterministic_given_seed() -> None:
    samples = _samples(3, 200)
    assert bootstrap_ci(samples, seed=3) == bootstrap_ci(samples, seed=3)
    assert bootstrap_ci(samples, seed=3) != bootstrap_ci(samples, seed=4)


def test_bootstrap_resamples_a_task_the_same_way_at_every_stage() -> None:
    # Task scores identical at every stage: no forgetting, so every replicate's BWT is 0.
    # Independent resampling per stage would give a wide interval around 0 instead.
    rng = np.random.default_rng(0)
    vec = [(rng.random(300) < 0.6).astype(float) for _ in range(3)]
    samples = [[vec[i] if i <= j else None for i in range(3)] for j in range(3)]
    assert bootstrap_ci(samples, n_resamples=200)["bwt"] == pytest.approx((0.0, 0.0))


def test_bootstrap_missing_metric_is_none() -> None:
    samples = _samples(3, 50)
    samples[2][0] = None  # the final score of task 0: ACC and BWT undefined
    ci = bootstrap_ci(samples, n_resamples=50)
    assert ci["acc"] is None and ci["bwt"] is None and ci["maa"] is None


def test_bootstrap_errors() -> None:
    samples = _samples(2, 10)
    samples[1][0] = samples[1][0][:5]
    with pytest.raises(ValueError, match="same non-zero sample count"):
        bootstrap_ci(samples)
    with pytest.raises(ValueError, match="square"):
        bootstrap_ci([[np.ones(3)], [np.ones(3)]])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(_samples(2, 10), level=1.5)


def test_bootstrap_is_fast() -> None:
    samples = _samples(8, 1000, lower=False)
    start = time.perf_counter()
    bootstrap_ci(samples, n_resamples=1000)
    assert time.perf_counter() - start < 5.0


# ------------------------------------------------------------------ over seeds


def test_mean_std() -> None:
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([5.0]) == (5.0, 0.0)
    mean, std = mean_std([1.0, None, 3.0])
    assert mean == pytest.approx(2.0) and std == pytest.approx(math.sqrt(2))
    with pytest.raises(ValueError):
        mean_std([])


def test_seed_summary_counts_the_seeds_it_used() -> None:
    from coin.metrics import seed_summary

    s = seed_summary([1.0, None, 3.0])
    assert (s.n, s.total) == (2, 3)  # the undefined seed is counted, not silently dropped
    assert s.mean == pytest.approx(2.0) and s.std == pytest.approx(math.sqrt(2))
    assert seed_summary([None, None]) == (None, None, 0, 2)
