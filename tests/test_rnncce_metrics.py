"""Devooght's sequence metrics on a hand-worked example, through RecBole's collector and evaluator.

Three evaluation rows, top-3 lists and goals (first goal item first):

    row 0: top-3 [5, 9, 1]   goal [9, 1, 4]  -> hits . x x
    row 1: top-3 [2, 3, 4]   goal [2, 4]     -> hits x . x
    row 2: top-3 [6, 8, 10]  goal [11]       -> no hit

Training popularity: item 5 (100), items 2 and 7 (90 each, tie -> smaller id 2), others
fewer; 200 real items -> the 1% blockbusters are {5, 2}.
"""

from __future__ import annotations

import math
import pytest
import torch
from recbole.config import Config as RecBoleConfig
from recbole.data.interaction import Interaction
from recbole.evaluator import Collector, Evaluator

import recbole_ext  # noqa: F401  (registers the metrics)
from recbole_ext.evaluator.sequence_metrics import Blockbuster_Share, ItemPopularity

N_ITEMS = 201  # 200 real items + RecBole's padding id 0
TOP3 = [[5, 9, 1], [2, 3, 4], [6, 8, 10]]
GOALS = [[9, 1, 4], [2, 4], [11]]
COUNTS = ItemPopularity({5: 100, 7: 90, 2: 90, 1: 10, 9: 3, 4: 2}, N_ITEMS)


def evaluate(metrics: list[str]) -> dict:
    config = {"metrics": metrics, "topk": [1, 3], "metric_decimal_place": 4,
              "eval_args": {"mode": "full"}, "device": torch.device("cpu"), "LABEL_FIELD": "label"}
    collector = Collector(config)
    collector.data_struct.set("data.count_items", COUNTS)
    scores = torch.zeros(len(TOP3), N_ITEMS)
    for row, items in enumerate(TOP3):
        scores[row, items] = torch.tensor([3.0, 2.0, 1.0])
    positive_u = torch.tensor([row for row, goal in enumerate(GOALS) for _ in goal])
    positive_i = torch.tensor([item for goal in GOALS for item in goal])
    first_goal = Interaction({"label": torch.tensor([goal[0] for goal in GOALS], dtype=torch.float)})
    collector.eval_batch_collect(scores, first_goal, positive_u, positive_i)
    return Evaluator(config).evaluate(collector.get_data_struct())


def test_sps_counts_only_the_first_goal_item():
    result = evaluate(["sps"])
    assert result["sps@1"] == pytest.approx(1 / 3, abs=1e-4)  # only row 1 has its first goal on top
    assert result["sps@3"] == pytest.approx(2 / 3, abs=1e-4)  # rows 0 and 1


def test_user_and_item_coverage():
    result = evaluate(["user_coverage", "item_coverage"])
    assert result["user_coverage@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert result["user_coverage@3"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["item_coverage@1"] == 1.0  # {2}
    assert result["item_coverage@3"] == 4.0  # {9, 1, 2, 4}


def test_blockbuster_share():
    assert sorted(Blockbuster_Share.blockbusters(COUNTS).tolist()) == [2, 5]
    result = evaluate(["blockbuster_share"])
    assert result["blockbuster_share@1"] == 1.0  # the single correct item, 2, is a blockbuster
    assert result["blockbuster_share@3"] == 0.25  # correct: 9, 1, 2, 4 -> one blockbuster


def test_recbole_recall_precision_ndcg_match_devooght_definitions_on_the_whole_goal():
    # RecBole's NDCG uses np.float, which its Config aliases on construction (no Config here).
    RecBoleConfig.compatibility_settings(None)
    result = evaluate(["recall", "precision", "ndcg"])
    # recall: |goal ∩ top3| / |goal|; precision: |goal ∩ top3| / 3
    assert result["recall@3"] == pytest.approx((2 / 3 + 2 / 2 + 0) / 3, abs=1e-4)
    assert result["precision@3"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3, abs=1e-4)
    # ndcg with binary gains and ideal DCG over min(k, |goal|) positions
    d = [1 / math.log2(i + 2) for i in range(3)]
    row0 = (d[1] + d[2]) / (d[0] + d[1] + d[2])
    row1 = (d[0] + d[2]) / (d[0] + d[1])
    assert result["ndcg@3"] == pytest.approx((row0 + row1 + 0) / 3, abs=1e-4)
    assert result["ndcg@1"] == pytest.approx(1 / 3, abs=1e-4)
