r"""NRP-direct: neural representations for explicit rating prediction.

Reference:
    Ramin Raziperchikolaei, Tianyu Li and Young-joo Chung. "Neural Representations in
    Hybrid Recommender Systems: Prediction versus Regularization." arXiv:2010.06070 (2020),
    §3.2 ("NRP with a direct structure"), Eq. (6), Fig. 2 and supplementary Table 6.

No reference code was published; this is a re-implementation from the paper.

Model (Eq. 6). For user :math:`j` the encoding network maps every information source to
a low-dimensional vector and concatenates them,

.. math::
    z_j = [g^u_{rating}(R_{j,:}),\ g^u_{1}(X_{j,1}),\ \dots,\ g^u_{S_u}(X_{j,S_u})],

where :math:`R_{j,:}` is the user's row of the *training* rating matrix (0 = unknown)
and :math:`X_{j,s}` the bag of words of side-information field :math:`s`; the item
vector :math:`z_k` is built the same way from the column :math:`R_{:,k}` and the item
fields. The prediction network :math:`h` (fully connected, linear output) maps the
joint representation to the rating, and the loss is the squared error over observed
ratings:

.. math::
    \min_\theta \frac{1}{|\Omega|}\sum_{(j,k)\in\Omega} (R_{jk} - h([z_j, z_k]))^2
    + \lambda_1 \lVert\theta\rVert^2 .

:math:`\lambda_1` is RecBole's ``weight_decay`` (the "regu." column of Table 6). With
``use_id_embedding`` an ID embedding is one more source (§3.2, "ID of the users and items
as another source of information").

Every source of a user (item) has the same encoder layer sizes, ``encoder_layers``
([500, 200, 100] on ml-100k, [1000, 500, 300, 100] on ml-1m). With the ml-100k preset
(4 user fields, 2 item fields) this gives 4.58M parameters, against the paper's 4.7M
(Table 2); the gap is the vocabulary sizes of the bag-of-words inputs, which depend on
tokenisation.

The first layer over a rating vector sums the rows of its weight for the rated items,
weighted by the ratings (:class:`~recbole_ext.model.general_recommender._rating_encoders.FirstLayer`),
which equals the dense product but costs the number of ratings of the batch's users
(items) rather than ``B x n_items``. With ``fast_path`` (the default) a batch encodes each
distinct user and item once, and each distinct value of a side field once (an age group,
a genre combination), instead of once per rating: the same numbers and gradients
(:func:`~recbole_ext.model.general_recommender._rating_encoders.encode_distinct`) for
about half the fully connected arithmetic at ML-1M's sizes (timings in
``benchmarks/results/nrp/speed.md``).

Deviations and choices not fixed by the paper:
    * The first layer of a token-field encoder is an ``EmbeddingBag`` (sum), which equals
      a dense layer over the multi-hot bag of words; a token repeated in a title counts
      once, as in a multi-hot vector.
    * Weights are Glorot-uniform with zero biases (Keras' default; the paper used Keras).
    * Training rating vectors include the rating being predicted (the paper does not mask
      it); validation and test ratings never enter any input vector.

Options beyond the paper (off by default, so the defaults stay Table 6's setting):
    * ``rating_input_dropout`` p: during training each entry of a rating vector is dropped
      with probability p and the kept ones are scaled by 1/(1-p) (inverted dropout on the
      encoder input, the masking noise of denoising autoencoders).
    * ``clip_predictions``: predictions are clamped to the range of the training ratings.
    * ``weight_averaging`` (read by :class:`~recbole_ext.trainer.rating.RatingTrainer`):
      validate and test an exponential moving average of the weights.
    With all three and half Table 6's learning rate, NRP-direct reaches the paper's ml-100k
    RMSE (``nrp-ml-100k-averaged`` preset; figures in ``benchmarks/README.md``).
"""

from __future__ import annotations

import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType
from torch import nn

