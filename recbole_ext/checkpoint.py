"""The recbole-ext checkpoint format: the one place that writes or reads a checkpoint.

torch >= 2.6 loads with ``weights_only=True``; RecBole 1.2.1 pickles its whole ``Config``
into every checkpoint, so its own ``evaluate(load_best_model=True)``, ``resume_checkpoint``
and ``load_data_and_model`` fail on current torch. Our checkpoints hold *plain data* only
(state dicts, numbers, strings, a plain-type config dict, non-parameter model state packed
as tensors), which loads weights-only. A legacy RecBole checkpoint is unpickled only when the
caller passes an explicit trust flag: unpickling runs arbitrary code, so it must be a
decision, not a default.

Format ``recbole-ext/1`` (a dict): ``format``, ``model``, ``dataset``, ``preset``,
``config`` (the final config, plain), ``external_config`` (the yaml layers and overrides,
enough to rebuild the Config), ``epoch``, ``cur_step``, ``best_valid_score``, ``sizes`` (user
and item counts of the model), ``state_dict``, ``other_parameter`` (:func:`pack_other_parameter`), ``optimizer`` and, for
trainers with extra state, ``extra``.
"""

from __future__ import annotations

import os
import pickle
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbole_ext.utils import to_plain

CHECKPOINT_FORMAT = "recbole-ext/1"


class LegacyCheckpointError(RuntimeError):
    """A checkpoint written by RecBole itself (a pickled Config) was not trusted."""


class CheckpointError(ValueError):
    """A file that is not a checkpoint, or a checkpoint that does not fit this run."""


# torch.save writes a zip archive; older torch (and RecBole's own files) may be a bare pickle
_CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80")


_PACKED = "__recbole_ext_packed__"
_DEFAULT_FACTORIES = {factory.__name__: factory for factory in (list, dict, set, int, float)}


def pack_other_parameter(values: dict | None) -> dict | None:
    """Non-parameter model state (RecBole's ``other_parameter()``) in weights-only form.

    Memory-based RecBole models keep numpy arrays (EASE, ADMMSLIM) or scipy sparse
    matrices (ItemKNN, SLIMElastic) there, and RippleNet a ``defaultdict(list)`` of ripple
    sets, which ``torch.load(weights_only=True)`` refuses; they are stored as tensors and
    plain containers and rebuilt by :func:`unpack_other_parameter`.
    """
    if values is None:
        return None
    return {name: _pack(value) for name, value in values.items()}


def _pack(value: Any) -> Any:
    import scipy.sparse as sp

    if sp.issparse(value):
        coo = value.tocoo()
        return {_PACKED: "scipy.sparse", "format": value.format, "shape": list(coo.shape),
                "row": torch.from_numpy(coo.row.astype(np.int64)),
                "col": torch.from_numpy(coo.col.astype(np.int64)),
                "data": torch.from_numpy(np.ascontiguousarray(coo.data))}
    if isinstance(value, np.ndarray):
        return {_PACKED: "numpy", "array": torch.from_numpy(np.ascontiguousarray(value))}
    factory = getattr(getattr(value, "default_factory", None), "__name__", None)
    if isinstance(value, defaultdict) and factory in _DEFAULT_FACTORIES:
        return {_PACKED: "defaultdict", "factory": factory, "items": {k: _pack(v) for k, v in value.items()}}
    return value


def unpack_other_parameter(values: dict | None) -> dict | None:
    """Inverse of :func:`pack_other_parameter` (plain values pass through)."""
    if values is None:
        return None
    return {name: _unpack(value) for name, value in values.items()}


def _unpack(value: Any) -> Any:
    if not (isinstance(value, dict) and _PACKED in value):
        return value
    if value[_PACKED] == "numpy":
        return value["array"].numpy()
    if value[_PACKED] == "defaultdict":
        return defaultdict(_DEFAULT_FACTORIES[value["factory"]], {k: _unpack(v) for k, v in value["items"].items()})
    import scipy.sparse as sp

    matrix = sp.coo_matrix((value["data"].numpy(), (value["row"].numpy(), value["col"].numpy())),
                           shape=tuple(value["shape"]))
    return matrix.asformat(value["format"])


TRAINER_HISTORY = ("epoch_seconds", "valid_seconds", "valid_history")


def trainer_checkpoint(trainer, epoch: int) -> dict:
    """The checkpoint of ``trainer`` (a RecBole ``Trainer``) after ``epoch``, in plain data.

    Trainers add their own plain state through ``extra_checkpoint_state() -> dict``.
    """
    config = trainer.config
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": config["model"],
        "dataset": config["dataset"],
        "preset": config["preset"],
        "config": to_plain(config.final_config_dict),
        "external_config": to_plain(_external_config(config)),
        "epoch": epoch,
        "cur_step": trainer.cur_step,
        "best_valid_score": float(trainer.best_valid_score),
        "best_valid_result": to_plain(trainer.best_valid_result),
        # a resumed run reports its whole history, not only the epochs after the resume
        "history": to_plain({name: getattr(trainer, name, []) for name in TRAINER_HISTORY}),
        "sizes": model_sizes(trainer.model),
        "state_dict": trainer.model.state_dict(),
        "other_parameter": pack_other_parameter(trainer.model.other_parameter()),
        "optimizer": trainer.optimizer.state_dict(),
    }
    if hasattr(trainer, "extra_checkpoint_state"):
        state["extra"] = trainer.extra_checkpoint_state()
    return state


