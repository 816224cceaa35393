r"""aSDAE with MF terms: neural representations as the regulariser (Eq. 1), the NRP paper's baseline.

Reference:
    Xin Dong, Lei Yu, Zhonghuo Wu, Yuxia Sun, Lingfeng Yuan and Fangxi Zhang. "A Hybrid
    Collaborative Filtering Model with Deep Structure for Recommender Systems." AAAI 2017.
    As configured in Raziperchikolaei et al., arXiv:2010.06070 (2020), Eq. (1), Table 2
    row "aSDAE", supplementary material (λ1 = 1, λ2 = λ3 = 0.5, SGD with lr 0.1 on U and V)
    and Table 6 (ml-100k network: SGD, lr 0.1, regu. 1e-5, tanh).

.. math::
    \min_{U,V,\theta} L(f^u(g^u(R,X))) + L(f^i(g^i(R,Y)))
    + \lambda_1\sum_{j,k}1(R_{jk}>0)(R_{jk}-U_{j}V_{k}^\top)^2
    + \lambda_2\lVert U-g^u(R,X)\rVert^2 + \lambda_3\lVert V-g^i(R,Y)\rVert^2 + \text{reg.}

The rating is predicted by :math:`\mu + U_j V_k^\top` (μ: the fixed mean training rating,
our choice; the U,V step is per-rating SGD: see ``_autoencoders``); the encoders only
pull U and V towards their outputs. Training alternates an SGD step on U, V (networks fixed) with a step on
the networks (U, V fixed), see :class:`recbole_ext.trainer.rating.AlternatingTrainer`.
Tower layout, reconstruction loss and deviations: :mod:`recbole_ext.model.general_recommender._autoencoders`.
"""

from __future__ import annotations

from recbole_ext.model.general_recommender._autoencoders import (
    MF_TIE_PARAMS,
    AutoencoderRatingModel,
)


class ASDAE(AutoencoderRatingModel):
    """aSDAE autoencoders tied to free MF factors U, V that predict the rating (Eq. 1).

    Args:
        config: RecBole config; keys in ``properties/model/ASDAE.yaml``: those of
            NRPaSDAE plus ``user_tie_weight`` (λ2), ``item_tie_weight`` (λ3),
            ``mf_learning_rate`` and ``mf_reg_weight``.
        dataset: the training dataset.
    """

    tower_kind = "asdae"
    with_mf = True
    PARAMS = AutoencoderRatingModel.PARAMS | MF_TIE_PARAMS
