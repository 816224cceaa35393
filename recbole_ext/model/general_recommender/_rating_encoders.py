"""Building blocks shared by the explicit-rating models NRP, NRPaSDAE, NRPDHA, ASDAE and DHA.

* :class:`SparseRatingRows` holds the *training* rating matrix as CSR buffers and gathers
  the rating vectors (user rows or item columns) of one batch of ids as a sparse
  :class:`RatingBatch`, so no dense ``m x n`` matrix is ever materialised on the device.
  The first layer over a rating vector (:class:`FirstLayer` with ``ftype=None``) is an
  ``EmbeddingBag`` weighted by the ratings, which equals ``R_j @ W`` but costs the
  user's number of ratings instead of the number of items; :func:`observed_mse` scores
  a reconstruction only at the observed entries.
* :class:`SideInformation` turns the user or item feature fields that RecBole loaded
  (``token``, ``token_seq``, ``float``, ``float_seq``) into per-field bag-of-words inputs.
  The first fully connected layer over a multi-hot bag-of-words vector is computed with
  an ``EmbeddingBag`` in ``sum`` mode, which gives the same numbers as ``one_hot @ W``
  without building the multi-hot vector.
* :func:`build_mlp` and :data:`ACTIVATIONS` give the fully connected stacks of the
  paper's supplementary Table 6 (layer sizes, relu/selu/tanh).

The layouts follow Raziperchikolaei, Li and Chung, "Neural Representations in Hybrid
Recommender Systems: Prediction versus Regularization", arXiv:2010.06070 (2020).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from recbole.utils import FeatureSource, FeatureType
from torch import nn
from torch.nn import functional as F

from recbole_ext.params import ParamSpec, boolean, real

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "selu": nn.SELU, "tanh": nn.Tanh}

_FEATURE_SOURCES = {
    "user": (FeatureSource.USER, FeatureSource.USER_ID),
    "item": (FeatureSource.ITEM, FeatureSource.ITEM_ID),
}
_TOKEN_TYPES = (FeatureType.TOKEN, FeatureType.TOKEN_SEQ)


def init_dense(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases (Keras' defaults, which the paper's code used)."""
    if isinstance(module, (nn.Linear, nn.EmbeddingBag, nn.Embedding)):
        nn.init.xavier_uniform_(module.weight)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def keep_mask(values: torch.Tensor, drop: float) -> torch.Tensor:
    """``1.0`` where an input entry survives masking noise of probability ``drop``, else ``0.0``
    (float32, the shape of ``values``, which may hold token ids)."""
    return (torch.rand(values.shape, device=values.device) >= drop).float()


def build_mlp(sizes: Sequence[int], activation: str, last_activation: bool = True) -> nn.Sequential:
    """Fully connected layers ``sizes[0] -> sizes[1] -> ...``.

    Args:
        sizes: input width followed by the width of every layer.
        activation: a key of :data:`ACTIVATIONS`.
        last_activation: apply the activation after the last layer too (False for a
            linear output such as the predicted rating).
    """
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if last_activation or index < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class RatingBatch(NamedTuple):
    """Sparse rating vectors of a batch: entry ``e`` is ``values[e]`` at ``(rows[e], cols[e])``.

    Entries are grouped by row; ``offsets[b]`` is the first entry of row ``b``.
    """

    n_rows: int
    rows: torch.Tensor
    offsets: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor


