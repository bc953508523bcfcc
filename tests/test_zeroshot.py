"""Zero-shot's rows are the base model's scores: BWT 0, ACC their mean, and MAA not ACC (early tasks weigh more)."""

from __future__ import annotations

import pytest

from coin.methods import build_method
from coin.metrics import acc, bwt, maa


def test_zero_shot_trains_on_nothing_and_its_maa_is_not_its_acc():
    assert build_method("zeroshot").train_data(None, ["a", "b"]) == []
    z = [40.0, 10.0, 0.0]  # the base model's score per task, the same in every row
    rows = [[z[j] if j <= i else None for j in range(3)] for i in range(3)]
    assert bwt(rows) == 0
    assert acc(rows) == pytest.approx(sum(z) / 3)  # 16.67
    assert maa(rows) == pytest.approx((40 + 25 + 50 / 3) / 3)  # 27.22: task 1 enters every stage's mean
    assert maa(rows) != pytest.approx(acc(rows))
