r"""NRP-DHA: the NRP objective (Eq. 2) on DHA's heterogeneous user and item autoencoders.

Reference:
    Ramin Raziperchikolaei, Tianyu Li and Young-joo Chung. "Neural Representations in
    Hybrid Recommender Systems: Prediction versus Regularization." arXiv:2010.06070 (2020),
    §3.1, Eq. (2); Table 2 row "NRP_DHA"; Table 6 (ml-100k: RMSprop, lr 1e-3, regu. 0.03,
    tanh). The autoencoders follow Li et al., "Deep Heterogeneous Autoencoders for
    Collaborative Filtering", ICDM 2018.

.. math::
    \min_\theta L(f^u(g^u(R,X))) + L(f^i(g^i(R,Y)))
    + \lambda_1\sum_{j,k}1(R_{jk}>0)\,(R_{jk} - g^u(R_{j,:},X_{j,:})^\top g^i(R_{:,k},Y_{k,:}))^2

One encoder per information source (ratings, each side field), fused into the
representation; one decoder per source. Tower layout, reconstruction loss, corruption
and deviations are documented in :mod:`recbole_ext.model.general_recommender._autoencoders`.
"""

from __future__ import annotations

from recbole_ext.model.general_recommender._autoencoders import AutoencoderRatingModel


class NRPDHA(AutoencoderRatingModel):
    """DHA autoencoders whose encoder outputs predict the rating by a dot product (Eq. 2).

    Args:
        config: RecBole config; keys in ``properties/model/NRPDHA.yaml``:
            ``encoder_layers``, ``activation``, ``use_side_info``, ``user_side_fields``,
            ``item_side_fields``, ``noise_ratio``, ``side_reconstruction_weight``,
            ``rating_weight`` (λ1).
        dataset: the training dataset (its ratings are the autoencoders' inputs).
    """

    tower_kind = "dha"
    with_mf = False