class SparseRatingRows(nn.Module):
    """Rows of a sparse rating matrix, gathered per batch as a :class:`RatingBatch`.

    Built from the training split only, so a validation or test rating can never reach
    a model input. The CSR arrays are non-persistent buffers: they follow the model to
    its device but are not written to checkpoints (they are rebuilt from the dataset).

    Args:
        matrix: ``[n_rows, n_cols]`` sparse matrix; explicit zeros are dropped.
        norm: ``"l2"`` divides every row by its Euclidean length (``"none"``: raw values).

    Example::

        rows = SparseRatingRows(dataset.inter_matrix("csr", "rating"))   # users x items
        batch = rows.gather(torch.tensor([3, 7]))                       # the two users' ratings
        vectors = rows(torch.tensor([3, 7]))                            # dense: [2, n_items]
    """

    def __init__(self, matrix: sp.spmatrix, norm: str = "none") -> None:
        super().__init__()
        csr = sp.csr_matrix(matrix, dtype=np.float32)
        csr.sum_duplicates()
        csr.eliminate_zeros()
        if norm == "l2":
            lengths = np.sqrt(np.asarray(csr.multiply(csr).sum(axis=1)).ravel())
            csr = sp.csr_matrix(sp.diags(1.0 / np.maximum(lengths, 1e-12)) @ csr, dtype=np.float32)
        elif norm != "none":
            raise ValueError(f"SparseRatingRows: norm must be 'none' or 'l2', got {norm!r}")
        self.n_rows, self.n_cols = csr.shape
        self.register_buffer("indptr", torch.from_numpy(csr.indptr.astype(np.int64)), persistent=False)
        self.register_buffer("indices", torch.from_numpy(csr.indices.astype(np.int64)), persistent=False)
        self.register_buffer("values", torch.from_numpy(csr.data.astype(np.float32)), persistent=False)

    def gather(self, ids: torch.Tensor) -> RatingBatch:
        """The stored entries of rows ``ids``, grouped by row in the order of ``ids``."""
        starts = self.indptr[ids]
        counts = self.indptr[ids + 1] - starts
        offsets = torch.cumsum(counts, 0) - counts
        batch_rows = torch.repeat_interleave(torch.arange(len(ids), device=ids.device), counts)
        # position of every stored entry of the requested rows inside indices/values
        positions = (torch.repeat_interleave(starts - offsets, counts)
                     + torch.arange(int(counts.sum()), device=ids.device))
        return RatingBatch(len(ids), batch_rows, offsets, self.indices[positions], self.values[positions])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Dense rows ``matrix[ids]``: ``[len(ids), n_cols]`` (for tests and inspection)."""
        batch = self.gather(ids)
        dense = torch.zeros(len(ids), self.n_cols, device=ids.device)
        dense[batch.rows, batch.cols] = batch.values
        return dense


def _column_sums(target: RatingBatch, weights: torch.Tensor, rows: torch.Tensor, n_cols: int) -> torch.Tensor:
    """``out[c] = sum of weights[e] * rows[target.rows[e]]`` over the entries ``e`` in column ``c``: ``[n_cols, d]``.

    The weight gradient of a layer that reads (or writes) one weight row per stored entry.
    The entries are grouped by column and each column's sum is one bag of an
    ``EmbeddingBag`` over ``rows`` (the batch's few gradient or hidden rows, which stay in
    cache), so every weight-gradient row is written once; PyTorch's own ``EmbeddingBag``
    backward adds every entry into a zero-filled table instead.
    """
    by_column = torch.argsort(target.cols)
    counts = torch.bincount(target.cols, minlength=n_cols)
    return F.embedding_bag(target.rows[by_column], rows, torch.cumsum(counts, 0) - counts,
                           mode="sum", per_sample_weights=weights[by_column])


class _RatingBag(torch.autograd.Function):
    """``sum over the entries of each row of values[e] * weight[cols[e]]``: the first layer over
    a batch of sparse rating vectors (``EmbeddingBag`` forward, :func:`_column_sums` backward)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, target: RatingBatch, values: torch.Tensor) -> torch.Tensor:
        ctx.target, ctx.values, ctx.n_cols = target, values, weight.shape[0]
        return F.embedding_bag(target.cols, weight, target.offsets, mode="sum", per_sample_weights=values)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _column_sums(ctx.target, ctx.values, grad, ctx.n_cols), None, None