from recbole_ext.model.general_recommender._rating_encoders import (
    ACTIVATIONS,
    RATING_MODEL_PARAMS,
    SideInformation,
    SourceEncoder,
    SparseRatingRows,
    build_mlp,
    check_common,
    encode_distinct,
    init_dense,
    keep_mask,
    rating_matrix,
)
from recbole_ext.params import ParamSpec, boolean, choice, int_list, integer, real


class DirectTower(nn.Module):
    """The encoding network of Fig. 2 for users or items: one encoder per source, concatenated.

    Args:
        rows: the training rating vectors of this side (user rows or item columns).
        side: side-information sources, or None to use the ratings only (Table 5).
        layers: encoder widths shared by every source.
        activation: a key of :data:`ACTIVATIONS`.
        n_ids: number of ids for an ID-embedding source, or 0 for none.
        id_size: width of the ID embedding.
        input_dropout: probability of dropping each rating-vector entry during training.
        fast: encode each distinct id (and side-information value) of a batch once when
            every copy has the same input (:func:`encode_distinct`), and build the rating
            layer's weight gradient column by column; False is the reference computation
            (every rating's copy encoded, PyTorch's ``EmbeddingBag`` backward; the same
            numbers up to float rounding).
    """

    def __init__(self, rows: SparseRatingRows, side: SideInformation | None, layers: list[int],
                 activation: str, n_ids: int, id_size: int, input_dropout: float = 0.0,
                 fast: bool = True) -> None:
        super().__init__()
        self.rows = rows
        self.input_dropout = input_dropout
        self.fast = fast
        self.side = side
        self.rating_encoder = SourceEncoder(None, rows.n_cols, layers, activation, fast)
        spec = side.spec if side is not None else []
        self.side_encoders = nn.ModuleList(
            SourceEncoder(ftype, width, layers, activation, fast) for _, ftype, width in spec)
        self.id_embedding = nn.Embedding(n_ids, id_size) if n_ids else None
        self.out_features = layers[-1] * (1 + len(spec)) + (id_size if n_ids else 0)

    def forward(self, ids: torch.Tensor, hide: torch.Tensor | None = None) -> torch.Tensor:
        """Representation ``z`` of each id: ``[B, out_features]``.

        ``hide`` (``[B]``, optional) names one column per row whose rating is left out of
        the rating vector: the rating being predicted, during training.
        """
        # copies of an id differ only when their rating vectors are masked per rating
        if self.fast and hide is None and not (self.training and self.input_dropout > 0):
            return encode_distinct(self._encode, ids)
        return self._encode(ids, hide)

    def _encode(self, ids: torch.Tensor, hide: torch.Tensor | None = None) -> torch.Tensor:
        ratings = self.rows.gather(ids)
        keep = None if hide is None else (ratings.cols != hide[ratings.rows]).float()
        if self.training and self.input_dropout > 0:
            kept = keep_mask(ratings.values, self.input_dropout) / (1.0 - self.input_dropout)
            keep = kept if keep is None else keep * kept
        parts = [self.rating_encoder(ratings, keep)]
        if self.side is not None:
            for (field, _, _), encoder in zip(self.side.spec, self.side_encoders):
                parts.append(encoder(self.side.tokens(field, ids), keys=self.side.codes(field, ids)))
        if self.id_embedding is not None:
            parts.append(self.id_embedding(ids))
        return torch.cat(parts, dim=1)


