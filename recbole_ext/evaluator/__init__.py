"""Metrics that RecBole lacks. Each module below declares its metrics with
``@register_metric``; :func:`recbole_ext.plugin.register_with_recbole` adds them to RecBole.
"""

from recbole_ext.evaluator import (
    label_metrics,  # noqa: F401,E402  (ACC at the mean training label, KNI)
    rating_metrics,  # noqa: F401,E402  (precision@p% for explicit ratings)
    sequence_metrics,  # noqa: F401,E402  (sps, user/item coverage, blockbuster share)
)
from recbole_ext.evaluator.register import (
    PLUGIN_METRICS,
    add_metrics_to_recbole,
    register_metric,
)

__all__ = ["PLUGIN_METRICS", "add_metrics_to_recbole", "register_metric"]
