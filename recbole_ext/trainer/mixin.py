"""What every trainer of a recbole-ext run adds to RecBole's: safe checkpoints, unique
checkpoint names, DDP on CPU and per-epoch timings.

:func:`with_ext_mixin` puts :class:`ExtTrainerMixin` first in the MRO of any RecBole
``Trainer`` (``recbole_ext.registry.get_trainer`` does it for every model), so RecBole's
own trainers get the fixes without being patched:

1. **Checkpoints** in the weights-only format of :mod:`recbole_ext.checkpoint`.
2. **Unique checkpoint names.** RecBole names checkpoints ``<Model>-<second>.pth``, so runs
   started in the same second overwrite each other; ours add dataset, pid and a random
   token (:attr:`ExtTrainerMixin.run_token`, shared with the run's results file).
3. **DDP beyond one GPU per local rank.** RecBole builds
   ``DistributedDataParallel(device_ids=[local_rank])``, which only works with one GPU per
   local process, and lets only rank 0 name the checkpoint file. The mixin wraps the model on
   the device the Config chose (CPU: no ``device_ids``; several processes may share a GPU),
   broadcasts rank 0's file name, and lets only global rank 0 write checkpoints. (The process
   group itself is set up in :meth:`recbole_ext.config.Config._init_device`.)
"""

from __future__ import annotations

import os
import time
import uuid
from functools import lru_cache

from recbole.trainer import Trainer
from recbole.utils import get_local_time
from torch.nn.parallel import DistributedDataParallel

from recbole_ext.checkpoint import (
    checkpoint_config,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
    trainer_checkpoint,
)
from recbole_ext.utils import global_rank, to_plain


class ExtTrainerMixin:
    """Safe checkpoints, unique file names, CPU DDP and epoch timings for any RecBole Trainer.

    Trainers may add plain data to the checkpoint by defining
    ``extra_checkpoint_state() -> dict`` and ``load_extra_checkpoint_state(state)``, and
    entries to the run's results by defining ``extra_results() -> dict``.

    Attributes:
        epoch_seconds: wall-clock seconds of each training epoch.
        valid_seconds: wall-clock seconds of each validation pass.
        valid_history: ``(training epochs done, validation result)`` of each validation pass,
            for metric-by-epoch plots.
        run_token: ``<time>-<pid>-<random>``, unique per run (rank 0's under DDP); it names
            the checkpoint and the results file.
    """

    def __init__(self, config, model):
        if config["single_spec"]:
            super().__init__(config, model)
        else:
            config["single_spec"] = True
            try:
                super().__init__(config, model)
            finally:
                config["single_spec"] = False
            device = config["device"]
            # integer buffers are lookup tables every rank builds alike from the data and the
            # seed (KNI's neighbour table); DDP would broadcast them, which gloo refuses for int16
            tables = [name for name, buffer in self.model.named_buffers() if not buffer.is_floating_point()]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.model, tables)
            self.distributed_model = DistributedDataParallel(
                self.model, device_ids=[device] if device.type == "cuda" else None)
        self.epoch_seconds: list[float] = []
        self.valid_seconds: list[float] = []
        self.valid_history: list[tuple[int, dict]] = []
        self.run_token = self._shared_run_token()
        self.saved_model_file = os.path.join(
            self.checkpoint_dir, f"{self.config['model']}-{self.config['dataset']}-{self.run_token}.pth")

    def _shared_run_token(self) -> str:
        token = f"{get_local_time()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        if not self.config["single_spec"]:
            import torch.distributed as dist

            shared = [token]
            dist.broadcast_object_list(shared, src=0)
            token = shared[0]
        return token

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

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and global_rank(self.config) != 0:
            return
        if self.valid_history and self.valid_history[-1][0] == len(self.epoch_seconds):
            # RecBole saves before it records the new best result: the validation just run is it
            self.best_valid_result = self.valid_history[-1][1]
        path = save_checkpoint(trainer_checkpoint(self, epoch),
                               kwargs.pop("saved_model_file", self.saved_model_file))
        if verbose:
            self.logger.info(f"Saving current: {path}")

    def resume_checkpoint(self, resume_file):
        resume_file = str(resume_file)
        checkpoint = load_checkpoint(resume_file, self.device, self.trust_legacy)
        saved_model = checkpoint_config(checkpoint)["model"]
        if saved_model.lower() != self.config["model"].lower():
            raise ValueError(f"{resume_file} holds a {saved_model} checkpoint; "
                             f"cannot resume model {self.config['model']} from it")
        self.saved_model_file = resume_file
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        # checkpoints from before these entries resume without them
        self.best_valid_result = checkpoint.get("best_valid_result", self.best_valid_result)
        for name, values in checkpoint.get("history", {}).items():
            setattr(self, name, [tuple(v) if name == "valid_history" else v for v in values])
        load_model_state(self.model, checkpoint, resume_file, self.config["dataset"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if "extra" in checkpoint and hasattr(self, "load_extra_checkpoint_state"):
            self.load_extra_checkpoint_state(checkpoint["extra"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def load_best_model(self, model_file: str | None = None) -> None:
        """Load the weights of ``model_file`` (default: this run's best checkpoint)."""
        path = model_file or self.saved_model_file
        load_model_state(self.model, load_checkpoint(path, self.device, self.trust_legacy), path,
                         self.config["dataset"])
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
