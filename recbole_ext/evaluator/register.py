"""Add metrics to RecBole's metric registry so ``metrics: [...]`` in yaml finds them.

RecBole builds its registry once, at import, from the classes defined in
``recbole.evaluator.metrics``; the evaluator, the data collector and the Config all
read the same module-level dicts, so adding entries to them is enough.
"""

from __future__ import annotations

from recbole.evaluator import register as recbole_register
from recbole.evaluator.base_metric import AbstractMetric


def register_metric(metric_class: type) -> type:
    """Register ``metric_class`` under its lower-cased class name; usable as a decorator.

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
    existing = recbole_register.metrics_dict.get(name)
    if existing is not None and existing is not metric_class:
        if existing.__qualname__ == metric_class.__qualname__ and existing.__module__ == metric_class.__module__:
            pass  # the same module imported twice (e.g. reload); replace silently
        else:
            raise ValueError(f"metric name '{name}' is already registered by "
                             f"{existing.__module__}.{existing.__qualname__}")
    recbole_register.metrics_dict[name] = metric_class
    recbole_register.metric_information[name] = metric_class.metric_need
    recbole_register.metric_types[name] = metric_class.metric_type
    if metric_class.smaller and name not in recbole_register.smaller_metrics:
        recbole_register.smaller_metrics.append(name)
    return metric_class
