"""Small shared helpers: hyper-parameter validation with uniform messages, plain-data conversion."""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from typing import Any

import numpy as np


def check_param(owner: str, name: str, value: Any, allowed: Collection | Callable[[Any], bool],
                expected: str | None = None) -> Any:
    """Validate one hyper-parameter and return it unchanged.

    Args:
        owner: the model or component reading the parameter (named in the message).
        name: the config key.
        value: the value read from the config.
        allowed: a collection of permitted values, or a predicate returning True if valid.
        expected: wording of the constraint for a predicate, e.g. "a positive int".

    Raises:
        ValueError: "The 'cell' parameter of RNNCCE must be one of ['gru', 'lstm']. Got 'rnn' instead."
    """
    if callable(allowed):
        ok = _safe_call(allowed, value)
        constraint = expected or "valid"
    else:
        ok = value in allowed
        constraint = f"one of {sorted(allowed, key=str)}"
    if not ok:
        raise ValueError(
            f"The '{name}' parameter of {owner} must be {constraint}. Got {value!r} instead."
        )
    return value


def _safe_call(predicate: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(predicate(value))
    except (TypeError, ValueError):
        return False


def positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def non_negative_float(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def unit_interval_float(value: Any) -> bool:
    """A probability or decay in [0, 1)."""
    return non_negative_float(value) and value < 1


def to_plain(value: Any) -> Any:
    """Convert a config value or result to types JSON and ``torch.load(weights_only=True)``
    accept: enums become their names, numpy scalars Python numbers, devices and other objects
    their ``str``; containers are converted recursively."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_plain(v) for v in value]
    return str(value)
