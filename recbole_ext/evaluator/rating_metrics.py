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
ratings still has one relevant item); ties in the true or predicted ratings are broken
by the order of the ratings in the evaluated split (a stable sort), which RecBole's
``RO`` split makes random.

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


def precision_at_percent(users: np.ndarray, truth: np.ndarray, scores: np.ndarray, percent: float) -> float:
    """Mean over users of precision@p% (see the module docstring).

    Args:
        users: ``[N]`` user id of each rating.
        truth: ``[N]`` true ratings.
        scores: ``[N]`` predicted ratings.
        percent: p, in (0, 100].
    """
    users = np.asarray(users)
    n = len(users)
    if n == 0:
        return 0.0
    order_index = np.arange(n)
    # rank of each rating within its user, best first; ties keep the split's order
    truth_order = np.lexsort((order_index, -np.asarray(truth, dtype=np.float64), users))
    score_order = np.lexsort((order_index, -np.asarray(scores, dtype=np.float64), users))
    uniq, counts = np.unique(users, return_counts=True)
    group = np.searchsorted(uniq, users)
    starts = np.repeat(np.cumsum(counts) - counts, counts)  # start of each user's block, in sorted order
    truth_rank = np.empty(n, dtype=np.int64)
    truth_rank[truth_order] = np.arange(n) - starts
    score_rank = np.empty(n, dtype=np.int64)
    score_rank[score_order] = np.arange(n) - starts
    k = np.ceil(counts * percent / 100.0).astype(np.int64)
    k_of = k[group]
    hits = (truth_rank < k_of) & (score_rank < k_of)
    overlap = np.bincount(group, weights=hits, minlength=len(uniq))
    return float(np.mean(overlap / k))


@register_metric
class RatingPrecision(AbstractMetric):
    """Precision@p% over each user's rated items (``metrics: [RatingPrecision]``).

    Config key ``rating_precision_percents`` (list of p in percent, default ``[25]``);
    results are named ``ratingprecision@<p>`` (p in percent, not a cut-off k).
    """

    metric_type = EvaluatorType.VALUE
    metric_need = ["rec.score", "data.label", "data.uid"]
    smaller = False

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
            raise KeyError("RatingPrecision needs the user id of every rating ('data.uid'); "
                           "train with recbole_ext.trainer.rating.RatingTrainer, whose collector "
                           "records it.")
        users = dataobject.get("data.uid").numpy()
        truth = dataobject.get("data.label").squeeze(-1).numpy()
        scores = dataobject.get("rec.score").squeeze(-1).numpy()
        return {f"ratingprecision@{_label(p)}": round(precision_at_percent(users, truth, scores, p),
                                                      self.decimal_place)
                for p in self.percents}


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


__all__ = ["RatingCollector", "RatingPrecision", "precision_at_percent"]
