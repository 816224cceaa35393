r"""Precision@p% for explicit-rating prediction (Raziperchikolaei et al., arXiv:2010.06070, Eq. 8).

For each test user :math:`j` let :math:`S_j` be the items the user rated in the evaluated
split and :math:`k_j = \lceil p\,|S_j| / 100 \rceil`. The *relevant* set is the
:math:`k_j` items of :math:`S_j` with the highest true ratings, the *retrieved* set the
:math:`k_j` items with the highest predicted ratings, and

.. math::
    \mathrm{precision}_j = \frac{|\mathrm{relevant}_j \cap \mathrm{retrieved}_j|}{|\mathrm{retrieved}_j|},

averaged over all users of the split. The paper reports p = 10% and 25% (Table 3);
Table 2's precision column matches its 25% figures, so 25 is the default.

Choices the paper leaves open: :math:`k_j` rounds up (a user with fewer than 100/p
ratings still has one relevant item); ties in the predicted ratings are broken by the
order of the ratings in the evaluated split (a stable sort), which RecBole's ``RO``
split makes random. Ties in the *true* ratings matter much more, since ratings are
integers 1-5 and a user's top p% usually cuts through a block of equal ratings:

* ``RatingPrecision`` (``ties="order"``): the relevant set is exactly :math:`k_j` items,
  ties broken by split order, as the formula reads literally;
* ``RatingPrecisionInclusive`` (``ties="inclusive"``): every item whose true rating is at
  least the :math:`k_j`-th highest true rating is relevant (a retrieved item rated as
  high as the cut-off counts as a hit); retrieved is still :math:`k_j` items.

On ml-100k (random 10% test split) a predictor that returns each item's mean training
rating scores 49% with the first and 69% with the second at p = 25%, an oracle 78% with
the first; the paper's Table 2 has every method between 68% and 70.2%, which only the
inclusive reading reaches, so the benchmarks report both.

RecBole's collector does not keep user ids for value metrics, so the metric needs
``data.uid``, which :class:`RatingCollector` adds; the recbole-ext rating trainer
(:class:`recbole_ext.trainer.rating.RatingTrainer`) uses it.
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.evaluator.base_metric import AbstractMetric
from recbole.evaluator.collector import Collector
from recbole.utils import EvaluatorType

from recbole_ext.evaluator.register import register_metric

DEFAULT_PERCENTS = (25,)


def precision_at_percent(users: np.ndarray, truth: np.ndarray, scores: np.ndarray, percent: float,
                         ties: str = "order") -> float:
    """Mean over users of precision@p% (see the module docstring).

    Args:
        users: ``[N]`` user id of each rating.
        truth: ``[N]`` true ratings.
        scores: ``[N]`` predicted ratings.
        percent: p, in (0, 100].
        ties: ``"order"`` (exactly k relevant items, ties in the true ratings broken by
            split order) or ``"inclusive"`` (every item rated at least the k-th highest
            true rating is relevant).
    """
    if ties not in ("order", "inclusive"):
        raise ValueError(f"precision_at_percent: ties must be 'order' or 'inclusive', got {ties!r}.")
    users = np.asarray(users)
    truth = np.asarray(truth, dtype=np.float64)
    n = len(users)
    if n == 0:
        return 0.0
    order_index = np.arange(n)
    # rank of each rating within its user, best first; ties keep the split's order
    truth_order = np.lexsort((order_index, -truth, users))
    score_order = np.lexsort((order_index, -np.asarray(scores, dtype=np.float64), users))
    uniq, counts = np.unique(users, return_counts=True)
    group = np.searchsorted(uniq, users)
    block_start = np.cumsum(counts) - counts  # start of each user's block, in sorted order
    starts = np.repeat(block_start, counts)
    truth_rank = np.empty(n, dtype=np.int64)
    truth_rank[truth_order] = np.arange(n) - starts
    score_rank = np.empty(n, dtype=np.int64)
    score_rank[score_order] = np.arange(n) - starts
    k = np.ceil(counts * percent / 100.0).astype(np.int64)
    k_of = k[group]
    if ties == "order":
        relevant = truth_rank < k_of
    else:
        cutoff = truth[truth_order][block_start + k - 1]  # k-th highest true rating of each user
        relevant = truth >= cutoff[group]
    hits = relevant & (score_rank < k_of)
    overlap = np.bincount(group, weights=hits, minlength=len(uniq))
    return float(np.mean(overlap / k))


@register_metric
class RatingPrecision(AbstractMetric):
    """Precision@p% over each user's rated items (``metrics: [RatingPrecision]``).

    Config key ``rating_precision_percents`` (list of p in percent, default ``[25]``);
    results are named ``ratingprecision@<p>`` (p in percent, not a cut-off k). Exactly
    k relevant items per user (ties in the true ratings broken by split order).
    """

    metric_type = EvaluatorType.VALUE
    metric_need = ["rec.score", "data.label", "data.uid"]
    smaller = False
    ties = "order"

    def __init__(self, config) -> None:
        super().__init__(config)
        percents = config["rating_precision_percents"] or list(DEFAULT_PERCENTS)
        for p in percents:
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 100:
                raise ValueError("The 'rating_precision_percents' parameter of RatingPrecision must be "
                                 f"a list of numbers in (0, 100]. Got {percents!r} instead.")
        self.percents = list(percents)

    def calculate_metric(self, dataobject) -> dict:
        if "data.uid" not in dataobject:
            raise KeyError(f"{type(self).__name__} needs the user id of every rating ('data.uid'); "
                           "train with recbole_ext.trainer.rating.RatingTrainer, whose collector "
                           "records it.")
        users = dataobject.get("data.uid").numpy()
        truth = dataobject.get("data.label").squeeze(-1).numpy()
        scores = dataobject.get("rec.score").squeeze(-1).numpy()
        name = type(self).__name__.lower()
        return {f"{name}@{_label(p)}": round(precision_at_percent(users, truth, scores, p, self.ties),
                                             self.decimal_place)
                for p in self.percents}


@register_metric
class RatingPrecisionInclusive(RatingPrecision):
    """Precision@p% where every item rated at least the k-th highest true rating is relevant.

    Same config key as :class:`RatingPrecision`; results ``ratingprecisioninclusive@<p>``.
    """

    ties = "inclusive"


def _label(percent: float) -> str:
    return str(int(percent)) if float(percent).is_integer() else str(percent)


class RatingCollector(Collector):
    """RecBole's collector that also records each rating's user id when a metric needs ``data.uid``."""

    def eval_batch_collect(self, scores_tensor: torch.Tensor, interaction, positive_u, positive_i) -> None:
        super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        if self.register.need("data.uid"):
            self.data_struct.update_tensor("data.uid", interaction[self.config["USER_ID_FIELD"]].to(self.device))

    def get_data_struct(self):
        returned = super().get_data_struct()
        if "data.uid" in self.data_struct:
            del self.data_struct["data.uid"]  # like RecBole's own keys: one struct per evaluation
        return returned


__all__ = ["RatingCollector", "RatingPrecision", "RatingPrecisionInclusive", "precision_at_percent"]
