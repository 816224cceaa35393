r"""Autoencoder towers and the shared model behind NRPaSDAE, NRPDHA, ASDAE and DHA.

Raziperchikolaei, Li and Chung, arXiv:2010.06070 (2020), compare two objectives on the
same user and item autoencoders :math:`f^u(g^u(\cdot))`, :math:`f^i(g^i(\cdot))`:

* Eq. (1), the published aSDAE/DHA recommenders ("neural representations as the
  regulariser"): free representations :math:`U, V` predict :math:`R \approx UV^\top`;
  the encoder outputs only pull on them,

  .. math::
      L(f^u(g^u)) + L(f^i(g^i)) + \lambda_1\sum_{jk}1(R_{jk}>0)(R_{jk}-U_jV_k^\top)^2
      + \lambda_2\lVert U-g^u(R,X)\rVert^2 + \lambda_3\lVert V-g^i(R,Y)\rVert^2 ,

  optimised by alternating U,V and network steps (:class:`recbole_ext.trainer.rating.AlternatingTrainer`);
* Eq. (2), NRP: the encoder outputs *are* the representations, trained end to end,

  .. math::
      L(f^u(g^u)) + L(f^i(g^i)) + \lambda_1\sum_{jk}1(R_{jk}>0)(R_{jk}-g^u(R_{j,:},X_j)^\top g^i(R_{:,k},Y_k))^2 .

All sums are taken as means over the batch (the ratings of a batch, and the user/item
rows they touch); :math:`L` is the reconstruction loss below.

Towers (the paper: "the same loss functions and the decoder and encoder structures as
aSDAE [Dong et al., AAAI 2017] and DHA [Li et al., ICDM 2018]", with NRP-direct's layer
sizes, supplementary material):

* ``asdae`` (Dong et al., "A Hybrid Collaborative Filtering Model with Deep Structure for
  Recommender Systems", AAAI 2017): a stacked denoising autoencoder over the corrupted
  rating vector whose every hidden layer, encoder and decoder, also receives the corrupted
  side information, :math:`h_l = \sigma(W_l h_{l-1} + V_l\tilde x + b_l)`; the output
  layer reconstructs both the rating vector and the side information. Encoder widths
  ``encoder_layers`` (e.g. [500, 200, 100]), decoder widths the reverse without the last.
* ``dha`` (Li et al., "Deep Heterogeneous Autoencoders for Collaborative Filtering", ICDM
  2018): one encoder per source (ratings and each side field) with widths
  ``encoder_layers[:-1]``, their outputs concatenated and fused by one layer of width
  ``encoder_layers[-1]`` into the representation; one decoder per source mirrors its encoder.

Reconstruction loss :math:`L`: squared error on the *observed* entries of the rating
vector (a zero means "unknown", as in AutoRec) plus ``side_reconstruction_weight`` times
the mean squared error on every side-information vector (multi-hot bag of words or float
values). Corruption is masking noise: each rating and each side token is dropped with
probability ``noise_ratio`` during training (the clean input is the target).

Deviations: the cited papers tune a weight per source and per term; here one weight
(``side_reconstruction_weight``) covers the side terms. Rating reconstruction ignores
unknown entries (aSDAE reconstructs the full vector) so that predicted zeros are not
rewarded. The alternating schedule is one U,V step per batch.

Computation (``fast_path``, default on; off is the reference computation, kept for
checks): the rating reconstruction computes the output units of the stored entries only
(:func:`~recbole_ext.model.general_recommender._rating_encoders.observed_mse`) instead of
every row's full ``n_items`` (``n_users``) outputs, the rating layers' weight gradients
are built column by column, and prediction encodes each distinct user and item once.
Training with masking noise draws an independent mask for every occurrence of a user or
item, so there every occurrence is encoded. The numbers are the same up to float rounding.

The U,V step of Eq. (1) (``with_mf``). From the NRP paper (Eq. 1 and supplementary
material): λ1 = 1, λ2 = λ3 = 0.5, "SGD with learning rate of 0.1 for the optimization
over the variables U and V", and 0.26M MF parameters on ml-100k, i.e. (943 + 1682) × 100
for U and V alone (no per-user/per-item biases). The paper is silent on the rest; our
choices, and why:

* **Per-rating SGD, not a batch mean.** The step on U,V follows the *summed* objective of
  Eq. (1), as plain MF SGD does: each rating of the batch moves its rows
  :math:`U_j, V_k` by ``mf_learning_rate`` times its own gradient. Averaging over a batch
  of 256 (the first implementation) divided every row's step by ~256; starting from
  N(0, 0.01) factors, whose gradients are proportional to each other, U V^T then stayed
  near zero for several epochs (ml-100k test RMSE 3.5-3.7 after 3 epochs).
  The paper's lr 0.1 belongs to its Keras loss scaling (batch size not given); per
  rating, 0.1 diverged to NaN on ml-100k within one or two epochs even with μ, so the
  default is 0.05 (a free MF probe on the ml-100k split: validation RMSE 1.030 / 0.956 /
  0.973 after epochs 1-3 at 0.05, NaN at 0.1, 1.13 after 3 epochs at 0.01).
* **The tie terms spread over each row's ratings.** Eq. (1) has λ2‖U_j − g^u_j‖² once per
  user against one squared error per rating, so in the per-rating step the tie of
  :math:`U_j` is weighted λ2 / n_j (n_j: the user's training ratings; likewise λ3 / n_k for
  items); one pass over the training ratings then sums to exactly Eq. (1)'s terms. The
  L2 term ``mf_reg_weight`` is per rating, as in plain MF SGD.
* **A fixed global mean.** The prediction is :math:`\mu + U_jV_k^\top`, μ the mean
  training rating (a buffer, not learned; the same offset as our BiasedMF). Without it the
  dot product has to carry the ~3.5 offset itself, which needs large factor norms, and
  the per-rating step is only stable while ``2 * lr * (|U_j|^2 + |V_k|^2) < 2``. No
  per-row biases: the paper's 0.26M leaves no room for them.
* U, V start from N(0, 0.01), as our BiasedMF; the network step (Table 6 optimiser) keeps
  RecBole's batch mean, where the per-occurrence reconstruction and tie terms keep Eq.
  (1)'s per-user ratio between them, and its gradient norm is clipped at 1
  (``clip_grad_norm``; unclipped, aSDAE's network diverged at SGD 0.1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType
from torch import nn
from torch.nn import functional as F

from recbole_ext.model.general_recommender._rating_encoders import (
    ACTIVATIONS,
    RATING_MODEL_PARAMS,
    FirstLayer,
    RatingBatch,
    SideInformation,
    SourceEncoder,
    SparseRatingRows,
    build_mlp,
    check_common,
    encode_distinct,
    init_dense,
    keep_mask,
    observed_mse,
    rating_matrix,
)
from recbole_ext.params import ParamSpec, boolean, choice, int_list, real


class AutoencoderTower(nn.Module):
    """User (or item) autoencoder over the rating vector and the side-information sources.

    Args:
        rows: the training rating vectors of this side.
        side: side-information sources, or None for ratings only.
        layers: encoder widths; the last is the representation size.
        activation: a key of :data:`ACTIVATIONS`.
        kind: ``"asdae"`` or ``"dha"`` (see the module docstring).
        noise_ratio: masking-noise probability during training.
        side_weight: weight of the side-information reconstruction terms.
        fast: compute the rating reconstruction at the stored entries only
            (:func:`observed_mse` with ``sampled``), build the rating layers' weight
            gradients column by column (:class:`FirstLayer`) and, where no masking noise is
            drawn, encode each distinct id and side-information value once; False is the
            reference computation (same numbers up to float rounding).
    """

    def __init__(self, rows: SparseRatingRows, side: SideInformation | None, layers: Sequence[int],
                 activation: str, kind: str, noise_ratio: float, side_weight: float, fast: bool = True) -> None:
        super().__init__()
        self.rows, self.side, self.kind, self.fast = rows, side, kind, fast
        self.noise_ratio, self.side_weight = noise_ratio, side_weight
        self.act = ACTIVATIONS[activation]()
        spec = side.spec if side is not None else []
        self.out_features = layers[-1]
        if kind == "asdae":
            enc = list(layers)
            dec = list(reversed(layers[:-1]))
            # the first layer reads the sparse rating vector (FirstLayer), the others are dense
            self.encoder = nn.ModuleList([FirstLayer(None, rows.n_cols, enc[0], fast=fast)]
                                         + [nn.Linear(a, b) for a, b in zip(enc[:-1], enc[1:])])
            self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(enc[-1:] + dec[:-1], dec))
            # side information enters every hidden layer (V_l x~ in Dong et al.)
            self.side_in = nn.ModuleList(
                nn.ModuleList(FirstLayer(ftype, width, size, bias=False) for _, ftype, width in spec)
                for size in enc + dec)
            top = dec[-1] if dec else enc[-1]
            self.rating_out = nn.Linear(top, rows.n_cols)
            self.side_out = nn.ModuleList(nn.Linear(top, width) for _, _, width in spec)
        else:
            hidden = list(layers[:-1])
            self.source_encoders = nn.ModuleList(
                [SourceEncoder(None, rows.n_cols, hidden, activation, fast)]
                + [SourceEncoder(ftype, width, hidden, activation, fast) for _, ftype, width in spec])
            self.fuse = nn.Linear(hidden[-1] * len(self.source_encoders), layers[-1])
            widths = [rows.n_cols] + [width for _, _, width in spec]
            self.source_decoders = nn.ModuleList(
                build_mlp([layers[-1]] + hidden[::-1], activation) for _ in widths)
            self.source_outputs = nn.ModuleList(nn.Linear(hidden[0], width) for width in widths)

    def _inputs(self, ids: torch.Tensor) -> tuple[RatingBatch, torch.Tensor | None, list, list]:
        """Clean rating vectors, their keep mask (one weight per rating), side values and their keep masks."""
        ratings = self.rows.gather(ids)
        side_values = [self.side.tokens(f, ids) for f, _, _ in self.side.spec] if self.side else []
        if not self._noisy():
            return ratings, None, side_values, [None] * len(side_values)
        keep = keep_mask(ratings.values, self.noise_ratio)
        side_keep = [keep_mask(v, self.noise_ratio) for v in side_values]
        return ratings, keep, side_values, side_keep

    def _side_sum(self, layer: int, side_values: list, side_keep: list) -> torch.Tensor | float:
        return sum((first(v, k) for first, v, k in zip(self.side_in[layer], side_values, side_keep)), 0.0)

    def forward(self, ids: torch.Tensor, reconstruct: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Representation ``g(ids)`` ``[B, d]`` and the reconstruction loss (None if not asked).

        The corrupted input is the clean one with masked entries dropped; the targets are
        the clean ratings and side vectors.
        """
        if self.fast and not reconstruct and not self._noisy():
            return encode_distinct(lambda distinct: self._forward(distinct, False)[0], ids), None
        return self._forward(ids, reconstruct)

    def _noisy(self) -> bool:
        return self.training and self.noise_ratio > 0

    def _forward(self, ids: torch.Tensor, reconstruct: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        ratings, keep, side_values, side_keep = self._inputs(ids)
        if self.kind == "asdae":
            hidden = self.act(self.encoder[0](ratings, keep) + self._side_sum(0, side_values, side_keep))
            for index, layer in enumerate(self.encoder[1:], start=1):
                hidden = self.act(layer(hidden) + self._side_sum(index, side_values, side_keep))
            code = hidden
            if not reconstruct:
                return code, None
            for index, layer in enumerate(self.decoder, start=len(self.encoder)):
                hidden = self.act(layer(hidden) + self._side_sum(index, side_values, side_keep))
            loss = observed_mse(hidden, self.rating_out, ratings, sampled=self.fast)
            side_hat = [out(hidden) for out in self.side_out]
        else:
            parts = [self.source_encoders[0](ratings, keep)]
            codes = [self.side.codes(f, ids) for f, _, _ in self.side.spec] if self.side else []
            parts += [enc(v, k, c) for enc, v, k, c in zip(self.source_encoders[1:], side_values, side_keep, codes)]
            code = self.act(self.fuse(torch.cat(parts, dim=1)))
            if not reconstruct:
                return code, None
            loss = observed_mse(self.source_decoders[0](code), self.source_outputs[0], ratings, sampled=self.fast)
            side_hat = [out(dec(code)) for dec, out in zip(self.source_decoders[1:], self.source_outputs[1:])]
        if side_hat:
            targets = [self.side.dense(index, ids) for index in range(len(side_hat))]
            side_loss = sum(F.mse_loss(hat, target) for hat, target in zip(side_hat, targets)) / len(side_hat)
            loss = loss + self.side_weight * side_loss
        return code, loss


class AutoencoderRatingModel(GeneralRecommender):
    """Shared implementation of NRPaSDAE / NRPDHA (``with_mf=False``) and ASDAE / DHA (``with_mf=True``).

    Subclasses set ``tower_kind`` and ``with_mf``.
    """

    input_type = InputType.POINTWISE
    tower_kind: str = ""
    with_mf: bool = False
    PARAMS = RATING_MODEL_PARAMS | ParamSpec({
        "encoder_layers": int_list(2),  # hidden layers, then the representation size
        "activation": choice(*ACTIVATIONS),
        "use_side_info": boolean(),
        "noise_ratio": real(0, 1, high_open=True),
        "side_reconstruction_weight": real(0),
        "rating_weight": real(0),
    })

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        name = type(self).__name__
        # parameters (a recbole-ext Config has checked them already; a hand-built config has not)
        self.PARAMS.apply(name, config)
        check_common(name, config, dataset)
        self.LABEL = config["LABEL_FIELD"]
        layers, activation, use_side = list(config["encoder_layers"]), config["activation"], config["use_side_info"]
        noise, side_weight = config["noise_ratio"], config["side_reconstruction_weight"]
        self.rating_weight = config["rating_weight"]
        fast = True if config["fast_path"] is None else config["fast_path"]

        ratings = rating_matrix(dataset, self.LABEL)
        user_side = item_side = None
        if use_side:
            user_side = SideInformation(dataset, "user", config["user_side_fields"] or [], name)
            item_side = SideInformation(dataset, "item", config["item_side_fields"] or [], name)
        self.user_tower = AutoencoderTower(SparseRatingRows(ratings), user_side, layers, activation,
                                           self.tower_kind, noise, side_weight, fast)
        self.item_tower = AutoencoderTower(SparseRatingRows(ratings.T), item_side, layers, activation,
                                           self.tower_kind, noise, side_weight, fast)
        self.apply(init_dense)
        if self.with_mf:
            self.user_weight, self.item_weight = config["user_tie_weight"], config["item_tie_weight"]
            self.mf_reg_weight = config["mf_reg_weight"]
            # n_j, n_k: training ratings per row, to spread Eq. (1)'s once-per-row tie terms
            # over the per-rating U,V steps (see the module docstring)
            self.register_buffer("user_counts", torch.from_numpy(ratings.getnnz(axis=1)).float().clamp(min=1))
            self.register_buffer("item_counts", torch.from_numpy(ratings.getnnz(axis=0)).float().clamp(min=1))
            self.register_buffer("global_mean", torch.tensor(float(ratings.data.mean()) if ratings.nnz else 0.0))
            self.user_factors = nn.Embedding(self.n_users, layers[-1])
            self.item_factors = nn.Embedding(self.n_items, layers[-1])
            nn.init.normal_(self.user_factors.weight, std=0.01)
            nn.init.normal_(self.item_factors.weight, std=0.01)

    def mf_parameters(self) -> list[nn.Parameter]:
        """The free representations U, V (updated by the alternating trainer's SGD step)."""
        return [self.user_factors.weight, self.item_factors.weight] if self.with_mf else []

    def calculate_loss(self, interaction) -> torch.Tensor:
        user, item, rating = interaction[self.USER_ID], interaction[self.ITEM_ID], interaction[self.LABEL]
        g_user, user_recon = self.user_tower(user)
        g_item, item_recon = self.item_tower(item)
        loss = user_recon + item_recon
        if not self.with_mf:
            return loss + self.rating_weight * F.mse_loss((g_user * g_item).sum(dim=1), rating)
        # network step of Eq. (1): U, V are constants here
        tie_user = (self.user_factors(user).detach() - g_user).pow(2).sum(dim=1).mean()
        tie_item = (self.item_factors(item).detach() - g_item).pow(2).sum(dim=1).mean()
        return loss + self.user_weight * tie_user + self.item_weight * tie_item

    def calculate_mf_loss(self, interaction) -> torch.Tensor:
        r"""U,V step of Eq. (1), summed over the batch's ratings (per-rating SGD).

        Rating fit of :math:`\mu + U_jV_k^\top`, plus the pull towards the (fixed) encoder
        outputs weighted λ2 / n_j and λ3 / n_k, plus L2; see the module docstring.
        """
        user, item, rating = interaction[self.USER_ID], interaction[self.ITEM_ID], interaction[self.LABEL]
        with torch.no_grad():
            g_user, _ = self.user_tower(user, reconstruct=False)
            g_item, _ = self.item_tower(item, reconstruct=False)
        u, v = self.user_factors(user), self.item_factors(item)
        fit = (self.global_mean + (u * v).sum(dim=1) - rating).pow(2).sum()
        ties = (self.user_weight * (u - g_user).pow(2).sum(dim=1) / self.user_counts[user]
                + self.item_weight * (v - g_item).pow(2).sum(dim=1) / self.item_counts[item]).sum()
        reg = (u.pow(2).sum(dim=1) + v.pow(2).sum(dim=1)).sum()
        return self.rating_weight * fit + ties + self.mf_reg_weight * reg

    def predict(self, interaction) -> torch.Tensor:
        user, item = interaction[self.USER_ID], interaction[self.ITEM_ID]
        if self.with_mf:
            return self.global_mean + (self.user_factors(user) * self.item_factors(item)).sum(dim=1)
        g_user, _ = self.user_tower(user, reconstruct=False)
        g_item, _ = self.item_tower(item, reconstruct=False)
        return (g_user * g_item).sum(dim=1)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        """Ratings of each user in the batch for every item: ``[B * n_items]``."""
        user = interaction[self.USER_ID]
        if self.with_mf:
            return (self.global_mean + self.user_factors(user) @ self.item_factors.weight.T).reshape(-1)
        g_user, _ = self.user_tower(user, reconstruct=False)
        g_item, _ = self.item_tower(torch.arange(self.n_items, device=self.device), reconstruct=False)
        return (g_user @ g_item.T).reshape(-1)


# the U,V terms of Eq. (1), read by the models with MF factors (ASDAE, DHA)
MF_TIE_PARAMS = ParamSpec({
    "user_tie_weight": real(0),
    "item_tie_weight": real(0),
    "mf_reg_weight": real(0),
    "mf_learning_rate": real(0, low_open=True),
})
