"""precision@p% (NRP paper, Eq. 8) on hand-worked examples, and through RecBole's evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recbole.evaluator.collector import DataStruct

from recbole_ext.evaluator.rating_metrics import (
    RatingPrecision,
    RatingPrecisionInclusive,
    precision_at_percent,
)


def test_hand_worked_example():
    # user 1 rated 4 items; p = 50% -> k = 2. True top 2: items a (5), b (4).
    # predicted top 2: a (4.9), c (4.5) -> overlap {a} -> 1/2.
    # user 2 rated 3 items; k = ceil(1.5) = 2. True top 2: x (5), y (3);
    # predicted top 2: x, y -> 2/2.
    users = np.array([1, 1, 1, 1, 2, 2, 2])
    truth = np.array([5, 4, 2, 1, 5, 3, 1], dtype=float)
    scores = np.array([4.9, 3.0, 4.5, 1.0, 4.0, 3.5, 2.0])
    assert precision_at_percent(users, truth, scores, 50) == pytest.approx((0.5 + 1.0) / 2)
    # p = 25%: user 1 k = 1 (a vs a: 1/1); user 2 k = 1 (x vs x: 1/1)
    assert precision_at_percent(users, truth, scores, 25) == pytest.approx(1.0)
    # p = 100%: every rated item is relevant and retrieved
    assert precision_at_percent(users, truth, scores, 100) == pytest.approx(1.0)


def test_order_of_rows_and_interleaved_users_do_not_matter():
    users = np.array([1, 1, 1, 1, 2, 2, 2])
    truth = np.array([5, 4, 2, 1, 5, 3, 1], dtype=float)
    scores = np.array([4.9, 3.0, 4.5, 1.0, 1.0, 3.5, 2.0])  # user 2: predicted top 2 = y, z -> 1/2
    expected = (0.5 + 0.5) / 2
    perm = np.array([4, 0, 6, 2, 1, 5, 3])
    assert precision_at_percent(users, truth, scores, 50) == pytest.approx(expected)
    assert precision_at_percent(users[perm], truth[perm], scores[perm], 50) == pytest.approx(expected)


def test_ties_in_true_ratings_follow_split_order():
    # two items rated 4; k = 1; the first in the split is the relevant one
    users = np.array([7, 7])
    truth = np.array([4.0, 4.0])
    assert precision_at_percent(users, truth, np.array([1.0, 2.0]), 50) == 0.0
    assert precision_at_percent(users, truth, np.array([2.0, 1.0]), 50) == 1.0


def test_inclusive_ties_count_every_item_rated_as_high_as_the_cut_off():
    # true ratings a=5, b=4, c=4, d=1; p = 50% -> k = 2; the k-th highest true rating is 4.
    # predicted top 2: c, a. order: relevant {a, b} -> 1/2; inclusive: relevant {a, b, c} -> 2/2.
    users = np.array([3, 3, 3, 3])
    truth = np.array([5.0, 4.0, 4.0, 1.0])
    scores = np.array([4.0, 1.0, 4.5, 2.0])
    assert precision_at_percent(users, truth, scores, 50) == pytest.approx(0.5)
    assert precision_at_percent(users, truth, scores, 50, ties="inclusive") == pytest.approx(1.0)
    # retrieved stays k items: predicting d above b still costs a hit
    scores = np.array([4.0, 1.0, 0.5, 2.0])
    assert precision_at_percent(users, truth, scores, 50, ties="inclusive") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="ties"):
        precision_at_percent(users, truth, scores, 50, ties="random")


class _Config(dict):
    def __getitem__(self, key):
        return self.get(key)


def test_metric_class_reads_the_collected_struct():
    metric = RatingPrecision(_Config(rating_precision_percents=[50, 25], metric_decimal_place=4))
    data = DataStruct()
    data.set("data.uid", torch.tensor([1, 1, 1, 1, 2, 2, 2]))
    data.set("data.label", torch.tensor([5, 4, 2, 1, 5, 3, 1], dtype=torch.float))
    data.set("rec.score", torch.tensor([4.9, 3.0, 4.5, 1.0, 4.0, 3.5, 2.0]))
    assert metric.calculate_metric(data) == {"ratingprecision@50": 0.75, "ratingprecision@25": 1.0}
    inclusive = RatingPrecisionInclusive(_Config(rating_precision_percents=[50], metric_decimal_place=4))
    assert inclusive.calculate_metric(data) == {"ratingprecisioninclusive@50": 0.75}  # no ties at the cut-off


def test_bad_percent_is_rejected():
    with pytest.raises(ValueError, match="rating_precision_percents"):
        RatingPrecision(_Config(rating_precision_percents=[0], metric_decimal_place=4))