class _ObservedLinear(torch.autograd.Function):
    """``(hidden @ weight.T + bias)[rows, cols]``: the output units of the stored entries only.

    Forward is a sampled matrix product (one dot product per entry). Backward: the
    gradient of ``hidden`` sums, for each row, the weight rows of its entries (an
    ``EmbeddingBag`` over the weight); the gradient of ``weight`` sums, for each output
    unit, the hidden rows of the entries that read it (an ``EmbeddingBag`` over
    ``hidden`` with the entries grouped by column).
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                target: RatingBatch) -> torch.Tensor:
        ctx.save_for_backward(hidden, weight)
        ctx.target = target
        pointers = torch.cat([target.offsets, target.offsets.new_tensor([len(target.cols)])])
        with warnings.catch_warnings():  # PyTorch calls its sparse CSR support beta, once per process
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            pattern = torch.sparse_csr_tensor(pointers, target.cols, bias[target.cols],
                                              (target.n_rows, weight.shape[0]), check_invariants=False)
        return torch.sparse.sampled_addmm(pattern, hidden, weight.t()).values()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        hidden, weight = ctx.saved_tensors
        target = ctx.target
        grad_hidden = F.embedding_bag(target.cols, weight, target.offsets, mode="sum", per_sample_weights=grad)
        grad_weight = _column_sums(target, grad, hidden, weight.shape[0])
        grad_bias = torch.zeros(weight.shape[0], dtype=grad.dtype, device=grad.device).index_add_(0, target.cols, grad)
        return grad_hidden, grad_weight, grad_bias, None


def observed_mse(hidden: torch.Tensor, output: nn.Linear, target: RatingBatch, sampled: bool = True) -> torch.Tensor:
    """Mean squared error of ``output(hidden)`` against ``target`` at the observed entries only.

    Unknown ratings are not zeros to predict, so only the stored entries of ``target``
    count; no dense target or mask is built. No entry gives 0.

    Args:
        sampled: compute only the output units of the stored entries (:class:`_ObservedLinear`);
            False computes the dense output rows and indexes them (the reference: same
            numbers up to float rounding, several times the arithmetic when a row's
            stored entries are a small share of its width).
    """
    if len(target.values) == 0:
        return hidden.sum() * 0.0
    if sampled:
        bias = output.bias if output.bias is not None else hidden.new_zeros(output.out_features)
        prediction = _ObservedLinear.apply(hidden, output.weight, bias, target)
    else:
        prediction = output(hidden)[target.rows, target.cols]
    return ((prediction - target.values) ** 2).mean()


def side_feature_spec(dataset, source: str, fields: Sequence[str], owner: str) -> list[tuple[str, FeatureType, int]]:
    """Check side-information fields against the dataset; return ``(field, type, width)``.

    ``width`` is the vocabulary size of a token field and the number of values of a
    float field (1 for ``float``, the sequence length for ``float_seq``).

    Raises:
        ValueError: a field that RecBole did not load as a ``source`` feature (named in
            the message together with the fields that were loaded).
    """
    sources = _FEATURE_SOURCES[source]
    loaded = sorted(f for f, s in dataset.field2source.items() if s == sources[0])
    spec = []
    for field in fields:
        if field not in dataset.field2type or dataset.field2source.get(field) != sources[0]:
            raise ValueError(
                f"{owner}: side-information field '{field}' (from '{source}_side_fields') is not a "
                f"loaded {source} feature of dataset '{dataset.dataset_name}'. Loaded {source} "
                f"features: {loaded or 'none'}. Add it to load_col['{source}'] and to the "
                f"'.{source}' atomic file, remove it from '{source}_side_fields', or set "
                "use_side_info: False."
            )
        ftype = dataset.field2type[field]
        if ftype in _TOKEN_TYPES:
            width = dataset.num(field)
        elif ftype == FeatureType.FLOAT_SEQ:
            width = dataset.field2seqlen[field]
        else:
            width = 1
        spec.append((field, ftype, width))
    return spec


class SideInformation(nn.Module):
    """Side-information features of users (or items), indexed by internal id.

    Each field is one information source of the paper (§3.2): a token or token-sequence
    field is a bag of words over its vocabulary, a float field is its value(s).

    Args:
        dataset: the training dataset (RecBole ``Dataset``).
        source: ``"user"`` or ``"item"``.
        fields: the feature fields to use, in order.
        owner: model name for error messages.
    """

    def __init__(self, dataset, source: str, fields: Sequence[str], owner: str) -> None:
        super().__init__()
        self.spec = side_feature_spec(dataset, source, fields, owner)
        table = dataset.get_user_feature() if source == "user" else dataset.get_item_feature()
        for field, ftype, _ in self.spec:
            values = table[field]
            if ftype == FeatureType.TOKEN:
                values = values.long().unsqueeze(1)  # a bag of one token
            elif ftype == FeatureType.TOKEN_SEQ:
                values = values.long()
            elif ftype == FeatureType.FLOAT:
                values = values.float().unsqueeze(1)
            else:
                values = values.float()
            self.register_buffer(f"feat_{field}", values, persistent=False)
            # ids with equal values share a code, so a batch can encode each value once
            codes = torch.unique(values, dim=0, return_inverse=True)[1]
            self.register_buffer(f"code_{field}", codes, persistent=False)

    @property
    def widths(self) -> list[int]:
        """Input width of every source (vocabulary size or number of float values)."""
        return [width for _, _, width in self.spec]

    def tokens(self, field: str, ids: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` token ids (0 = padding) or ``[B, L]`` float values of ``field``."""
        return getattr(self, f"feat_{field}")[ids]

    def codes(self, field: str, ids: torch.Tensor) -> torch.Tensor:
        """``[B]`` value codes of ``field``: equal exactly where :meth:`tokens` gives equal rows."""
        return getattr(self, f"code_{field}")[ids]

    def dense(self, index: int, ids: torch.Tensor) -> torch.Tensor:
        """Multi-hot (token fields) or raw (float fields) input vector of source ``index``: ``[B, width]``."""
        field, ftype, width = self.spec[index]
        values = self.tokens(field, ids)
        if ftype not in _TOKEN_TYPES:
            return values
        multi_hot = torch.zeros(len(ids), width, device=ids.device)
        multi_hot.scatter_(1, values, 1.0)
        multi_hot[:, 0] = 0.0  # token 0 is RecBole's padding, not a word
        return multi_hot


