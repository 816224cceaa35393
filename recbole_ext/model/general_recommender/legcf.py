r"""LEGCF: lightweight embeddings for graph collaborative filtering (coarse meta-embedding).

Reference:
    Xurong Liang, Tong Chen, Lizhen Cui, Yang Wang, Meng Wang, Hongzhi Yin.
    "Lightweight Embeddings for Graph Collaborative Filtering." SIGIR 2024, arXiv:2403.18479.
    Used as the coarse stage of Yang Wang et al. "Coarse-to-Fine Lightweight
    Meta-Embedding for ID-Based Recommendation", arXiv:2501.11870.

Reference code:
    https://github.com/xurong-liang/LEGCF (68d63cb) and its fork
    https://github.com/htyjers/C2F-MetaEmbed (``code/``, ``--sign_ft 0``).

No user or item owns an embedding. The ``N = n_users + n_items`` entities share a
codebook ``E ∈ R^{c×d}`` of meta-embeddings ("anchors"); a sparse assignment
``S ∈ R^{N×c}`` with exactly ``t`` non-zeros per row composes each entity:

.. math::

    X^0 = [\tanh(S E);\ E], \qquad
    G = \tilde D^{-1/2} \begin{bmatrix} \hat A & S \\ S^\top & 0 \end{bmatrix} \tilde D^{-1/2},
    \qquad X^{l+1} = G X^l, \qquad H = \tfrac{1}{L+1} \sum_{l=0}^{L} X^l

with ``Â = D^{-1/2} A D^{-1/2}`` the normalised user-item graph and ``D̃`` the row sums
of the expanded matrix. The score is ``ŷ_ui = ⟨h_u, h_i⟩ + b_u + b_i + b_0`` (the
official FM on two fields plus its linear term) and the loss

.. math::

    \mathcal L = \operatorname{mean}\,\mathrm{softplus}(\hat y_{uj} - \hat y_{ui})
    + \lambda \cdot 10^{-4} \cdot
      (\lVert e_u \rVert^2 + \lVert e_i \rVert^2 + \lVert e_j \rVert^2) / B

with ``e = tanh(S E)`` the *ego* rows and ``λ = l2_penalty_factor``. Gradients are
clipped by value.

``S`` starts from a METIS partition of the user-item graph into ``c`` parts: weight
``w*`` on the own part's anchor, ``(1 - w*)/(t - 1)`` on ``t - 1`` random others. The
two-stage schedule (``recbole_ext.trainer.meta_embedding_trainer``) trains with this
``S`` fixed until the validation metric stops improving, then re-estimates it at the
start of every epoch by the closed form of the semantic-similarity constraint,
``S ← top-t_rowwise(H_ent · pinv(H_anchor))`` (:meth:`LEGCF.update_assignment`).

Args (config keys, defaults in ``properties/model/LEGCF.yaml``):
    embedding_size: d, width of the codebook.
    n_anchors: c, rows of the codebook.
    n_compositions: t, non-zeros per row of ``S``.
    anchor_weight: w*, initial weight on the entity's own METIS anchor.
    assignment_init: ``metis`` (official) or ``random`` (uniform random own anchor).
    n_layers: L, propagation layers.
    l2_penalty_factor: λ, the official ``--l2_penalty_factor`` (scaled by 1e-4).
    clip_grad_value: bound for gradient clipping by value (0 disables it).
    anchors_in_graph: True (official) propagates over the expanded graph; False over ``Â``
        alone (a diagnostic: on ML-1M the expanded graph halves recall, see
        ``benchmarks/README.md``).

Deviations from the official code:
    - Training triples come from RecBole's sampler: every training interaction with
      ``train_neg_sample_args.sample_num`` uniform negatives, instead of
      ``|train|`` random users with one random positive each.
    - pymetis partitions the unweighted graph; the official code calls
      ``dgl.metis_partition_assignment`` on the graph carrying normalised edge weights.
      ``w*`` is a config key (hard-coded to 0.9 in LEGCF and to 0.5 in C2F's code).
    - The assignment update runs under ``no_grad`` before the first batch of the epoch,
      on a separate forward pass (the official code reuses batch 0's forward pass: same
      weights, same result), and scores entities in row chunks instead of a dense
      ``N × c`` matrix. Kept coefficients below 0 are set to 0; the official code
      asserts that every normalised graph entry is non-negative instead.
    - The padding ids 0 of users and items are isolated entities, as in RecBole's LightGCN.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType
from torch import nn
from torch.nn import functional as F

from recbole_ext.model.general_recommender._meta_embedding import (
    anchor_assignment,
    assignment_matrix,
    bipartite_adjacency,
    expanded_graph,
    metis_partition,
    sym_normalize_coo,
    topk_pinv_assignment,
)
from recbole_ext.params import ParamSpec, Rule, boolean, choice, integer, real

# The official loss multiplies the penalty factor by this constant (5 -> 5e-4).
L2_SCALE = 1.0e-4
FLOAT_BYTES = 4
INDEX_BYTES = 4  # an int32 column index per stored assignment / sparse-codebook entry


class LEGCF(GeneralRecommender):
    """Coarse meta-embedding recommender: shared codebook, sparse assignment, LightGCN propagation."""

    input_type = InputType.PAIRWISE
    # Stages run by MetaEmbeddingTrainer; each is a fixed-assignment then an update sub-stage.
    stages: tuple[str, ...] = ("coarse",)
    PARAMS = ParamSpec(
        params={
            "embedding_size": integer(1),
            "n_anchors": integer(1),
            "n_compositions": integer(1),
            "anchor_weight": real(0, 1, low_open=True),
            "assignment_init": choice("metis", "random"),
            "n_layers": integer(0),
            "l2_penalty_factor": real(0),
            "clip_grad_value": real(0),
            "anchors_in_graph": boolean(),
            # read by MetaEmbeddingTrainer: ~ or 0 lets early stopping end the fixed sub-stage
            "fixed_assignment_epochs": integer(0).or_none(),
        },
        rules=(Rule(("n_compositions", "n_anchors"), lambda t, c: t <= c,
                    "n_compositions = {n_compositions} must be at most n_anchors = {n_anchors} "
                    "(each entity picks that many distinct anchors)"),),
    )

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        name = type(self).__name__

        # parameters (a recbole-ext Config has checked them already; a hand-built config has not)
        self.PARAMS.apply(name, config)
        self.embedding_size = config["embedding_size"]
        self.n_anchors = config["n_anchors"]
        self.n_compositions = config["n_compositions"]
        self.anchor_weight = float(config["anchor_weight"])
        self.assignment_init = config["assignment_init"]
        self.n_layers = config["n_layers"]
        self.l2_penalty_factor = float(config["l2_penalty_factor"])
        self.clip_grad_value = float(config["clip_grad_value"])
        self.anchors_in_graph = config["anchors_in_graph"]
        self.learning_rate = float(config["learning_rate"])
        self.n_entities = self.n_users + self.n_items
        self.seed = int(config["seed"])

        # graph: the normalised user-item block Â, fixed for the whole run
        self.adjacency = bipartite_adjacency(dataset.inter_matrix(form="coo"), self.n_users,
                                             self.n_items)
        adj_indices, adj_values = sym_normalize_coo(self.adjacency)
        self.register_buffer("adj_indices", adj_indices, persistent=False)
        self.register_buffer("adj_values", adj_values, persistent=False)

        # layers: the codebook and one bias per entity plus a global bias (official FM linear term)
        self.codebook = nn.Parameter(torch.randn(self.n_anchors, self.embedding_size))
        self.bias = nn.Parameter(torch.cat([torch.randn(self.n_entities), torch.zeros(1)]))

        # init: the sparse assignment S as (index, weight) rows; buffers so checkpoints keep it
        rng = np.random.default_rng(self.seed)
        if self.assignment_init == "metis":
            partition = metis_partition(self.adjacency, self.n_anchors, self.seed)
        else:
            partition = rng.integers(0, self.n_anchors, size=self.n_entities)
        index, weight = anchor_assignment(partition, self.n_anchors, self.n_compositions,
                                          self.anchor_weight, rng)
        self.register_buffer("assign_index", index)
        self.register_buffer("assign_weight", weight)

        # caches: sparse S and the expanded graph (rebuilt when S changes), rows for evaluation
        self._graph: torch.Tensor | None = None
        self._assignment: torch.Tensor | None = None
        self._eval_cache: torch.Tensor | None = None
        self.register_load_state_dict_post_hook(lambda module, keys: module.after_state_change())
        if self.clip_grad_value > 0:
            for param in self.parameters():
                param.register_hook(self._clip_gradient)

    def _clip_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        # A hook on a leaf sees the summed gradient of the batch, so this is clip-by-value.
        return grad.clamp(-self.clip_grad_value, self.clip_grad_value)

    def _apply(self, fn, recurse=True):
        # the cached graph and rows are plain tensors on the old device: drop them on .to()/.cuda()
        self.after_state_change()
        return super()._apply(fn, recurse)

    def after_state_change(self) -> None:
        """Drop the cached graph and evaluation rows (after a new S, loaded weights or a move)."""
        self._graph = None
        self._assignment = None
        self._eval_cache = None

    # ----------------------------------------------------------------------- graph
    def graph_blocks(self) -> list[tuple[int, int, torch.Tensor, torch.Tensor]]:
        """Assignment blocks of the expanded graph: S between entities and anchors (none when
        ``anchors_in_graph`` is False: propagation over Â only, anchors act through ``tanh(S E)``)."""
        if not self.anchors_in_graph:
            return []
        return [(0, self.n_entities, self.assign_index, self.assign_weight)]

    @property
    def n_nodes(self) -> int:
        return self.n_entities + self.n_anchors

    def graph(self) -> torch.Tensor:
        """The normalised expanded graph ``G`` (sparse COO), built on first use after a change."""
        if self._graph is None:
            self._graph = expanded_graph(self.adj_indices, self.adj_values, self.n_nodes,
                                         self.graph_blocks())
        return self._graph

    def assignment(self) -> torch.Tensor:
        """``S`` as a sparse ``[N, c]`` COO matrix, built on first use after a change."""
        if self._assignment is None:
            self._assignment = assignment_matrix(self.assign_index, self.assign_weight, self.n_anchors)
        return self._assignment

    def ego_embeddings(self) -> torch.Tensor:
        """``tanh(S E)``: the entity rows of ``X^0`` -> ``[N, d]``."""
        return torch.tanh(torch.sparse.mm(self.assignment(), self.codebook))

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """LightGCN propagation over the expanded graph.

        Returns:
            ``(ego [N, d], H [n_nodes, d])`` with ``H`` the mean of ``X^0..X^L``.
        """
        ego = self.ego_embeddings()
        x = torch.cat([ego, self.codebook])  # [N + c, d]
        graph = self.graph()
        layers = [x]
        for _ in range(self.n_layers):
            x = torch.sparse.mm(graph, x)
            layers.append(x)
        return ego, torch.stack(layers).mean(dim=0)

    # ------------------------------------------------------------------ training
    def calculate_loss(self, interaction):
        self._eval_cache = None
        user = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID] + self.n_users
        neg = interaction[self.NEG_ITEM_ID] + self.n_users
        ego, h = self.propagate()
        h_user, h_pos, h_neg = h[user], h[pos], h[neg]  # [B, d] each
        pos_score = (h_user * h_pos).sum(dim=1) + self.bias[pos]
        neg_score = (h_user * h_neg).sum(dim=1) + self.bias[neg]
        # b_u and b_0 cancel in the BPR difference; they only matter for absolute scores.
        bpr = F.softplus(neg_score - pos_score).mean()
        reg = (ego[user].pow(2).sum() + ego[pos].pow(2).sum() + ego[neg].pow(2).sum()) / len(user)
        return bpr + self.l2_penalty_factor * L2_SCALE * reg

    @torch.no_grad()
    def update_assignment(self) -> None:
        """Re-estimate ``S ← top-t_rowwise(H_ent · pinv(H_anchor))`` and rebuild ``G``."""
        _, h = self.propagate()
        index, weight = topk_pinv_assignment(h[:self.n_entities], h[self.n_entities:self.n_nodes],
                                             self.n_compositions)
        self.assign_index.copy_(index)
        self.assign_weight.copy_(weight)
        self.after_state_change()

    # ----------------------------------------------------- stages and optimiser
    def optimizer_groups(self) -> list[dict]:
        """Named parameter groups; :meth:`stage_learning_rates` sets their rates per stage."""
        return [{"name": "codebook", "params": [self.codebook]},
                {"name": "bias", "params": [self.bias]}]

    def stage_learning_rates(self, stage: str) -> dict[str, float]:
        return {"codebook": self.learning_rate, "bias": self.learning_rate}

    def enter_stage(self, stage: str) -> None:
        """Prepare a training stage; LEGCF has only the coarse stage, which needs nothing."""
        if stage not in self.stages:
            raise ValueError(f"{type(self).__name__} has no stage {stage!r}; stages: {list(self.stages)}")

    def stage_summary(self) -> str:
        """One log line on the current assignment (how many anchors are in use)."""
        used = int(torch.unique(self.assign_index).numel())
        return f"{used}/{self.n_anchors} anchors used by S"

    # ---------------------------------------------------------------- inference
    def _entity_rows(self) -> torch.Tensor:
        if self._eval_cache is None or self.training:
            self._eval_cache = self.propagate()[1][:self.n_entities]
        return self._eval_cache

    def predict(self, interaction):
        h = self._entity_rows()
        user = interaction[self.USER_ID]
        item = interaction[self.ITEM_ID] + self.n_users
        return (h[user] * h[item]).sum(dim=1) + self.bias[user] + self.bias[item] + self.bias[-1]

    def full_sort_predict(self, interaction):
        h = self._entity_rows()
        user = interaction[self.USER_ID]
        item_rows = h[self.n_users:]  # [n_items, d]
        scores = h[user] @ item_rows.T  # [B, n_items]
        item_bias = self.bias[self.n_users:self.n_entities]
        return (scores + item_bias + (self.bias[user] + self.bias[-1]).unsqueeze(1)).view(-1)

    # ------------------------------------------------------------------- memory
    def memory_report(self) -> dict:
        """Parameters and bytes of the embedding part next to a full-embedding LightGCN.

        Counts what inference needs: the dense codebook (``c·d`` float32), the assignment
        (``N·t`` float32 weights + ``N·t`` int32 column indices; rows are implicit
        because every row has exactly ``t`` entries) and the biases (``N + 1`` float32).
        The LightGCN reference is RecBole's, with ``N·d`` float32 embeddings for the
        same ``N`` (padding rows included) and the same ``d``.
        """
        return _memory_summary(self.memory_parts(), self.n_entities, self.embedding_size)

    def memory_parts(self) -> dict[str, dict]:
        """``{part: {"params", "bytes"[, "nnz"]}}`` for :meth:`memory_report`."""
        return {
            "codebook": _dense_part(self.n_anchors * self.embedding_size),
            "assignment": _sparse_part(self.n_entities * self.n_compositions),
            "bias": _dense_part(self.n_entities + 1),
        }


def _dense_part(n: int) -> dict:
    return {"params": int(n), "bytes": int(n) * FLOAT_BYTES}


def _sparse_part(nnz: int) -> dict:
    return {"params": int(nnz), "nnz": int(nnz), "bytes": int(nnz) * (FLOAT_BYTES + INDEX_BYTES)}


def _memory_summary(parts: dict, n_entities: int, dim: int) -> dict:
    total_params = sum(p["params"] for p in parts.values())
    total_bytes = sum(p["bytes"] for p in parts.values())
    full = n_entities * dim
    return {
        "n_entities": n_entities,
        "embedding_size": dim,
        "parts": parts,
        "embedding_params": total_params,
        "embedding_bytes": total_bytes,
        "lightgcn_params": full,
        "lightgcn_bytes": full * FLOAT_BYTES,
        "bytes_ratio_vs_lightgcn": total_bytes / (full * FLOAT_BYTES) if full else math.nan,
    }
