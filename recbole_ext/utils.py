"""Small shared helpers: plain-data conversion."""

from __future__ import annotations

import enum
from typing import Any

import numpy as np


def to_plain(value: Any) -> Any:
    """Convert a config value or result to types JSON and ``torch.load(weights_only=True)``
    accept: enums become their names, numpy scalars Python numbers, devices and other objects
    their ``str``; containers are converted recursively."""
    if isinstance(value, np.generic):  # before float: numpy.float64 subclasses float
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_plain(v) for v in value]
    return str(value)


def global_rank(config) -> int:
    """This process's rank in the whole DDP group (0 outside DDP): ``local_rank + offset``."""
    return (config["local_rank"] or 0) + (config["offset"] or 0)
