"""Metrics that RecBole lacks, declared here and added to RecBole's registry by
:func:`recbole_ext.plugin.register_with_recbole` (not at import time).

RecBole builds its registry once, at import, from the classes defined in
``recbole.evaluator.metrics``; the evaluator, the data collector and the Config all
read the same module-level dicts, so adding entries to them is enough.
"""

from __future__ import annotations

from recbole.evaluator import register as recbole_register
from recbole.evaluator.base_metric import AbstractMetric

# lower-cased metric name -> class, in declaration order
PLUGIN_METRICS: dict[str, type] = {}


def register_metric(metric_class: type) -> type:
    """Declare ``metric_class`` as a plugin metric under its lower-cased class name; usable as
    a decorator. It becomes usable in ``metrics: [...]`` once :func:`add_metrics_to_recbole`
    runs (every recbole-ext Config runs it).

    Raises:
        TypeError: not an ``AbstractMetric`` subclass, or it lacks ``metric_need`` /
            ``metric_type``.
        ValueError: the name is taken by a different class (RecBole's or another plugin's).
    """
    if not (isinstance(metric_class, type) and issubclass(metric_class, AbstractMetric)):
        raise TypeError(f"{metric_class!r} must subclass recbole.evaluator.base_metric.AbstractMetric")
    for attr in ("metric_need", "metric_type"):
        if not hasattr(metric_class, attr):
            raise TypeError(f"metric {metric_class.__name__} has no attribute '{attr}'")
    name = metric_class.__name__.lower()
    existing = PLUGIN_METRICS.get(name) or recbole_register.metrics_dict.get(name)
    if existing is not None and existing is not metric_class and not _same_definition(existing, metric_class):
        raise ValueError(f"metric name '{name}' is already registered by "
                         f"{existing.__module__}.{existing.__qualname__}")
    PLUGIN_METRICS[name] = metric_class
    return metric_class


def _same_definition(a: type, b: type) -> bool:
    # the same module imported twice (e.g. importlib.reload) redefines its classes
    return a.__qualname__ == b.__qualname__ and a.__module__ == b.__module__


def add_metrics_to_recbole() -> list[str]:
    """Write every declared metric into RecBole's registry (idempotent); returns their names."""
    for name, metric_class in PLUGIN_METRICS.items():
        recbole_register.metrics_dict[name] = metric_class
        recbole_register.metric_information[name] = metric_class.metric_need
        recbole_register.metric_types[name] = metric_class.metric_type
        if metric_class.smaller and name not in recbole_register.smaller_metrics:
            recbole_register.smaller_metrics.append(name)
    return list(PLUGIN_METRICS)
