"""recbole-ext: five research systems as first-class RecBole models.

Public API::

    from recbole_ext import Config, get_model, get_trainer, list_models, run_recbole_ext
"""

from recbole_ext import evaluator  # noqa: F401  (registers our metrics with RecBole)
from recbole_ext.config import Config
from recbole_ext.quick_start import load_data_and_model, objective_function, run_recbole_ext
from recbole_ext.registry import get_model, get_trainer, list_models

__version__ = "0.1.0"

__all__ = [
    "Config",
    "get_model",
    "get_trainer",
    "list_models",
    "load_data_and_model",
    "objective_function",
    "run_recbole_ext",
]