def _external_config(config) -> dict:
    # A RecBole Config (not ours) has no external_config(); its external dict is the same idea.
    getter = getattr(config, "external_config", None)
    return getter() if getter else dict(config.external_config_dict)


def save_checkpoint(state: dict, path: str | os.PathLike) -> str:
    """Write ``state`` to ``path`` through a temporary file, so a crash mid-write never
    leaves a truncated checkpoint; returns the path."""
    path = str(path)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu",
                    trust_legacy: bool = False) -> dict:
    """Load a checkpoint written by recbole-ext (weights-only) or, if trusted, by RecBole.

    Raises:
        FileNotFoundError: no such file.
        LegacyCheckpointError: the file needs full unpickling and ``trust_legacy`` is False.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    _check_is_checkpoint_file(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if not trust_legacy:
            raise LegacyCheckpointError(
                f"{path} cannot be loaded weights-only ({str(err).strip().splitlines()[-1][:200]}); "
                "it looks like one written by RecBole itself, which pickles its Config. "
                "Loading it runs arbitrary "
                "pickled code; if you trust the file, pass --trust-legacy-checkpoint "
                "(trust_legacy=True / config `trust_legacy_checkpoint: True`)."
            ) from err
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=False)
        except (pickle.UnpicklingError, EOFError, RuntimeError) as legacy_err:
            raise CheckpointError(f"{path} is not a checkpoint: torch cannot read it "
                                  f"({str(legacy_err).strip().splitlines()[-1][:200]})") from legacy_err
    except (EOFError, RuntimeError) as err:  # a truncated or corrupt archive
        raise CheckpointError(f"{path} is not a readable checkpoint "
                              f"({str(err).strip().splitlines()[-1][:200]})") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a checkpoint: it holds a {type(ckpt).__name__}, not the "
                              "dict of a recbole-ext or RecBole checkpoint")
    return ckpt


def _check_is_checkpoint_file(path: Path) -> None:
    """Refuse, by their first bytes, files torch could never have written (JSON, text, empty)."""
    with path.open("rb") as handle:
        head = handle.read(64)
    if not head:
        raise CheckpointError(f"{path} is not a checkpoint: the file is empty")
    if not head.startswith(_CHECKPOINT_MAGIC):
        text = head.lstrip()
        kind = ("JSON (a results file?)" if text[:1] in (b"{", b"[") else
                "text" if all(32 <= c < 127 or c in b"\t\r\n" for c in head) else "binary data")
        raise CheckpointError(f"{path} is not a checkpoint: it holds {kind}, not a file written by "
                              "torch.save (a checkpoint is a .pth file under checkpoint_dir, 'saved/' by default)")


def checkpoint_config(ckpt: dict) -> dict:
    """The config stored in a checkpoint, as a plain dict, for either format."""
    config = ckpt["config"]
    return config if isinstance(config, dict) else dict(config.final_config_dict)


def load_model_state(model: torch.nn.Module, ckpt: dict, path: str | os.PathLike = "the checkpoint",
                     dataset: str = "?") -> None:
    """Put a loaded checkpoint's weights and non-parameter state into ``model``.

    Raises:
        CheckpointError: the checkpoint's tensors do not fit the model, e.g. it was trained on a
            dataset with other user or item counts (both are named).
    """
    mismatched = _shape_mismatches(model.state_dict(), ckpt["state_dict"])
    if mismatched:
        saved, here = checkpoint_sizes(ckpt), model_sizes(model)
        config = checkpoint_config(ckpt)
        raise CheckpointError(
            f"{path} does not fit this run: it was trained on dataset '{config.get('dataset')}' "
            f"({_describe(saved)}), this run's dataset '{dataset}' has "
            f"{_describe(here)}; first differing tensor: {mismatched[0]}")
    model.load_state_dict(ckpt["state_dict"])
    model.load_other_parameter(unpack_other_parameter(ckpt.get("other_parameter")))


def _shape_mismatches(expected: dict, saved: dict) -> list[str]:
    return [f"{name} {tuple(saved[name].shape)} vs {tuple(tensor.shape)}" for name, tensor in expected.items()
            if name in saved and tuple(saved[name].shape) != tuple(tensor.shape)]


def model_sizes(model: torch.nn.Module) -> dict:
    """The user and item counts a model was built for (RecBole's, padding id included)."""
    return {key: int(getattr(model, attr)) for key, attr in (("users", "n_users"), ("items", "n_items"))
            if isinstance(getattr(model, attr, None), int)}


def checkpoint_sizes(ckpt: dict) -> dict:
    """The user and item counts stored with the checkpoint (``{}`` for older ones)."""
    return dict(ckpt.get("sizes") or {})


def _describe(sizes: dict) -> str:
    return ", ".join(f"{count} {key}" for key, count in sizes.items()) or "counts not recorded"
