"""Trainer for DLR2: RecBole's trainer plus the official cosine learning-rate schedule.

The official DLR2 code (https://github.com/zhangynnancy/Leporid_DLR2, ``codes/DLR2/main.py``)
anneals Adam's learning rate with ``CosineAnnealingLR`` over its whole run. Here the
schedule steps once per epoch with ``T_max = epochs``; its state travels in the
checkpoint so a resumed run continues the same curve.
"""

from __future__ import annotations

from torch.optim.lr_scheduler import CosineAnnealingLR
from recbole.trainer import Trainer


class DLR2Trainer(Trainer):
    """RecBole ``Trainer`` with a per-epoch cosine-annealed learning rate."""

    def __init__(self, config, model) -> None:
        super().__init__(config, model)
        self.scheduler = CosineAnnealingLR(self.optimizer, T_max=max(1, self.epochs))

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.scheduler.step()
        return loss

    def extra_checkpoint_state(self) -> dict:
        return {"scheduler": self.scheduler.state_dict()}

    def load_extra_checkpoint_state(self, state: dict) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
