"""The recommend cache: a checkpoint's training-split dataset state in weights-only form.

Rebuilding the dataset (RecBole's ``create_dataset`` + ``data_preparation``) is the slow part of
loading a :class:`~recbole_ext.recommend.Recommender`. ``<checkpoint>.recommend-cache`` holds the
training split's attributes as plain data (tensors, numbers, strings, tagged containers) and
names only RecBole's, recbole-ext's and builtin classes, so reading it never runs pickled code.
It is valid while the checkpoint, the dataset files (size and mtime) and the config overrides
are unchanged (:func:`fingerprint`).
"""

from __future__ import annotations

import enum
import importlib
import io
import os
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable
from logging import getLogger
from pathlib import Path
from typing import Any

import numpy as np
import torch
from recbole.data.dataset import Dataset
from recbole.data.interaction import Interaction

CACHE_FORMAT = "recbole-ext-recommend/1"
CACHE_SUFFIX = ".recommend-cache"
# Dataset modules whose classes a cache may name (a cache never imports anything else).
_TRUSTED_MODULES = ("recbole.", "recbole_ext.")


class CacheError(ValueError):
    """A cache file that names a class or an entry it may not (delete the file)."""


def fingerprint(checkpoint, config, overrides: dict | None) -> dict:
    """What the cached dataset state depends on: the checkpoint file, the dataset's files (size
    and modification time) and the overrides."""
    import recbole

    from recbole_ext.utils import to_plain

    stat = os.stat(checkpoint)
    folder = Path(config["data_path"])
    files = sorted(folder.glob(f"{config['dataset']}.*")) if folder.is_dir() else []
    return {"format": CACHE_FORMAT, "recbole": recbole.__version__,
            "checkpoint": [stat.st_size, stat.st_mtime_ns],
            "data": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files],
            "overrides": to_plain(overrides or {})}


