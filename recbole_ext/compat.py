"""The few patches RecBole 1.2.1 needs on current torch, in one place.

1. **Checkpoints.** torch >= 2.6 loads with ``weights_only=True``; RecBole saves with
   pickle protocol 4 and pickles its whole ``Config``, so its own
   ``Trainer.evaluate(load_best_model=True)``, ``resume_checkpoint`` and
   ``load_data_and_model`` fail. Our trainers instead save *plain data* (state dicts,
   numbers, strings, a plain-type config dict), which loads with ``weights_only=True``.
   A legacy RecBole checkpoint is only unpickled when the caller passes an explicit
   trust flag: unpickling runs arbitrary code, so it must be a decision, not a default.
2. **Unique checkpoint names.** RecBole names checkpoints ``<Model>-<second>.pth``, so
   runs started in the same second overwrite each other; ours add dataset, pid and a
   random token.
3. **DDP on CPU.** RecBole builds ``DistributedDataParallel(device_ids=[rank])``, which
   only works on GPUs, and lets only rank 0 name the checkpoint file. The mixin wraps
   CPU models without ``device_ids`` and broadcasts rank 0's file name.
   (The gloo process group itself is set up in :meth:`recbole_ext.config.Config._init_device`.)

4. **RippleNet's cold users.** RecBole's RippleNet builds ripple sets only for users with a
   training interaction, and ``predict`` raises ``IndexError`` for any other user (a
   validation or test user whose training rows are all negatives, on a labelled split).
   :func:`complete_recbole_model` gives those users the all-padding memories RecBole
   already uses for users without KG facts.

Nothing is monkey-patched: the trainer fixes live in :class:`ExtTrainerMixin`, which
:func:`recbole_ext.registry.get_trainer` puts first in the MRO of any RecBole trainer, and
the model fix is applied to the built instance by :func:`recbole_ext.quick_start.build_model`.
"""

from __future__ import annotations

import enum
import os
import pickle
import time
import uuid
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from recbole.trainer import Trainer
from recbole.utils import get_local_time

CHECKPOINT_FORMAT = "recbole-ext/1"


class LegacyCheckpointError(RuntimeError):
    """A checkpoint written by RecBole itself (a pickled Config) was not trusted."""


def to_plain(value: Any) -> Any:
    """Convert a config value to types ``torch.load(weights_only=True)`` accepts.

    Enums become their names, devices and other objects their ``str``; containers are
    converted recursively.
    """
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
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if not trust_legacy:
            raise LegacyCheckpointError(
                f"{path} cannot be loaded weights-only ({str(err).strip().splitlines()[-1][:200]}); "
                "it looks like one written by RecBole itself, which pickles its Config. "
                "Loading it runs arbitrary "
                "pickled code; if you trust the file, pass --trust-legacy-checkpoint "
                "(trust_legacy=True / config `trust_legacy_checkpoint: True`)."
            ) from err
        return torch.load(path, map_location=map_location, weights_only=False)


def checkpoint_config(ckpt: dict) -> dict:
    """The config stored in a checkpoint, as a plain dict, for either format."""
    config = ckpt["config"]
    return config if isinstance(config, dict) else dict(config.final_config_dict)


def _external_config(config) -> dict:
    # A RecBole Config (not ours) has no external_config(); its external dict is the same idea.
    getter = getattr(config, "external_config", None)
    return getter() if getter else dict(config.external_config_dict)