class FirstLayer(nn.Module):
    """``x @ W + b`` for one information source, without building ``x`` when it is sparse.

    * a rating vector (``ftype=None``), given as a :class:`RatingBatch`: the rating-weighted
      sum of the embedding rows of the rated items (an ``EmbeddingBag`` with
      ``per_sample_weights``), so a batch costs its number of ratings, not ``B x width``;
    * a bag of words (token fields; ``x`` multi-hot over the vocabulary): the sum of the
      embedding rows of the tokens present; padding (token 0) contributes nothing;
    * float fields: a plain linear layer.

    ``keep`` optionally weights each input entry (masking noise of the denoising
    autoencoders); for ratings it has one weight per stored entry. With ``fast`` the
    rating layer's weight gradient is built column by column (:class:`_RatingBag`; the
    same sums as ``EmbeddingBag``'s backward, added in another order).
    """

    def __init__(self, ftype: FeatureType | None, width: int, out_features: int, bias: bool = True,
                 fast: bool = True) -> None:
        super().__init__()
        self.fast = fast
        self.kind = "rating" if ftype is None else "token" if ftype in _TOKEN_TYPES else "float"
        if self.kind == "float":
            self.linear = nn.Linear(width, out_features, bias=bias)
        else:
            self.bag = nn.EmbeddingBag(width, out_features, mode="sum",
                                       padding_idx=0 if self.kind == "token" else None)
            self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, values, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, out_features]``; ``keep`` (same shape as the input entries) scales each entry."""
        if self.kind == "float":
            return self.linear(values if keep is None else values * keep)
        if self.kind == "rating":
            weights = values.values if keep is None else values.values * keep
            if self.fast:
                out = _RatingBag.apply(self.bag.weight, values, weights)
            else:
                out = self.bag(values.cols, values.offsets, per_sample_weights=weights)
        else:
            # a repeated token in a token_seq counts once, as in a multi-hot vector
            tokens, keep = _drop_repeats(values, keep)
            out = self.bag(tokens, per_sample_weights=keep)
        return out if self.bias is None else out + self.bias


def _drop_repeats(tokens: torch.Tensor, keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Replace repeated tokens within a row by padding (0); ``keep`` is reordered alike."""
    if tokens.shape[1] < 2:
        return tokens, keep
    ordered, order = tokens.sort(dim=1)
    repeated = torch.zeros_like(ordered, dtype=torch.bool)
    repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    keep = None if keep is None else keep.gather(1, order)
    return ordered.masked_fill(repeated, 0), keep


