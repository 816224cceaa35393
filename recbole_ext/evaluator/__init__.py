"""Metrics that RecBole lacks, registered into RecBole's evaluator on import.

Each module below defines its metrics with ``@register_metric``.
"""

from recbole_ext.evaluator.register import register_metric

__all__ = ["register_metric"]
