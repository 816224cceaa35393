"""Trainer for DLR2: RecBole's trainer plus the official cosine learning-rate schedule.

The official DLR2 code (https://github.com/zhangynnancy/Leporid_DLR2, ``codes/DLR2/main.py``)
has no epochs: it runs ``max_iteration`` = 5000 Adam steps on batches of 32 positives (each
with one negative sharing its state) and anneals the learning rate with
``CosineAnnealingLR(T_max = max_iteration)``, stepped once per iteration.

Two budgets are supported:

- ``dlr2_batches_per_epoch: ~`` (default): RecBole epochs over the whole training split;
  the schedule steps once per epoch with ``T_max = epochs``.
- ``dlr2_batches_per_epoch: N``: every epoch stops after ``N`` batches of the shuffled
  training split (a fresh random subset each epoch, as the official random draws), and the
  schedule steps once per batch with ``T_max = epochs * N``. ``epochs: 10``,
  ``dlr2_batches_per_epoch: 500``, ``train_batch_size: 32`` is the official budget of 5000
  iterations, validated every 500. ``T_max`` assumes every epoch has ``N`` batches; with a
  smaller training split the learning rate stops short of 0.

The scheduler state travels in the checkpoint so a resumed run continues the same curve.
"""

from __future__ import annotations

from itertools import islice

from recbole.trainer import Trainer
from torch.optim.lr_scheduler import CosineAnnealingLR


class FirstBatches:
    """The first ``limit`` batches of each pass over ``loader``; the LR scheduler steps after each.

    RecBole's ``_train_epoch`` calls ``optimizer.step()`` inside its loop over this iterable,
    so stepping the scheduler when the next batch is requested (and once when the pass ends)
    is stepping it after every optimiser step, without re-implementing that loop.
    """

    def __init__(self, loader, limit: int, scheduler) -> None:
        self.loader, self.limit, self.scheduler = loader, limit, scheduler

    def __len__(self) -> int:
        return min(self.limit, len(self.loader))

    def __iter__(self):
        for index, batch in enumerate(islice(self.loader, self.limit)):
            if index:
                self.scheduler.step()
            yield batch
        self.scheduler.step()

    def __getattr__(self, name):  # shuffle, sampler, ... for RecBole's DDP branch
        return getattr(self.loader, name)


class DLR2Trainer(Trainer):
    """RecBole ``Trainer`` with a cosine-annealed learning rate and an optional batch budget per epoch."""

    def __init__(self, config, model) -> None:
        super().__init__(config, model)
        self.batches_per_epoch = config["dlr2_batches_per_epoch"]  # checked with DLR2's PARAMS
        steps = max(1, self.epochs) * (self.batches_per_epoch or 1)
        self.scheduler = CosineAnnealingLR(self.optimizer, T_max=steps)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.batches_per_epoch is not None:
            limited = FirstBatches(train_data, self.batches_per_epoch, self.scheduler)
            return super()._train_epoch(limited, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.scheduler.step()
        return loss

    def extra_checkpoint_state(self) -> dict:
        return {"scheduler": self.scheduler.state_dict()}

    def load_extra_checkpoint_state(self, state: dict) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
