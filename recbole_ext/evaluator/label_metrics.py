r"""Accuracy of thresholded click probabilities (``metrics: [ACC]``), as in the KNI paper.

Qu et al., "An End-to-End Neighborhood-based Interaction Model for Knowledge-enhanced
Recommendation", DLP-KDD'19 (arXiv:1908.04032); the official code (Atomu2014/KNI, train.py)
reports AUC, logloss and

.. math::
    \mathrm{ACC} = \frac{1}{|S|} \sum_{(u,i) \in S} [\, [\hat y_{ui} > t] = [y_{ui} > 0.5] \,]

with the threshold :math:`t` set to the **mean training label** (about 0.5 with one
sampled negative per positive), not a fixed 0.5. RecBole has no accuracy metric.

Config key ``acc_threshold``: a number in [0, 1], or ``auto`` (the default when unset) for
the mean training label. A metric object only sees the config, so ``auto`` is resolved
where the training split is known: the labelled-protocol datasets
(:mod:`recbole_ext.data.labeled`, used by KNI/NI and by the KNI benchmark's baselines)
write the number into the config before the trainer builds its evaluator. A model whose
dataset does not resolve it must be given a number; ``auto`` then fails with a message
saying so, rather than silently using 0.5.

``ACC`` expects probabilities, like RecBole's ``LogLoss``; the scores of a model trained
with a pairwise loss (e.g. BPR) are not probabilities, so its ACC is not meaningful.
"""

from __future__ import annotations

import numpy as np
from recbole.evaluator.base_metric import LossMetric

from recbole_ext.evaluator.register import register_metric


def accuracy(preds: np.ndarray, trues: np.ndarray, threshold: float) -> float:
    """Share of rows whose thresholded prediction ``pred > threshold`` equals ``true > 0.5``."""
    preds = np.asarray(preds, dtype=np.float64)
    trues = np.asarray(trues, dtype=np.float64)
    if preds.size == 0:
        return 0.0
    return float(np.mean((preds > threshold) == (trues > 0.5)))


@register_metric
class ACC(LossMetric):
    """Accuracy at ``acc_threshold`` (see the module docstring)."""

    smaller = False

    def __init__(self, config) -> None:
        super().__init__(config)
        value = config["acc_threshold"]
        if value is None or value == "auto":
            raise ValueError(
                "The ACC metric's 'acc_threshold' is 'auto' (mean training label) but no dataset "
                "resolved it: use the labelled protocol (`labeled_protocol: True`; KNI and NI always "
                "do) or set `acc_threshold` to a number in [0, 1].")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"The 'acc_threshold' config key of the ACC metric must be 'auto' or a "
                             f"number in [0, 1]. Got {value!r} instead.")
        self.threshold = float(value)

    def calculate_metric(self, dataobject) -> dict:
        return self.output_metric("acc", dataobject)

    def metric_info(self, preds, trues) -> float:
        return accuracy(preds, trues, self.threshold)


__all__ = ["ACC", "accuracy"]