def read_cache(path: Path, fingerprint: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - an unreadable cache is rebuilt, never fatal
        getLogger().warning(f"recommend cache {path} unreadable ({err}); rebuilding it")
        return None
    if state.get("fingerprint") != fingerprint:
        return None
    return state


def write_cache(path: Path, state: dict, rebuilds_same: Callable[[dict], bool]) -> None:
    """Write ``state`` to ``path`` atomically if ``rebuilds_same(state as read back)`` holds.

    ``rebuilds_same`` builds the model from the stored state and compares its scores with the
    original's: a cache is only kept when it cannot change an answer.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, map_location="cpu", weights_only=True)
    try:
        same = rebuilds_same(restored)
    except Exception as err:  # noqa: BLE001 - e.g. a model that reads a dropped column
        getLogger().info(f"recommend cache not written: the stored dataset state does not rebuild "
                         f"the model ({type(err).__name__}: {err})")
        return
    if not same:
        getLogger().info("recommend cache not written: the model built from the stored dataset "
                         "state scores differently")
        return
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)  # readers never see a half-written cache
    except OSError as err:
        tmp.unlink(missing_ok=True)
        getLogger().warning(f"recommend cache not written to {path}: {err}")


class Unpackable(TypeError):
    """A dataset attribute with no plain (weights-only) form."""


_SKIPPED = {"config", "logger"}
_TAG = "__recbole_ext_recommend__"


def pack_dataset(dataset: Dataset, sequential: bool) -> dict:
    """The training split's attributes in weights-only form (config and logger are re-attached).

    The augmented ``*_list`` columns of a sequential training split are dropped: they are large,
    rebuilt from nothing here, and no model reads them at construction time (the cache is only
    kept when the model built from it scores exactly like the original).
    """
    attrs = dict(vars(dataset))
    if sequential and isinstance(attrs.get("inter_feat"), Interaction):
        suffix = dataset.config["LIST_SUFFIX"]
        length = getattr(dataset, "item_list_length_field", None)
        kept = {k: v for k, v in attrs["inter_feat"].interaction.items()
                if not k.endswith(suffix) and k != length}
        attrs["inter_feat"] = Interaction(kept)
    cls = type(dataset)
    return {"class": f"{cls.__module__}:{cls.__qualname__}",
            "attrs": {name: _pack(value, name) for name, value in attrs.items() if name not in _SKIPPED}}


def unpack_dataset(packed: dict, config) -> Dataset:
    module_name, _, qualname = packed["class"].partition(":")
    if not module_name.startswith(_TRUSTED_MODULES):
        raise CacheError(f"recommend cache names dataset class {packed['class']}, which is "
                             "neither RecBole's nor recbole-ext's; delete the cache file")
    cls = getattr(importlib.import_module(module_name), qualname)
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise CacheError(f"recommend cache names {packed['class']}, which is not a dataset class")
    dataset = cls.__new__(cls)
    dataset.__dict__.update({name: _unpack(value) for name, value in packed["attrs"].items()})
    dataset.config = config
    dataset.logger = getLogger()
    return dataset


def _pack(value: Any, where: str) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, torch.Tensor)):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, enum.Enum):
        return {_TAG: "enum", "class": _class_name(type(value), where), "name": value.name}
    if isinstance(value, Interaction):
        return {_TAG: "interaction", "data": dict(value.interaction)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return {_TAG: "ndarray", "data": torch.from_numpy(np.ascontiguousarray(value))}
        if value.dtype.kind == "U" or (value.dtype == object and all(isinstance(v, str) for v in value.flat)):
            return {_TAG: "strings", "dtype": value.dtype.str, "shape": list(value.shape),
                    "data": [str(v) for v in value.flat]}
        raise Unpackable(f"{where}: array of dtype {value.dtype}")
    if type(value) is list:
        return [_pack(v, where) for v in value]
    if type(value) in (tuple, set):
        return {_TAG: type(value).__name__, "items": [_pack(v, where) for v in value]}
    if isinstance(value, dict):
        return _pack_mapping(value, where)
    raise Unpackable(f"{where}: {type(value).__module__}.{type(value).__qualname__}")


def _pack_mapping(value: dict, where: str) -> dict:
    """Plain dicts, OrderedDict, defaultdict of a builtin factory, and Counter subclasses of
    RecBole/recbole-ext (with their attributes, e.g. ``ItemPopularity.num_items``)."""
    cls = type(value)
    if not (cls in (dict, OrderedDict, defaultdict) or issubclass(cls, Counter)):
        raise Unpackable(f"{where}: mapping {cls.__module__}.{cls.__qualname__}")
    keys = [k.item() if isinstance(k, np.generic) else k for k in value]
    if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in keys):
        raise Unpackable(f"{where}: mapping with a key that is not a str or an int")
    out = {_TAG: "dict", "class": _class_name(cls, where), "keys": keys,
           "values": [_pack(v, f"{where}[{k!r}]") for k, v in zip(keys, value.values())]}
    if cls is defaultdict:
        if value.default_factory not in (None, *_FACTORIES.values()):
            raise Unpackable(f"{where}: defaultdict factory {value.default_factory}")
        out["factory"] = getattr(value.default_factory, "__name__", None)
    if getattr(value, "__dict__", None):
        out["attrs"] = {k: _pack(v, f"{where}.{k}") for k, v in vars(value).items()}
    return out


def _class_name(cls: type, where: str) -> str:
    if cls.__module__ not in _TRUSTED_BUILTINS and not cls.__module__.startswith(_TRUSTED_MODULES):
        raise Unpackable(f"{where}: {cls.__module__}.{cls.__qualname__}")
    return f"{cls.__module__}:{cls.__qualname__}"


_FACTORIES = {f.__name__: f for f in (list, dict, set, int, float)}
_TRUSTED_BUILTINS = ("builtins", "collections")


def _unpack(value: Any) -> Any:
    if isinstance(value, list):
        return [_unpack(v) for v in value]
    if not (isinstance(value, dict) and _TAG in value):
        return value
    tag = value[_TAG]
    if tag == "ndarray":
        return value["data"].numpy()
    if tag == "strings":
        return np.array(value["data"], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
    if tag == "interaction":
        return Interaction(value["data"])
    if tag in ("tuple", "set"):
        return (tuple if tag == "tuple" else set)(_unpack(v) for v in value["items"])
    if tag == "enum":
        return _trusted_class(value["class"])[value["name"]]
    if tag == "dict":
        cls = _trusted_class(value["class"])
        items = zip(value["keys"], (_unpack(v) for v in value["values"]))
        if cls is defaultdict:
            out = defaultdict(_FACTORIES.get(value["factory"]), items)
        elif cls in (dict, OrderedDict):
            out = cls(items)
        elif issubclass(cls, Counter):
            out = cls.__new__(cls)
            dict.update(out, items)  # Counter(...) would count the pairs instead
        else:
            raise CacheError(f"recommend cache names mapping {value['class']}; delete the cache file")
        for name, attr in value.get("attrs", {}).items():
            setattr(out, name, _unpack(attr))
        return out
    raise CacheError(f"recommend cache holds an unknown entry '{tag}'; delete the cache file")


def _trusted_class(spec: str) -> type:
    module_name, _, qualname = spec.partition(":")
    if module_name not in _TRUSTED_BUILTINS and not module_name.startswith(_TRUSTED_MODULES):
        raise CacheError(f"recommend cache names class {spec}; delete the cache file")
    return getattr(importlib.import_module(module_name), qualname)
