"""Metrics that RecBole lacks, registered into RecBole's evaluator on import.

Each module below defines its metrics with ``@register_metric``.
"""

from recbole_ext.evaluator.register import register_metric
from recbole_ext.evaluator import sequence_metrics  # noqa: F401,E402  (sps, user/item coverage, blockbuster share)
from recbole_ext.evaluator import rating_metrics  # noqa: F401,E402  (precision@p% for explicit ratings)
from recbole_ext.evaluator import label_metrics  # noqa: F401,E402  (ACC at the mean training label, KNI)

__all__ = ["register_metric"]
