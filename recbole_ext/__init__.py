"""recbole-ext: five research systems as first-class RecBole models.

Public API::

    from recbole_ext import Config, get_model, get_trainer, list_models, run_recbole_ext

Importing the package changes nothing in RecBole; :func:`register_with_recbole` (which every
:class:`Config` calls) adds our metrics to RecBole's registry.
"""

from recbole_ext.config import Config
from recbole_ext.plugin import register_with_recbole
from recbole_ext.quick_start import (
    load_data_and_model,
    objective_function,
    prepare_run,
    run_recbole_ext,
)
from recbole_ext.registry import get_model, get_trainer, list_models

__version__ = "0.1.0"

__all__ = [
    "Config",
    "get_model",
    "get_trainer",
    "list_models",
    "load_data_and_model",
    "objective_function",
    "prepare_run",
    "register_with_recbole",
    "run_recbole_ext",
]