def encode_distinct(encode, values: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
    """``encode(values)``, computed once per distinct key and copied to the key's repeats.

    ``keys`` (``[B]``, default ``values``, then 1-D) must be equal only where the rows of
    ``values`` are equal, and ``encode`` must map every row on its own (no batch
    statistics). Then the output is the same, and so is every gradient: indexing's
    backward sums the gradients of the copies into their distinct row, which is the sum
    the repeated rows' own backward passes would add into the weights. A side field of
    few values (age, gender, occupation, genre combinations) and a user or item that
    occurs several times in a batch are encoded once instead of once per rating.
    """
    keys = values if keys is None else keys
    distinct, inverse = torch.unique(keys, return_inverse=True)
    if len(distinct) == len(keys):
        return encode(values)
    # any occurrence of a key stands for all of them
    first = torch.empty_like(distinct).scatter_(0, inverse, torch.arange(len(keys), device=keys.device))
    return encode(values[first])[inverse]


class SourceEncoder(nn.Module):
    """Encoder of one information source: ``FirstLayer`` then fully connected layers.

    Args:
        ftype: RecBole feature type of the source (``None`` for rating vectors, given as a
            :class:`RatingBatch`).
        width: input width.
        layers: widths of the encoder layers, e.g. ``[500, 200, 100]``.
        activation: a key of :data:`ACTIVATIONS`.
        fast: encode each distinct side-information value of a batch once
            (:func:`encode_distinct` over the ``keys`` given to :meth:`forward`) when no
            masking noise is applied, and use :class:`FirstLayer`'s fast rating backward.
    """

    def __init__(self, ftype: FeatureType | None, width: int, layers: Sequence[int], activation: str,
                 fast: bool = True) -> None:
        super().__init__()
        self.first = FirstLayer(ftype, width, layers[0], fast=fast)
        self.act = ACTIVATIONS[activation]()
        self.rest = build_mlp(list(layers), activation)
        self.distinct = fast and self.first.kind != "rating"

    def forward(self, values, keep: torch.Tensor | None = None, keys: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, layers[-1]]``; ``keys`` (``[B]``, e.g. :meth:`SideInformation.codes`) are equal
        exactly where the rows of ``values`` are."""
        if self.distinct and keep is None and keys is not None:
            return encode_distinct(self._encode, values, keys)
        return self._encode(values, keep)

    def _encode(self, values, keep: torch.Tensor | None = None) -> torch.Tensor:
        return self.rest(self.act(self.first(values, keep)))


# keys every explicit-rating model reads (RatingTrainer reads weight_averaging); ~ keeps them off
RATING_MODEL_PARAMS = ParamSpec({
    "fast_path": boolean().or_none(),
    "weight_averaging": real(0, 1, high_open=True).or_none(),
})


def check_common(owner: str, config, dataset) -> None:
    """Checks shared by every explicit-rating model: a float label and no negative sampling."""
    label = config["LABEL_FIELD"]
    if label not in dataset.field2type or dataset.field2type[label] != FeatureType.FLOAT:
        raise ValueError(
            f"{owner} predicts explicit ratings: LABEL_FIELD must name a loaded float field of the "
            f"interactions (e.g. 'rating'). Got LABEL_FIELD={label!r}; loaded interaction fields: "
            f"{sorted(f for f, s in dataset.field2source.items() if s == FeatureSource.INTERACTION)}."
        )
    if config["normalize_all"] or label in (config["normalize_field"] or []):
        raise ValueError(
            f"{owner}: the rating field '{label}' would be min-max scaled to [0, 1] "
            "(RecBole's ml-100k/ml-1m dataset yamls set normalize_all: True), which changes "
            "what RMSE measures. Set normalize_all: False (the NRP presets do)."
        )
    if config["train_neg_sample_args"] and config["train_neg_sample_args"].get("distribution") not in (None, "none"):
        raise ValueError(
            f"{owner} is trained on observed ratings only; set train_neg_sample_args: ~ "
            f"(got {config['train_neg_sample_args']!r})."
        )


def rating_matrix(dataset, label_field: str) -> sp.csr_matrix:
    """The training ratings as a ``[n_users, n_items]`` CSR matrix (0 = unobserved)."""
    return dataset.inter_matrix(form="csr", value_field=label_field).astype(np.float32)
