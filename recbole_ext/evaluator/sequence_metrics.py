r"""Devooght & Bersini's sequence-recommendation metrics, registered into RecBole.

Reference: R. Devooght and H. Bersini, "Long and Short-Term Recommendations with
Recurrent Neural Networks", UMAP 2017 (arXiv:1608.07400); definitions from their
``helpers/evaluation.py`` (https://github.com/rdevooght/sequence-based-recommendations).

Each test user's chronological sequence is split in half: the model sees the first half
("viewed") and its top-k list is scored against the second half ("goal"). With the
Devooght dataloaders (:mod:`recbole_ext.data.devooght`) the RecBole positives of a row are
the whole goal, so RecBole's own ``recall`` (``|goal ∩ top-k| / |goal|``), ``precision``
(``|goal ∩ top-k| / k``) and ``ndcg`` (binary gains, ideal DCG over ``min(k, |goal|)``
positions) already are Devooght's definitions and keep their names. Added here:

- ``sps`` (short-term prediction success): fraction of rows whose *first* goal item is in
  the top-k. It reads the first goal item from the row's ``LABEL_FIELD``, which the Devooght
  evaluation loader fills; under RecBole's leave-one-out protocol use ``hit`` (identical
  when the goal is a single item).
- ``user_coverage``: fraction of rows with at least one goal item in the top-k (equal to
  RecBole's ``hit`` with several positives; kept under Devooght's name).
- ``item_coverage``: the *number* of distinct items recommended correctly at least once
  (RecBole's ``itemcoverage`` is the fraction of items ever recommended, a different thing).
- ``blockbuster_share``: among all correct recommendations, the share that are among the
  1% most popular training items (``max(1, n_items // 100)`` items; the ``max`` avoids an
  empty set on datasets with fewer than 100 items). Lower means less popularity bias.
  It needs the training popularity as an :class:`ItemPopularity` (the Devooght dataset's
  ``item_counter``): RecBole 1.2.1's ``Collector.get_data_struct`` calls ``.cpu()`` on every
  collected value, so the plain ``Counter``/``int`` it collects for ``data.count_items`` /
  ``data.num_items`` crash evaluation (RecBole's own ``itemcoverage`` and
  ``averagepopularity`` fail the same way).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import torch
from recbole.evaluator.base_metric import AbstractMetric, TopkMetric
from recbole.utils import EvaluatorType

from recbole_ext.evaluator.register import register_metric


class ItemPopularity(Counter):
    """Training interaction count per item id that survives RecBole's collector.

    Args:
        counts: item id -> number of training interactions.
        num_items: number of item ids including RecBole's padding id 0.
    """

    def __init__(self, counts: Mapping[int, int], num_items: int) -> None:
        super().__init__(counts)
        self.num_items = num_items

    def __reduce__(self):
        # Counter pickles/deep-copies as cls(dict); num_items must travel too.
        return self.__class__, (dict(self), self.num_items)

    def cpu(self) -> "ItemPopularity":
        # Collector.get_data_struct moves every collected value to the CPU.
        return self


def _correct_items(dataobject, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Item ids in the top-k lists and whether each is a goal item, both ``[n_rows, k]``."""
    items = dataobject.get("rec.items")[:, :k].numpy()
    hits = dataobject.get("rec.topk")[:, :k].numpy().astype(bool)
    return items, hits


@register_metric
class Sps(AbstractMetric):
    r"""Short-term prediction success: :math:`\frac{1}{|U|}\sum_u [g_{u,1} \in \hat R_k(u)]`."""

    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.items", "data.label"]

    def __init__(self, config):
        super().__init__(config)
        self.topk = config["topk"]

    def calculate_metric(self, dataobject) -> dict:
        items = dataobject.get("rec.items")  # [n_rows, max_k]
        first_goal = dataobject.get("data.label").view(-1, 1).to(items.dtype)
        found = torch.cumsum((items == first_goal).int(), dim=1) > 0  # found within top-j
        return {f"sps@{k}": round(found[:, k - 1].float().mean().item(), self.decimal_place)
                for k in self.topk}


@register_metric
class User_Coverage(TopkMetric):  # noqa: N801 -- the registry key is the lower-cased class name
    r"""Fraction of rows with at least one goal item in the top-k."""

    def calculate_metric(self, dataobject) -> dict:
        pos_index, _ = self.used_info(dataobject)
        return self.topk_result("user_coverage", np.cumsum(pos_index, axis=1) > 0)


@register_metric
class Item_Coverage(AbstractMetric):  # noqa: N801
    r"""Number of distinct items that are a correct recommendation for at least one row."""

    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.items", "rec.topk"]

    def __init__(self, config):
        super().__init__(config)
        self.topk = config["topk"]

    def calculate_metric(self, dataobject) -> dict:
        result = {}
        for k in self.topk:
            items, hits = _correct_items(dataobject, k)
            result[f"item_coverage@{k}"] = float(len(np.unique(items[hits])))
        return result


@register_metric
class Blockbuster_Share(AbstractMetric):  # noqa: N801
    r"""Share of correct recommendations that are among the 1% most popular training items."""

    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.items", "rec.topk", "data.count_items"]
    smaller = True

    def __init__(self, config):
        super().__init__(config)
        self.topk = config["topk"]

    @staticmethod
    def blockbusters(popularity: ItemPopularity) -> np.ndarray:
        """Ids of the ``max(1, (num_items - 1) // 100)`` most frequent training items.

        ``num_items`` counts RecBole's padding id 0; ties are broken by the smaller id.
        """
        n_top = max(1, (popularity.num_items - 1) // 100)
        ranked = sorted(popularity.items(), key=lambda pair: (-pair[1], pair[0]))
        return np.array([item for item, _ in ranked[:n_top]], dtype=np.int64)

    def calculate_metric(self, dataobject) -> dict:
        popular = self.blockbusters(dataobject.get("data.count_items"))
        result = {}
        for k in self.topk:
            items, hits = _correct_items(dataobject, k)
            correct = items[hits]
            share = float(np.isin(correct, popular).mean()) if correct.size else 0.0
            result[f"blockbuster_share@{k}"] = round(share, self.decimal_place)
        return result
