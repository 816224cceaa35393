"""Trainer for KNI/NI: recommendation batches only, l2 as Adam weight decay, selection recorded.

RecBole's ``KGTrainer`` alternates or mixes KG-triple batches (for models with a KG loss);
KNI has none, so every epoch reads the user-item rows of the knowledge dataloader in its
``RS`` state.

The reference adds ``l2_reg * ||v||^2 / 2`` over the *whole* embedding table to the loss at
every step. Its gradient is ``l2_reg * v``, which is exactly what Adam's (coupled)
``weight_decay = l2_reg`` adds to the gradient, so the term moves into the optimiser for the
model's ``regularized_parameters()`` (biases get none, as in the reference), which spares
differentiating a whole-table term at every step. The logged training loss is then the BCE
alone. Which split selected the model (``select_on_test``, see
:mod:`recbole_ext.data.labeled`) is returned by :meth:`extra_results` into the results JSON.
"""

from __future__ import annotations

from recbole.trainer import Trainer
from recbole.utils import KGDataLoaderState
from torch import optim


class KNITrainer(Trainer):
    """RecBole's ``Trainer`` on the rating part of a ``KnowledgeBasedDataLoader``."""

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if not self.config["single_spec"]:
            train_data.knowledge_shuffle(epoch_idx)
        train_data.set_mode(KGDataLoaderState.RS)
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func,
                                    show_progress=show_progress)

    def _build_optimizer(self, **kwargs):
        model = self.model
        if (kwargs or self.learner.lower() != "adam" or self.weight_decay
                or not hasattr(model, "regularized_parameters")):
            return super()._build_optimizer(**kwargs)
        regularized = list(model.regularized_parameters())
        chosen = {id(p) for p in regularized}
        rest = [p for p in model.parameters() if id(p) not in chosen]
        groups = [{"params": regularized, "weight_decay": model.l2_reg}]
        if rest:
            groups.append({"params": rest, "weight_decay": 0.0})
        model.l2_in_loss = False  # the optimiser applies it now; never count it twice
        try:
            return optim.Adam(groups, lr=self.learning_rate, eps=1e-8, fused=True)
        except (RuntimeError, TypeError):  # no fused kernel for this device/dtype
            return optim.Adam(groups, lr=self.learning_rate, eps=1e-8)

    def extra_results(self) -> dict:
        on_test = bool(self.config["select_on_test"])
        return {"model_selection": "test split (select_on_test; official KNI protocol, comparison only)"
                if on_test else "validation split",
                "acc_threshold": self.config["acc_threshold"],
                "graph": self.model.graph_report() if hasattr(self.model, "graph_report") else None}
