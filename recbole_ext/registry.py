"""Explicit registry of recbole-ext models, trainers and datasets, with RecBole fallback.

RecBole finds a model by lower-casing its name and probing its own sub-packages, so
an out-of-tree model is invisible to ``run_recbole``, ``load_data_and_model`` and
hyper-parameter tuning (RecBole#1975, #1544, #1600). Here every plugin class is listed
once in a table of ``"module:Class"`` strings and imported lazily on first use; a
name that is not ours falls back to RecBole. Plugin names are searched first, so a
plugin model may deliberately shadow a RecBole model of the same name.
"""

from __future__ import annotations

import difflib
import importlib
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import recbole

from recbole_ext.plugin import import_recbole_model_module

# model name -> "module:Class". A model listed here is covered by the contract test
# (tests/test_model_contract.py) and runs through run_recbole_ext.py.
PLUGIN_MODELS: dict[str, str] = {
    "NRP": "recbole_ext.model.general_recommender.nrp:NRP",
    "NRPaSDAE": "recbole_ext.model.general_recommender.nrpasdae:NRPaSDAE",
    "NRPDHA": "recbole_ext.model.general_recommender.nrpdha:NRPDHA",
    "ASDAE": "recbole_ext.model.general_recommender.asdae:ASDAE",
    "DHA": "recbole_ext.model.general_recommender.dha:DHA",
    "BiasedMF": "recbole_ext.model.general_recommender.biasedmf:BiasedMF",
    "RNNCCE": "recbole_ext.model.sequential_recommender.rnncce:RNNCCE",
    "DLR2": "recbole_ext.model.sequential_recommender.dlr2:DLR2",
    "LEGCF": "recbole_ext.model.general_recommender.legcf:LEGCF",
    "C2F": "recbole_ext.model.general_recommender.c2f:C2F",
    "KNI": "recbole_ext.model.knowledge_aware_recommender.kni:KNI",
    "NI": "recbole_ext.model.knowledge_aware_recommender.kni:NI",
}

# model name -> "module:TrainerClass" for models whose training RecBole's trainers
# cannot express. Each class subclasses a RecBole trainer; get_trainer adds our
# checkpoint/DDP mixin on top.
PLUGIN_TRAINERS: dict[str, str] = {
    "NRP": "recbole_ext.trainer.rating:RatingTrainer",
    "NRPaSDAE": "recbole_ext.trainer.rating:RatingTrainer",
    "NRPDHA": "recbole_ext.trainer.rating:RatingTrainer",
    "ASDAE": "recbole_ext.trainer.rating:AlternatingTrainer",
    "DHA": "recbole_ext.trainer.rating:AlternatingTrainer",
    "BiasedMF": "recbole_ext.trainer.rating:RatingTrainer",
    "DLR2": "recbole_ext.trainer.dlr2:DLR2Trainer",
    "LEGCF": "recbole_ext.trainer.meta_embedding_trainer:MetaEmbeddingTrainer",
    "C2F": "recbole_ext.trainer.meta_embedding_trainer:MetaEmbeddingTrainer",
    "KNI": "recbole_ext.trainer.kni:KNITrainer",
    "NI": "recbole_ext.trainer.kni:KNITrainer",
}

# model name -> "module:DatasetClass" for protocols RecBole's datasets cannot express.
PLUGIN_DATASETS: dict[str, str] = {
    "RNNCCE": "recbole_ext.data.devooght:DevooghtDataset",
    "KNI": "recbole_ext.data.labeled:LabeledKGDataset",
    "NI": "recbole_ext.data.labeled:LabeledKGDataset",
}

_RECBOLE_FAMILIES = {
    "general_recommender": "general",
    "context_aware_recommender": "context",
    "sequential_recommender": "sequential",
    "knowledge_aware_recommender": "knowledge",
    "exlib_recommender": "exlib",
}
_FAMILY_OF_MODEL_TYPE = {
    "GENERAL": "general",
    "SEQUENTIAL": "sequential",
    "CONTEXT": "context",
    "KNOWLEDGE": "knowledge",
    "TRADITIONAL": "general",
    "DECISIONTREE": "context",
}


