r"""NRP-aSDAE: the NRP objective (Eq. 2) on aSDAE's user and item autoencoders.

Reference:
    Ramin Raziperchikolaei, Tianyu Li and Young-joo Chung. "Neural Representations in
    Hybrid Recommender Systems: Prediction versus Regularization." arXiv:2010.06070 (2020),
    §3.1, Eq. (2); Table 2 row "NRP_aSDAE"; Table 6 (ml-100k: RMSprop, lr 1e-3, regu. 0.03,
    tanh). The autoencoders follow Dong et al., "A Hybrid Collaborative Filtering Model
    with Deep Structure for Recommender Systems", AAAI 2017.

.. math::
    \min_\theta L(f^u(g^u(R,X))) + L(f^i(g^i(R,Y)))
    + \lambda_1\sum_{j,k}1(R_{jk}>0)\,(R_{jk} - g^u(R_{j,:},X_{j,:})^\top g^i(R_{:,k},Y_{k,:}))^2

The encoder outputs are the only user/item representations; the rating is their dot
product and everything trains end to end. Tower layout, reconstruction loss, corruption
and deviations are documented in :mod:`recbole_ext.model.general_recommender._autoencoders`.
"""

from __future__ import annotations

from recbole_ext.model.general_recommender._autoencoders import AutoencoderRatingModel


class NRPaSDAE(AutoencoderRatingModel):
    """aSDAE autoencoders whose encoder outputs predict the rating by a dot product (Eq. 2).

    Args:
        config: RecBole config; keys in ``properties/model/NRPaSDAE.yaml``:
            ``encoder_layers``, ``activation``, ``use_side_info``, ``user_side_fields``,
            ``item_side_fields``, ``noise_ratio``, ``side_reconstruction_weight``,
            ``rating_weight`` (λ1).
        dataset: the training dataset (its ratings are the autoencoders' inputs).
    """

    tower_kind = "asdae"
    with_mf = False
