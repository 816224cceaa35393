"""Trainers for the explicit-rating models (NRP family and its baselines).

* :class:`RatingTrainer`: RecBole's ``Trainer`` whose evaluation collector also records
  user ids, which precision@p% (:class:`recbole_ext.evaluator.rating_metrics.RatingPrecision`)
  groups by.
* :class:`AlternatingTrainer`: the alternating optimisation of the autoencoder baselines
  with MF terms (aSDAE, DHA; Eq. 1 of Raziperchikolaei et al., arXiv:2010.06070): for
  every batch, first a plain-SGD step on the free representations U, V with the networks
  fixed, then a step of the configured optimiser on the network weights with U, V fixed.
  The paper alternates the two blocks without saying how often; once per batch keeps
  both blocks in step with RecBole's batching.
"""

from __future__ import annotations

import torch
from recbole.trainer import Trainer

from recbole_ext.evaluator.rating_metrics import RatingCollector


class RatingTrainer(Trainer):
    """RecBole's trainer with :class:`RatingCollector` (user ids for precision@p%).

    ``learner: rmsprop`` takes its decay and epsilon from ``rmsprop_rho`` and
    ``rmsprop_eps`` when they are set. The paper trained with Keras, whose RMSprop
    defaults are rho 0.9 and eps 1e-7 (PyTorch's: alpha 0.99, eps 1e-8); the model yamls
    use Keras' values. With PyTorch's, the first steps of NRP-direct on ml-100k blew the
    batch MSE up to ~17,000 and 300 batches ended at validation RMSE 1.060; with Keras'
    the peak was ~650 and the same 300 batches ended at 0.974.
    """

    def __init__(self, config, model) -> None:
        super().__init__(config, model)
        self.eval_collector = RatingCollector(config)

    def _build_optimizer(self, **kwargs):
        learner = kwargs.get("learner", self.learner)
        rho, eps = self.config["rmsprop_rho"], self.config["rmsprop_eps"]
        if str(learner).lower() != "rmsprop" or (rho is None and eps is None):
            return super()._build_optimizer(**kwargs)
        defaults = torch.optim.RMSprop([torch.zeros(1)]).defaults
        return torch.optim.RMSprop(kwargs.get("params", self.model.parameters()),
                                   lr=kwargs.get("learning_rate", self.learning_rate),
                                   alpha=defaults["alpha"] if rho is None else rho,
                                   eps=defaults["eps"] if eps is None else eps,
                                   weight_decay=kwargs.get("weight_decay", self.weight_decay))


class AlternatingTrainer(RatingTrainer):
    """Alternating U,V / network updates for models with ``mf_parameters()`` and ``calculate_mf_loss()``.

    Config keys (in the model's yaml): ``mf_learning_rate`` (SGD step on U, V; the paper
    uses 0.1; the model's U,V loss is summed over the batch's ratings, so this is a
    per-rating step). The main optimiser (``learner``, ``learning_rate``, ``weight_decay``,
    and RecBole's ``clip_grad_norm``) updates every other parameter.
    """

    def __init__(self, config, model) -> None:
        super().__init__(config, model)
        self.mf_optimizer = torch.optim.SGD(model.mf_parameters(), lr=config["mf_learning_rate"])

    def _build_optimizer(self, **kwargs):
        mf_ids = {id(p) for p in self.model.mf_parameters()}
        kwargs.setdefault("params", [p for p in self.model.parameters() if id(p) not in mf_ids])
        return super()._build_optimizer(**kwargs)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        network_loss = loss_func or self.model.calculate_loss

        def alternate(interaction):
            self.mf_optimizer.zero_grad()
            mf_loss = self.model.calculate_mf_loss(interaction)
            mf_loss.backward()
            self.mf_optimizer.step()
            # U,V gradients are spent: keep them out of the network step's gradient-norm clip
            self.mf_optimizer.zero_grad(set_to_none=True)
            return network_loss(interaction)

        return super()._train_epoch(train_data, epoch_idx, loss_func=alternate, show_progress=show_progress)

    def extra_checkpoint_state(self) -> dict:
        return {"mf_optimizer": self.mf_optimizer.state_dict()}

    def load_extra_checkpoint_state(self, state: dict) -> None:
        self.mf_optimizer.load_state_dict(state["mf_optimizer"])