class UnknownModelError(ValueError):
    """Raised for a model name that neither recbole-ext nor RecBole provides."""


def _import_object(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@lru_cache(maxsize=None)
def recbole_models() -> dict[str, str]:
    """RecBole's model names -> family, read from its sub-package ``__init__`` files.

    Parsing the files instead of importing them keeps optional back-ends (xgboost,
    lightgbm in ``exlib_recommender``) from being imported just to list names.
    """
    found: dict[str, str] = {}
    model_dir = Path(recbole.__file__).parent / "model"
    pattern = re.compile(r"^from recbole\.model\.\w+\.\w+ import (\w+)", re.MULTILINE)
    for sub, family in _RECBOLE_FAMILIES.items():
        init_file = model_dir / sub / "__init__.py"
        for name in pattern.findall(init_file.read_text()):
            found[name] = family
    return found


def _unknown(kind: str, name: str, candidates: list[str]) -> UnknownModelError:
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    lowered = {c.lower(): c for c in candidates}
    if name.lower() in lowered and lowered[name.lower()] not in close:
        close.insert(0, lowered[name.lower()])
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return UnknownModelError(
        f"Unknown {kind} '{name}'.{hint} Run `recbole-ext --list-models` "
        f"to see all {len(candidates)} models."
    )


def get_model(name: str) -> type:
    """Return the model class called ``name``: ours first, then RecBole's.

    Raises:
        UnknownModelError: if no model has that name; the message lists close names.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    if name in PLUGIN_MODELS:
        return _import_object(PLUGIN_MODELS[name])
    family = recbole_models().get(name)
    if family is None:
        raise _unknown("model", name, sorted(PLUGIN_MODELS) + sorted(recbole_models()))
    module = import_recbole_model_module(f"recbole.model.{_family_package(family)}.{name.lower()}")
    return getattr(module, name)


def _family_package(family: str) -> str:
    return next(sub for sub, fam in _RECBOLE_FAMILIES.items() if fam == family)


def get_trainer(model_type: Any, model_name: str) -> type:
    """Return the trainer class for a model, wrapped with recbole-ext's mixins.

    Lookup order: our ``PLUGIN_TRAINERS`` table, then RecBole's own rule
    (``<Model>Trainer``, then by model type). Every RecBole ``Trainer`` subclass comes
    back with :class:`recbole_ext.trainer.mixin.ExtTrainerMixin` first in its MRO, which
    saves weights-only checkpoints, loads them safely, names them uniquely per run
    and makes DDP work on CPU. Trainers outside that hierarchy (the decision-tree
    family) are returned unchanged.
    """
    from recbole.utils import get_trainer as recbole_get_trainer

    from recbole_ext.trainer.mixin import with_ext_mixin

    if model_name in PLUGIN_TRAINERS:
        trainer = _import_object(PLUGIN_TRAINERS[model_name])
    else:
        trainer = recbole_get_trainer(model_type, model_name)
    return with_ext_mixin(trainer)


def get_dataset_class(model_name: str) -> type | None:
    """Plugin dataset class for a model, or None to use RecBole's choice."""
    spec = PLUGIN_DATASETS.get(model_name)
    return _import_object(spec) if spec else None


def list_models() -> list[tuple[str, str, str]]:
    """All models as ``(name, family, source)`` rows; source is ``recbole-ext`` or ``recbole``."""
    rows = []
    for name in sorted(PLUGIN_MODELS):
        model_type = getattr(get_model(name), "type", None)
        family = _FAMILY_OF_MODEL_TYPE.get(getattr(model_type, "name", ""), "general")
        rows.append((name, family, "recbole-ext"))
    for name, family in sorted(recbole_models().items()):
        if name not in PLUGIN_MODELS:
            rows.append((name, family, "recbole"))
    return rows
