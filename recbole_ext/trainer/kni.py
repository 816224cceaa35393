"""Trainer for KNI/NI: recommendation batches only, and the model-selection split recorded.

RecBole's ``KGTrainer`` alternates or mixes KG-triple batches (for models with a KG loss);
KNI has none, so every epoch reads the user-item rows of the knowledge dataloader in its
``RS`` state. Which split selected the model (``select_on_test``, see
:mod:`recbole_ext.data.labeled`) is returned by :meth:`extra_results` into the results JSON.
"""

from __future__ import annotations

from recbole.trainer import Trainer
from recbole.utils import KGDataLoaderState


class KNITrainer(Trainer):
    """RecBole's ``Trainer`` on the rating part of a ``KnowledgeBasedDataLoader``."""

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if not self.config["single_spec"]:
            train_data.knowledge_shuffle(epoch_idx)
        train_data.set_mode(KGDataLoaderState.RS)
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func,
                                    show_progress=show_progress)

    def extra_results(self) -> dict:
        on_test = bool(self.config["select_on_test"])
        return {"model_selection": "test split (select_on_test; official KNI protocol, comparison only)"
                if on_test else "validation split",
                "acc_threshold": self.config["acc_threshold"],
                "graph": self.model.graph_report() if hasattr(self.model, "graph_report") else None}
