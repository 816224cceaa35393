r"""KNI / NI: knowledge-enhanced neighbourhood interaction for click-through-rate prediction.

Reference:
    Yanru Qu, Ting Bai, Weinan Zhang, Jianyun Nie and Jian Tang. "An End-to-End
    Neighborhood-based Interaction Model for Knowledge-enhanced Recommendation".
    Proceedings of the 1st International Workshop on Deep Learning Practice for
    High-Dimensional Sparse Data (DLP-KDD'19), arXiv:1908.04032.
    Official TensorFlow code: https://github.com/Atomu2014/KNI (models.py, layers.py, utils.py).

Graph. One homogeneous, unweighted node space ``[0 = padding | entities | users]``: item
``i`` is entity ``i`` (RecBole's KG dataset aligns linked items with their entities), KG-only
entities follow, users come last. Edges, added in both directions: the *positive training*
interactions (``label > 0.5`` in the training split the model is built on; every training
row when the data carry no label and negatives are sampled) and, with ``kg: True``, every KG
triple with its relation dropped. ``NI`` is this model with ``kg: False``. Node 0 has a fixed
zero embedding; a node without neighbours has only node 0 as neighbour.

Sampling. A table of ``max_degree`` neighbours per node is drawn once (seed
``neighbor_table_seed``): without replacement when the degree is at least ``max_degree``,
with replacement otherwise. Each forward pass draws one random permutation of the table's
columns per hop (shared by the batch) and keeps the first ``k`` columns.

Model. With ``hop_n_sample = "1,k"`` the neighbourhood of a node ``x`` is
``N_x = [e_x; e_{n_1}; ...; e_{n_k}]`` (``[k+1, d]``). With ``"1,k1,k2"`` every node of
``N_x`` is first replaced by one mean aggregation over itself and ``k`` sampled neighbours
(``k1`` for ``x``, ``k2`` for its neighbours): ``h = ReLU(mean(e_self, e_nbrs) + b)``, as the
reference code uses it. Then, for a user ``u`` and an item ``v``:

.. math::
    Z_{ij} = \langle N_u[i], N_v[j] \rangle, \qquad
    s = \sum_{ij} \alpha_{ij} Z_{ij}, \qquad \hat y = \sigma(s)

    \text{ni:1}: \alpha = \operatorname{softmax}(Z / T), \qquad
    \text{ni:2}: \alpha_{ij} = \operatorname{softmax}_{ij}\big(\tanh(N_u[i] w_1 + b_1 + N_v[j] w_2 + b_2) / T\big)

over all ``(k+1)^2`` pairs. Dropout (``dropout_prob``) is applied to the aggregation inputs
and to ``N_u``, ``N_v``. Loss: mean binary cross-entropy on the label plus
``l2_reg * (||E||^2 + ||w_1||^2 + ||w_2||^2) / 2`` over the whole embedding table (biases are
not regularised), as in the reference code; :class:`recbole_ext.trainer.kni.KNITrainer` applies
this term as Adam's weight decay, which has the same gradient and is much cheaper than
differentiating it.

Evaluation averages the probabilities of ``n_eval`` independent samplings; with one hop it
is computed exactly through Gram matrices (:mod:`~recbole_ext.model.knowledge_aware_recommender.kni_eval`).
The graph, the neighbour table and the sampling are in
:mod:`~recbole_ext.model.knowledge_aware_recommender.kni_graph`.

Deviations and choices (see ``../shared/reference/kni_rnncce.md`` section 1):

- KG direction: the reference reads a matrix ``adj`` whose variant (directed or not) is not
  recorded; ``kg_undirected: True`` (default) adds every triple in both directions.
- The reference first removes entities more than ``n_hop + 1`` hops away from any user or
  item. We embed exactly the nodes a neighbourhood can hold (users, items and the nodes up to
  ``len(hop_n_sample) - 1`` hops from them; ``kni_graph.reachable_subgraph``), fewer than the
  reference keeps; a dropped row could only receive weight decay, never change a prediction.
  The glorot bound stays that of the whole graph's table.
- KG relations with fewer than 100 triples are removed by the data converter
  (``python -m dataset_atomic ripplenet-kg --min-relation-triples 100``), not here.
- Model selection uses the validation split (RecBole's default); the reference selects
  on the test split, which ``select_on_test: True`` reproduces for comparison only
  (:mod:`recbole_ext.data.labeled`).
- ``full_sort_predict`` scores every item for a user, averaging ``n_eval`` samplings as in
  ``predict``, so the model can be ranked under RecBole's full-ranking protocol.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import KnowledgeRecommender
from recbole.utils import InputType
from torch import nn

from recbole_ext.model.knowledge_aware_recommender import kni_eval
from recbole_ext.model.knowledge_aware_recommender.kni_graph import (
    NeighborSampler,
    build_neighbor_table,
    interaction_kg_edges,
    parse_hop_n_sample,
    reachable_subgraph,
)
from recbole_ext.model.sparse_grad import BufferedGradEmbedding
from recbole_ext.params import ParamSpec, Rule, boolean, choice, custom, integer, real


def _hop_samples_ok(value) -> bool:
    try:
        parse_hop_n_sample(value)
    except ValueError:
        return False
    return True

__all__ = ["KNI", "NI", "build_neighbor_table", "parse_hop_n_sample", "reachable_subgraph"]


class KNI(KnowledgeRecommender):
    """Knowledge-enhanced neighbourhood interaction (``kg: True``) or NI (``kg: False``)."""

    input_type = InputType.POINTWISE
    PARAMS = ParamSpec(
        params={
            "kg": boolean(),
            "ni_attention": choice("ni", "ni:1", "ni:2"),
            "max_degree": integer(1),
            "hop_n_sample": custom("'1,k' (one hop) or '1,k1,k2' (two hops) with positive k; the leading 1 "
                                   "is the centre node", _hop_samples_ok),
            "embedding_size": integer(1),
            "dropout_prob": real(0, 1, high_open=True),
            "l2_reg": real(0),
            "ni_temperature": real(0, low_open=True),
            "n_eval": integer(1),
            "kg_undirected": boolean(),
        },
        rules=(Rule(("hop_n_sample", "max_degree"), lambda hops, width: max(parse_hop_n_sample(hops)) <= width,
                    "hop_n_sample '{hop_n_sample}' samples more neighbours per hop than the max_degree = "
                    "{max_degree} columns of the neighbour table"),),
    )

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        owner = type(self).__name__
        # parameters (a recbole-ext Config has checked them already; a hand-built config has not)
        self.PARAMS.apply(owner, config)
        self.use_kg = config["kg"]
        self.attention = "ni:2" if config["ni_attention"] == "ni:2" else "ni:1"
        self.max_degree = config["max_degree"]
        self.hop_samples = parse_hop_n_sample(config["hop_n_sample"], owner)
        self.embedding_size = config["embedding_size"]
        self.dropout_prob = config["dropout_prob"]
        self.l2_reg = config["l2_reg"]
        self.temperature = config["ni_temperature"]
        self.n_eval = config["n_eval"]
        kg_undirected = config["kg_undirected"]
        self.LABEL = config["LABEL_FIELD"]
        # KNITrainer moves the l2 term into Adam's weight decay (same gradient) and clears this
        self.l2_in_loss = True

        # node ids: [0 = padding | entities (item i = entity i) | users]; NI needs no KG entities
        self.n_base = self.n_entities if self.use_kg else self.n_items
        self.n_nodes = self.n_base + self.n_users - 1
        src, dst = interaction_kg_edges(owner, config, dataset, self.n_nodes, self.n_base,
                                        self.use_kg, kg_undirected)
        self.n_edges, self.n_graph_nodes = len(src), self.n_nodes
        # only nodes a neighbourhood can hold get an embedding row (ids re-packed in order)
        centres = np.concatenate([np.arange(1, self.n_items), np.arange(self.n_base, self.n_nodes)])
        kept, src, dst = reachable_subgraph(src, dst, self.n_nodes, centres, len(self.hop_samples))
        self.n_base = int(np.searchsorted(kept, self.n_base))
        self.n_nodes = len(kept)
        self.neighbors = NeighborSampler(build_neighbor_table(
            src, dst, self.n_nodes, self.max_degree, int(config["neighbor_table_seed"])))
        # rows whose Gram matrix has at most this many pairs are evaluated through it; above,
        # the n_eval (k+1)^2 pairs of the definition are fewer
        self.gram_pair_budget = self.n_eval * (self.hop_samples[0] + 1) ** 2

        # outside DDP the table's gradient goes through a persistent dense buffer (same values,
        # no table-sized allocation per step; see recbole_ext.model.sparse_grad)
        table = BufferedGradEmbedding if config["single_spec"] is not False else nn.Embedding
        self.embedding = table(self.n_nodes, self.embedding_size, padding_idx=0)
        if len(self.hop_samples) == 2:
            self.agg_bias = nn.Parameter(torch.zeros(self.embedding_size))
        if self.attention == "ni:2":
            self.w1 = nn.Parameter(torch.empty(self.embedding_size, 1))
            self.w2 = nn.Parameter(torch.empty(self.embedding_size, 1))
            self.b1 = nn.Parameter(torch.zeros(1))
            self.b2 = nn.Parameter(torch.zeros(1))
        self.loss_fct = nn.BCEWithLogitsLoss()
        self._init_weights()

    def _init_weights(self) -> None:
        # glorot-uniform as in the reference, whose table keeps every entity near the data:
        # the bound of the whole graph's table, not of the pruned one; padding stays zero
        bound = (6.0 / (self.n_graph_nodes + self.embedding_size)) ** 0.5
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        if self.attention == "ni:2":
            nn.init.xavier_uniform_(self.w1)
            nn.init.xavier_uniform_(self.w2)

    def user_nodes(self, users: torch.Tensor) -> torch.Tensor:
        """Node ids of RecBole user ids (user 0, RecBole's padding, maps to node 0)."""
        return torch.where(users > 0, self.n_base + users - 1, torch.zeros_like(users))

    # ---------------------------------------------------------- neighbourhoods
    def neighborhood(self, nodes: torch.Tensor) -> torch.Tensor:
        """``N_x`` for centre nodes ``[S, B]`` -> ``[S, B, k1 + 1, d]`` (one sampling per S)."""
        if len(self.hop_samples) == 1:
            return self.embedding(self.neighborhood_ids(nodes))
        level1 = self.neighbors.sample(nodes, self.hop_samples[0])            # [S, B, k1]
        # two hops: each node of N_x is mean-aggregated with its own sampled neighbours
        level2 = self.neighbors.sample(level1, self.hop_samples[1])           # [S, B, k1, k2]
        level1_emb = self.embedding(level1)
        centre = self._aggregate(self.embedding(nodes).unsqueeze(-2), level1_emb)
        outer = self._aggregate(level1_emb.unsqueeze(-2), self.embedding(level2))
        return torch.cat([centre.unsqueeze(-2), outer], dim=-2)

    def neighborhood_ids(self, nodes: torch.Tensor) -> torch.Tensor:
        """One hop: node ids ``[S, B, k + 1]`` of ``N_x``, the centre first."""
        return torch.cat([nodes.unsqueeze(-1), self.neighbors.sample(nodes, self.hop_samples[0])], dim=-1)

    def nodes_per_neighborhood(self) -> int:
        """Embeddings gathered per node and sampling: ``k1 + 1``, plus ``k1 * k2`` for two hops."""
        k1 = self.hop_samples[0]
        return k1 + 1 + (k1 * self.hop_samples[1] if len(self.hop_samples) == 2 else 0)

    def _aggregate(self, self_emb: torch.Tensor, nbr_emb: torch.Tensor) -> torch.Tensor:
        """Reference GCN layer without W: ``ReLU(mean([self; nbrs]) + b)`` with input dropout."""
        stacked = self.dropout(torch.cat([self_emb, nbr_emb], dim=-2))
        return F.relu(stacked.mean(dim=-2) + self.agg_bias)

    def dropout(self, x: torch.Tensor) -> torch.Tensor:
        """Inverted dropout with :meth:`dropout_mask`."""
        if not self.training or self.dropout_prob == 0:
            return x
        return x * self.dropout_mask(x.shape, x.device, x.dtype)

    def dropout_mask(self, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Keep mask scaled by ``1 / (1 - p)``. At ``p = 0.5`` (every preset) each element is one
        random bit, 64 per int64 draw, instead of one uniform float each."""
        scale = 1.0 / (1.0 - self.dropout_prob)
        n_elements = shape.numel()
        if self.dropout_prob != 0.5 or n_elements % 8:
            return torch.rand(shape, device=device, dtype=dtype).ge_(self.dropout_prob).mul_(scale)
        n_words = -(-n_elements // 64)
        words = torch.randint(-2 ** 63, 2 ** 63 - 1, (n_words,), dtype=torch.int64, device=device)
        shifts = torch.arange(8, dtype=torch.uint8, device=device)
        bits = (words.view(torch.uint8)[:n_elements // 8].unsqueeze(1) >> shifts).bitwise_and_(1)
        return bits.view(shape).to(dtype).mul_(scale)

    # ------------------------------------------------------------ interaction
    def interaction_logits(self, hood_u: torch.Tensor, hood_v: torch.Tensor) -> torch.Tensor:
        """Score ``s = sum_ij alpha_ij Z_ij`` of paired neighbourhoods ``[..., k+1, d]`` -> ``[...]``."""
        z = torch.matmul(hood_u, hood_v.transpose(-1, -2))                    # [..., k+1, k+1]
        return (self.attention_weights(hood_u, hood_v, z) * z).flatten(-2).sum(-1)

    def attention_weights(self, hood_u: torch.Tensor, hood_v: torch.Tensor,
                          z: torch.Tensor) -> torch.Tensor:
        """Attention over the ``(k+1)^2`` pairs, shaped like ``z``; sums to 1 per pair of nodes."""
        if self.attention == "ni:1":
            logits = z / self.temperature
        else:
            f1 = torch.matmul(hood_u, self.w1) + self.b1                      # [..., k+1, 1]
            f2 = torch.matmul(hood_v, self.w2) + self.b2                      # [..., k+1, 1]
            logits = torch.tanh(f1 + f2.transpose(-1, -2)) / self.temperature
        return torch.softmax(logits.flatten(-2), dim=-1).view_as(z)

    def forward(self, users: torch.Tensor, items: torch.Tensor, n_samplings: int = 1) -> torch.Tensor:
        """Logits ``[n_samplings, B]`` of user-item pairs, one neighbour sampling per row."""
        user_nodes = self.user_nodes(users).expand(n_samplings, -1)
        item_nodes = items.expand(n_samplings, -1)
        if len(self.hop_samples) == 1:
            # one lookup for both sides: with a plain nn.Embedding (DDP) two lookups make
            # autograd add two table-sized gradients
            ids = torch.stack([self.neighborhood_ids(user_nodes), self.neighborhood_ids(item_nodes)])
            hood_u, hood_v = self.dropout(self.embedding(ids))
        else:
            hood_u = self.dropout(self.neighborhood(user_nodes))
            hood_v = self.dropout(self.neighborhood(item_nodes))
        return self.interaction_logits(hood_u, hood_v)

    # ------------------------------------------------------------------- loss
    def regularized_parameters(self) -> list[nn.Parameter]:
        """Parameters under ``l2_reg``: the embedding table and the attention weights, no bias."""
        params = [self.embedding.weight]
        if self.attention == "ni:2":
            params += [self.w1, self.w2]
        return params

    def l2_loss(self) -> torch.Tensor:
        """``(||E||^2 + ||w1||^2 + ||w2||^2) / 2``: every embedding and weight, no bias (reference)."""
        return sum(p.pow(2).sum() for p in self.regularized_parameters()) / 2

    def calculate_loss(self, interaction) -> torch.Tensor:
        logits = self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID])[0]
        loss = self.loss_fct(logits, interaction[self.LABEL].float())
        if self.l2_in_loss and self.l2_reg > 0:
            loss = loss + self.l2_reg * self.l2_loss()
        return loss

    # ------------------------------------------------------------- prediction
    def predict(self, interaction) -> torch.Tensor:
        """Click probability averaged over ``n_eval`` neighbour samplings (exactly, through
        :func:`kni_eval.one_hop_probs`, with one hop)."""
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        if self.training or len(self.hop_samples) == 2:
            return self._predict_sampled(users, items)
        return kni_eval.one_hop_probs(self, self.user_nodes(users), items)

    def _predict_sampled(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Two hops (or training mode): ``n_eval`` forward passes batched, in row blocks, each
        block with its own column permutations."""
        rows = kni_eval.direct_block_rows(self)
        return torch.cat([torch.sigmoid(self.forward(u, i, self.n_eval)).mean(dim=0)
                          for u, i in zip(users.split(rows), items.split(rows))])

    def full_sort_predict(self, interaction) -> torch.Tensor:
        """Probabilities ``[B * n_items]`` of every item for each user, ``n_eval`` samplings averaged."""
        return kni_eval.full_sort_probs(self, interaction[self.USER_ID])

    def graph_report(self) -> dict:
        """Sizes of the sampling graph (for logs and benchmark records)."""
        return {"nodes": self.n_graph_nodes, "embedded_nodes": self.n_nodes, "directed_edges": self.n_edges,
                "kg": self.use_kg}


class NI(KNI):
    """Neighbourhood interaction without the knowledge graph: KNI with ``kg: False``.

    Its defaults are ``properties/model/NI.yaml``; setting ``kg: True`` there or on the
    command line turns it into KNI.
    """