class ExtTrainerMixin:
    """Safe checkpoints, unique file names, CPU DDP and epoch timings for any RecBole Trainer.

    Trainers may add plain data to the checkpoint by defining
    ``extra_checkpoint_state() -> dict`` and ``load_extra_checkpoint_state(state)``.

    Attributes:
        epoch_seconds: wall-clock seconds of each training epoch.
        valid_seconds: wall-clock seconds of each validation pass.
        valid_history: ``(training epochs done, validation result)`` of each validation pass,
            for metric-by-epoch plots.
    """

    def __init__(self, config, model):
        cpu_ddp = not config["single_spec"] and config["device"].type == "cpu"
        if cpu_ddp:
            config["single_spec"] = True
            try:
                super().__init__(config, model)
            finally:
                config["single_spec"] = False
            self.distributed_model = torch.nn.parallel.DistributedDataParallel(self.model)
        else:
            super().__init__(config, model)
        self.epoch_seconds: list[float] = []
        self.valid_seconds: list[float] = []
        self.valid_history: list[tuple[int, dict]] = []
        self.saved_model_file = self._unique_checkpoint_path()

    def _unique_checkpoint_path(self) -> str:
        name = (f"{self.config['model']}-{self.config['dataset']}-{get_local_time()}"
                f"-{os.getpid()}-{uuid.uuid4().hex[:6]}.pth")
        path = os.path.join(self.checkpoint_dir, name)
        if not self.config["single_spec"]:
            import torch.distributed as dist

            shared = [path]
            dist.broadcast_object_list(shared, src=0)
            path = shared[0]
        return path

    @property
    def trust_legacy(self) -> bool:
        return bool(self.config["trust_legacy_checkpoint"])

    def _train_epoch(self, *args, **kwargs):
        start = time.perf_counter()
        result = super()._train_epoch(*args, **kwargs)
        self.epoch_seconds.append(time.perf_counter() - start)
        return result

    def _valid_epoch(self, *args, **kwargs):
        start = time.perf_counter()
        result = super()._valid_epoch(*args, **kwargs)
        self.valid_seconds.append(time.perf_counter() - start)
        self.valid_history.append((len(self.epoch_seconds), to_plain(result[1])))
        return result

    def _checkpoint_state(self, epoch: int) -> dict:
        state = {
            "format": CHECKPOINT_FORMAT,
            "model": self.config["model"],
            "dataset": self.config["dataset"],
            "preset": self.config["preset"],
            "config": to_plain(self.config.final_config_dict),
            "external_config": to_plain(_external_config(self.config)),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": pack_other_parameter(self.model.other_parameter()),
            "optimizer": self.optimizer.state_dict(),
        }
        if hasattr(self, "extra_checkpoint_state"):
            state["extra"] = self.extra_checkpoint_state()
        return state

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        tmp = f"{path}.tmp{os.getpid()}"
        torch.save(self._checkpoint_state(epoch), tmp)
        os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint
        if verbose:
            self.logger.info(f"Saving current: {path}")

    def resume_checkpoint(self, resume_file):
        resume_file = str(resume_file)
        checkpoint = load_checkpoint(resume_file, self.device, self.trust_legacy)
        self.saved_model_file = resume_file
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        saved_model = checkpoint_config(checkpoint)["model"]
        if saved_model.lower() != self.config["model"].lower():
            raise ValueError(f"{resume_file} holds a {saved_model} checkpoint; "
                             f"cannot resume model {self.config['model']} from it")
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(unpack_other_parameter(checkpoint.get("other_parameter")))
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if "extra" in checkpoint and hasattr(self, "load_extra_checkpoint_state"):
            self.load_extra_checkpoint_state(checkpoint["extra"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def load_best_model(self, model_file: str | None = None) -> None:
        """Load the weights of ``model_file`` (default: this run's best checkpoint)."""
        path = model_file or self.saved_model_file
        checkpoint = load_checkpoint(path, self.device, self.trust_legacy)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(unpack_other_parameter(checkpoint.get("other_parameter")))
        self.logger.info(f"Loading model structure and parameters from {path}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            if not self.config["single_spec"]:
                import torch.distributed as dist

                dist.barrier()  # rank 0 writes the checkpoint the other ranks are about to read
            self.load_best_model(model_file)
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)


@lru_cache(maxsize=None)
def with_ext_mixin(trainer_class: type) -> type:
    """``trainer_class`` with :class:`ExtTrainerMixin` first in its MRO (cached per class).

    Trainers outside RecBole's ``Trainer`` hierarchy (decision trees) are returned as is.
    """
    if not isinstance(trainer_class, type) or not issubclass(trainer_class, Trainer):
        return trainer_class
    if issubclass(trainer_class, ExtTrainerMixin):
        return trainer_class
    return type(trainer_class.__name__, (ExtTrainerMixin, trainer_class),
                {"__module__": trainer_class.__module__, "__doc__": trainer_class.__doc__})


def complete_recbole_model(model: torch.nn.Module) -> torch.nn.Module:
    """Fill what a built RecBole model leaves missing for some users (fix 4); returns ``model``."""
    from recbole.model.knowledge_aware_recommender import RippleNet

    if isinstance(model, RippleNet):
        padding = torch.zeros(model.n_memory, dtype=torch.long, device=model.device)
        hops = [(padding, padding, padding)] * model.n_hop
        missing = [user for user in range(model.n_users) if user not in model.ripple_set]
        for user in missing:
            model.ripple_set[user] = list(hops)
        if missing:
            model.logger.info(f"RippleNet: {len(missing)} users without a training interaction get padding memories")
    return model