class NRP(GeneralRecommender):
    """NRP-direct (Raziperchikolaei et al., arXiv:2010.06070, §3.2).

    Args:
        config: RecBole config; keys in ``properties/model/NRP.yaml``:
            ``encoder_layers``, ``prediction_layers``, ``activation``, ``use_side_info``,
            ``user_side_fields``, ``item_side_fields``, ``use_id_embedding``,
            ``id_embedding_size``.
        dataset: the *training* dataset; its ratings become the encoders' inputs.
    """

    input_type = InputType.POINTWISE
    PARAMS = RATING_MODEL_PARAMS | ParamSpec({
        "encoder_layers": int_list(1),
        "prediction_layers": int_list(1, last=1),
        "activation": choice(*ACTIVATIONS),
        "use_side_info": boolean(),
        "use_id_embedding": boolean(),
        "id_embedding_size": integer(1),
        "mask_target_rating": boolean(),
        "rating_input_norm": choice("none", "l2"),
        "rating_input_dropout": real(0, 1, high_open=True).or_none(),
        "clip_predictions": boolean().or_none(),
    })

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        name = type(self).__name__
        # parameters (a recbole-ext Config has checked them already; a hand-built config has not)
        self.PARAMS.apply(name, config)
        check_common(name, config, dataset)
        self.LABEL = config["LABEL_FIELD"]
        layers, prediction = list(config["encoder_layers"]), list(config["prediction_layers"])
        activation = config["activation"]
        use_side, use_ids, id_size = config["use_side_info"], config["use_id_embedding"], config["id_embedding_size"]
        self.mask_target_rating = config["mask_target_rating"]
        norm = config["rating_input_norm"]
        input_dropout = config["rating_input_dropout"] or 0.0
        clip = config["clip_predictions"] or False
        fast = True if config["fast_path"] is None else config["fast_path"]

        ratings = rating_matrix(dataset, self.LABEL)
        user_side = item_side = None
        if use_side:
            user_side = SideInformation(dataset, "user", config["user_side_fields"] or [], name)
            item_side = SideInformation(dataset, "item", config["item_side_fields"] or [], name)
        self.user_tower = DirectTower(SparseRatingRows(ratings, norm), user_side, layers, activation,
                                      self.n_users if use_ids else 0, id_size, input_dropout, fast)
        self.item_tower = DirectTower(SparseRatingRows(ratings.T, norm), item_side, layers, activation,
                                      self.n_items if use_ids else 0, id_size, input_dropout, fast)
        labels = dataset.inter_feat[self.LABEL]
        self.rating_range = (float(labels.min()), float(labels.max())) if clip else None
        joint = self.user_tower.out_features + self.item_tower.out_features
        self.predictor = build_mlp([joint] + prediction, activation, last_activation=False)
        self.loss = nn.MSELoss()
        self.apply(init_dense)

    def forward(self, user: torch.Tensor, item: torch.Tensor, hide_target: bool = False) -> torch.Tensor:
        """Predicted ratings ``h([z_j, z_k])``: ``[B]``.

        With ``hide_target`` R_jk is left out of both rating vectors (user j's row and item
        k's column), so a training rating is predicted from the same kind of input as a
        test rating, which is never in the training matrix.
        """
        user_z = self.user_tower(user, item if hide_target else None)
        item_z = self.item_tower(item, user if hide_target else None)
        return self.predictor(torch.cat([user_z, item_z], dim=1)).squeeze(-1)

    def calculate_loss(self, interaction) -> torch.Tensor:
        prediction = self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID],
                                  hide_target=self.mask_target_rating)
        return self.loss(prediction, interaction[self.LABEL])

    def _clipped(self, ratings: torch.Tensor) -> torch.Tensor:
        return ratings if self.rating_range is None else ratings.clamp(*self.rating_range)

    def predict(self, interaction) -> torch.Tensor:
        return self._clipped(self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID]))

    def full_sort_predict(self, interaction) -> torch.Tensor:
        """Ratings of each user in the batch for every item: ``[B * n_items]``."""
        users = self.user_tower(interaction[self.USER_ID])  # [B, du]
        items = self.item_tower(torch.arange(self.n_items, device=self.device))  # [n_items, di]
        joint = torch.cat([users.unsqueeze(1).expand(-1, self.n_items, -1),
                           items.unsqueeze(0).expand(len(users), -1, -1)], dim=2)
        return self._clipped(self.predictor(joint).reshape(-1))
