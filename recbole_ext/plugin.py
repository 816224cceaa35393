"""Every change recbole-ext makes to RecBole's or torch's process-wide state, in one place.

Importing ``recbole_ext`` changes nothing outside the package. The one call that does is
:func:`register_with_recbole`: it adds our metrics (:mod:`recbole_ext.evaluator`) to
RecBole's metric registry, so that ``metrics: [SPS, RatingPrecision, ACC, ...]`` work in any
RecBole component. Every :class:`recbole_ext.Config` makes this call first (it is idempotent);
code that uses RecBole's own ``Config`` with our metrics calls it once itself.

:func:`import_recbole_model_module` is the other place: importing RecBole's model modules
has a side effect of its own that we undo.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch


def register_with_recbole() -> list[str]:
    """Add recbole-ext's metrics to RecBole's registry (safe to call again); returns their names."""
    from recbole_ext.evaluator import add_metrics_to_recbole

    return add_metrics_to_recbole()


def import_recbole_model_module(module_name: str) -> ModuleType:
    """Import one of RecBole's model modules without its global side effect.

    RecBole's sequential package imports ``sine.py``, which switches autograd anomaly
    detection on for the whole process (training steps then run much slower); the caller's
    setting is restored.
    """
    anomaly = torch.is_anomaly_enabled()
    try:
        return importlib.import_module(module_name)
    finally:
        torch.autograd.set_detect_anomaly(anomaly)
