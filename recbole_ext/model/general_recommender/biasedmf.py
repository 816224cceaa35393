r"""BiasedMF: matrix factorisation with biases for explicit ratings (the "MF" row of NRP's tables).

Reference:
    Yehuda Koren, Robert Bell and Chris Volinsky. "Matrix Factorization Techniques for
    Recommender Systems." IEEE Computer 42(8), 2009, Eq. (4)-(5); used as the MF baseline
    in Raziperchikolaei et al., arXiv:2010.06070 (2020), Tables 2-4 (SGD, lr 0.1,
    regularisation 1e-4, Table 6; 0.26M parameters on ml-100k, i.e. 100 factors).

Model:

.. math::
    \hat r_{jk} = \mu + b_j + b_k + p_j^\top q_k,
    \qquad
    \min \frac{1}{|B|}\sum_{(j,k)\in B} (r_{jk} - \hat r_{jk})^2
    + \lambda \frac{1}{|B|}\sum_{(j,k)\in B}(\lVert p_j\rVert^2 + \lVert q_k\rVert^2 + b_j^2 + b_k^2),

with :math:`\mu` the mean training rating (a fixed buffer, not learned).

Deviations: the regulariser is applied to the rows used in the batch (``reg_weight``),
as in SGD-style MF, rather than through the optimiser's ``weight_decay`` on all rows.
"""

from __future__ import annotations

import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType
from torch import nn

from recbole_ext.model.general_recommender._rating_encoders import (
    RATING_MODEL_PARAMS,
    check_common,
)
from recbole_ext.params import ParamSpec, integer, real


class BiasedMF(GeneralRecommender):
    """Biased matrix factorisation trained on observed ratings with squared error.

    Args:
        config: RecBole config; keys in ``properties/model/BiasedMF.yaml``:
            ``embedding_size``, ``reg_weight``.
        dataset: the training dataset (its mean rating is :math:`\\mu`).
    """

    input_type = InputType.POINTWISE
    PARAMS = RATING_MODEL_PARAMS | ParamSpec({"embedding_size": integer(1), "reg_weight": real(0)})

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        name = type(self).__name__
        # parameters (a recbole-ext Config has checked them already; a hand-built config has not)
        self.PARAMS.apply(name, config)
        check_common(name, config, dataset)
        self.LABEL = config["LABEL_FIELD"]
        size, self.reg_weight = config["embedding_size"], config["reg_weight"]
        self.user_embedding = nn.Embedding(self.n_users, size)
        self.item_embedding = nn.Embedding(self.n_items, size)
        self.user_bias = nn.Embedding(self.n_users, 1)
        self.item_bias = nn.Embedding(self.n_items, 1)
        ratings = dataset.inter_feat[self.LABEL]
        self.register_buffer("global_mean", ratings.float().mean().reshape(()))
        nn.init.normal_(self.user_embedding.weight, std=0.01)
        nn.init.normal_(self.item_embedding.weight, std=0.01)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Predicted ratings: ``[B]``."""
        dot = (self.user_embedding(user) * self.item_embedding(item)).sum(dim=1)
        return self.global_mean + self.user_bias(user).squeeze(1) + self.item_bias(item).squeeze(1) + dot

    def calculate_loss(self, interaction) -> torch.Tensor:
        user, item = interaction[self.USER_ID], interaction[self.ITEM_ID]
        error = ((self.forward(user, item) - interaction[self.LABEL]) ** 2).mean()
        reg = (self.user_embedding(user).pow(2).sum(1) + self.item_embedding(item).pow(2).sum(1)
               + self.user_bias(user).squeeze(1) ** 2 + self.item_bias(item).squeeze(1) ** 2).mean()
        return error + self.reg_weight * reg

    def predict(self, interaction) -> torch.Tensor:
        return self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID])

    def full_sort_predict(self, interaction) -> torch.Tensor:
        """Ratings of each user in the batch for every item: ``[B * n_items]``."""
        user = interaction[self.USER_ID]
        scores = self.user_embedding(user) @ self.item_embedding.weight.T  # [B, n_items]
        scores = scores + self.user_bias(user) + self.item_bias.weight.T + self.global_mean
        return scores.reshape(-1)
