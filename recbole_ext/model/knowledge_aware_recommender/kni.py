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
this term as Adam's weight decay, which has the same gradient and is 5x faster on CPU.

Evaluation averages the probabilities of ``n_eval`` independent samplings. With one hop it
does not build the ``n_eval`` neighbourhoods: every node a sampling can draw for ``x`` is in
the short list ``[x | distinct neighbours of x]``, so one Gram matrix of the two lists per
row, weighted by how often each sampling drew each node, gives the same scores exactly
(:meth:`KNI._gram_probs`); rows with long lists on both sides use the neighbourhoods.

Deviations and choices (see ``../shared/reference/kni_rnncce.md`` section 1):

- KG direction: the reference reads a matrix ``adj`` whose variant (directed or not) is not
  recorded; ``kg_undirected: True`` (default) adds every triple in both directions.
- The reference first removes entities more than ``n_hop + 1`` hops away from any user or
  item. We embed exactly the nodes a neighbourhood can hold (users, items and the nodes up to
  ``len(hop_n_sample) - 1`` hops from them; :func:`reachable_subgraph`), fewer than the
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

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import KnowledgeRecommender
from recbole.utils import InputType
from torch import nn

from recbole_ext.model.sparse_grad import BufferedGradEmbedding
from recbole_ext.utils import check_param, non_negative_float, positive_int

# Upper bound on the float32 elements of one evaluation block (neighbourhood embeddings of
# predict, the [samplings, users, items, (k+1)^2] pair scores of full_sort_predict). Evaluation
# runs in blocks below it: besides bounding memory, blocks under glibc's 32 MB mmap threshold
# are recycled by malloc, whereas every larger tensor is a fresh mmap whose page faults cost
# more than the gather itself (a 105 MB neighbourhood gather: 77 ms, into reused memory: 11 ms).
_EVAL_BLOCK = 1 << 22
# Rows of one evaluation call that share their column permutations: the reference draws one
# permutation per evaluation batch of 1024 rows.
_SAMPLING_GROUP_ROWS = 1024


def parse_hop_n_sample(value, owner: str = "KNI") -> list[int]:
    """``"1,4"`` / ``"1,8,4"`` / ``[1, 4]`` -> ``[4]`` / ``[8, 4]`` (samples per hop).

    Raises:
        ValueError: not one or two hops, a first entry other than 1, or a non-positive count.
    """
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = None
    try:
        counts = [int(p) for p in parts] if parts is not None else None
    except (TypeError, ValueError):
        counts = None
    if (counts is None or len(counts) not in (2, 3) or counts[0] != 1
            or any(c <= 0 for c in counts) or any(isinstance(p, bool) for p in parts)):
        raise ValueError(f"The 'hop_n_sample' parameter of {owner} must be '1,k' (one hop) or "
                         f"'1,k1,k2' (two hops) with positive k; the leading 1 is the centre node. "
                         f"Got {value!r} instead.")
    return counts[1:]


class NeighborTable(NamedTuple):
    """KNI's fixed neighbour table, stored as positions into per-node neighbour lists.

    ``table[x, c] = neighbours[ptr[x] + slots[x, c]]``. ``neighbours[ptr[x]:ptr[x + 1]]`` are
    the distinct neighbours of ``x`` in ascending order (``[0]``, the padding node, for a node
    without neighbours). Storing int16 positions instead of int32 node ids halves the table
    (Book-Crossing: 196 MB instead of 392 MB), and evaluation uses the positions directly.
    """

    ptr: np.ndarray         # [n_nodes + 1] int64
    neighbours: np.ndarray  # [ptr[-1]] int64
    slots: np.ndarray       # [n_nodes, max_degree] int16 (int32 above 32,768 neighbours)

    def table(self) -> np.ndarray:
        """The ``[n_nodes, max_degree]`` int32 table of node ids."""
        return self.neighbours[self.ptr[:-1, None] + self.slots].astype(np.int32)


def build_neighbor_table(src: np.ndarray, dst: np.ndarray, n_nodes: int, max_degree: int,
                         seed: int) -> NeighborTable:
    """``max_degree`` sampled neighbours per node (KNI ``pre_process_adj``).

    Row ``x`` holds ``max_degree`` neighbours of ``x`` drawn without replacement when
    ``degree(x) >= max_degree`` and with replacement when ``0 < degree(x) < max_degree``;
    a node without neighbours gets the padding node 0.

    Args:
        src, dst: directed edge list (``src -> dst`` makes ``dst`` a neighbour of ``src``),
            free of duplicates.
        n_nodes: number of nodes, padding node 0 included.
        max_degree: table width.
        seed: numpy seed of the draw.
    """
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    degree = np.bincount(src, minlength=n_nodes)
    ptr = np.concatenate([[0], np.cumsum(np.maximum(degree, 1))]).astype(np.int64)
    neighbours = np.zeros(ptr[-1], dtype=np.int64)
    neighbours[ptr[src] + np.arange(len(src)) - np.searchsorted(src, src)] = dst

    rng = np.random.default_rng(seed)
    slots = np.zeros((n_nodes, max_degree), dtype=np.int16 if degree.max(initial=0) <= 1 << 15 else np.int32)
    low = np.flatnonzero((degree > 0) & (degree < max_degree))
    # with replacement, vectorised: uniform positions in each node's list, drawn in row blocks
    # (the same stream as one draw) to bound the float64 temporary
    for rows in np.array_split(low, max(1, len(low) * max_degree // (1 << 24))):
        slots[rows] = (rng.random((len(rows), max_degree)) * degree[rows, None]).astype(slots.dtype)
    for node in np.flatnonzero(degree >= max_degree):
        slots[node] = rng.choice(degree[node], size=max_degree, replace=False)
    return NeighborTable(ptr, neighbours, slots)


def reachable_subgraph(src: np.ndarray, dst: np.ndarray, n_nodes: int, centres: np.ndarray,
                       hops: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The part of the graph that ``hops``-hop neighbourhoods of ``centres`` can reach.

    A neighbourhood holds its centre and nodes up to ``hops`` edges away, so only those nodes
    are ever embedded, and only the neighbour lists of nodes less than ``hops`` edges from a
    centre are ever sampled. Every other embedding row would receive weight decay only and
    never change a prediction; dropping it is exact and saves its optimiser step (Book-Crossing,
    one hop: 41,981 of 95,742 nodes).

    Returns:
        ``kept``: ascending original ids of the reachable nodes, padding node 0 first (a node's
        new id is its position here); ``src``, ``dst``: the sampled edges, in new ids.
    """
    expanded = np.zeros(n_nodes, dtype=bool)
    expanded[centres] = True
    for _ in range(hops - 1):
        expanded[dst[expanded[src]]] = True
    follow = expanded[src]
    kept = expanded.copy()
    kept[0] = True
    kept[dst[follow]] = True
    new_id = np.cumsum(kept) - 1
    return np.flatnonzero(kept), new_id[src[follow]], new_id[dst[follow]]


class KNI(KnowledgeRecommender):
    """Knowledge-enhanced neighbourhood interaction (``kg: True``) or NI (``kg: False``)."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        owner = type(self).__name__
        self.use_kg = check_param(owner, "kg", config["kg"], (True, False))
        attention = check_param(owner, "ni_attention", config["ni_attention"], ("ni", "ni:1", "ni:2"))
        self.attention = "ni:2" if attention == "ni:2" else "ni:1"
        self.max_degree = check_param(owner, "max_degree", config["max_degree"], positive_int,
                                      "a positive int")
        self.hop_samples = parse_hop_n_sample(config["hop_n_sample"], owner)
        if max(self.hop_samples) > self.max_degree:
            raise ValueError(f"The 'hop_n_sample' parameter of {owner} samples up to "
                             f"{max(self.hop_samples)} neighbours per hop, more than 'max_degree' "
                             f"= {self.max_degree} columns of the neighbour table.")
        self.embedding_size = check_param(owner, "embedding_size", config["embedding_size"],
                                          positive_int, "a positive int")
        self.dropout_prob = check_param(owner, "dropout_prob", config["dropout_prob"],
                                        lambda p: non_negative_float(p) and p < 1, "a float in [0, 1)")
        self.l2_reg = check_param(owner, "l2_reg", config["l2_reg"], non_negative_float,
                                  "a float >= 0")
        self.temperature = check_param(owner, "ni_temperature", config["ni_temperature"],
                                       lambda t: non_negative_float(t) and t > 0, "a float > 0")
        self.n_eval = check_param(owner, "n_eval", config["n_eval"], positive_int, "a positive int")
        self.kg_undirected = check_param(owner, "kg_undirected", config["kg_undirected"], (True, False))
        self.LABEL = config["LABEL_FIELD"]
        # KNITrainer moves the l2 term into Adam's weight decay (same gradient) and clears this
        self.l2_in_loss = True

        # node ids: [0 = padding | entities (item i = entity i) | users]; NI needs no KG entities
        self.n_base = self.n_entities if self.use_kg else self.n_items
        self.n_nodes = self.n_base + self.n_users - 1
        src, dst = self._edges(config, dataset)
        self.n_edges, self.n_graph_nodes = len(src), self.n_nodes
        # only nodes a neighbourhood can hold get an embedding row (ids re-packed in order)
        centres = np.concatenate([np.arange(1, self.n_items), np.arange(self.n_base, self.n_nodes)])
        kept, src, dst = reachable_subgraph(src, dst, self.n_nodes, centres, len(self.hop_samples))
        self.n_base = int(np.searchsorted(kept, self.n_base))
        self.n_nodes = len(kept)
        table = build_neighbor_table(src, dst, self.n_nodes, self.max_degree,
                                     int(config["neighbor_table_seed"]))
        # rebuilt from the data and the seed on load, so it is not stored in checkpoints
        self.register_buffer("neighbor_ptr", torch.from_numpy(table.ptr), persistent=False)
        self.register_buffer("neighbor_list", torch.from_numpy(table.neighbours), persistent=False)
        self.register_buffer("neighbor_slots", torch.from_numpy(table.slots), persistent=False)
        # rows whose Gram matrix has at most this many pairs are evaluated through it; above,
        # the n_eval (k+1)^2 pairs of the definition are fewer
        self.gram_pair_budget = self.n_eval * (self.hop_samples[0] + 1) ** 2

        # outside DDP the table's gradient goes through a persistent dense buffer (same values,
        # 3-4x cheaper steps on CPU; see recbole_ext.model.sparse_grad)
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

    # ----------------------------------------------------------------- graph
    def _edges(self, config, dataset) -> tuple[np.ndarray, np.ndarray]:
        """Deduplicated directed edges (both directions) of the positive-training + KG graph."""
        inter = dataset.inter_feat
        users = inter[self.USER_ID].numpy().astype(np.int64)
        items = inter[self.ITEM_ID].numpy().astype(np.int64)
        if self.LABEL in inter:
            labels = inter[self.LABEL].numpy().astype(np.float64)
            if labels.size and (labels.min() < 0 or labels.max() > 1):
                raise ValueError(
                    f"{type(self).__name__} trains with binary cross-entropy on LABEL_FIELD "
                    f"'{self.LABEL}', whose values must lie in [0, 1]; got values in "
                    f"[{labels.min()}, {labels.max()}]. Binarise the ratings (e.g. `threshold: "
                    "{rating: 4}`) or point LABEL_FIELD at a 0/1 column.")
            if config["train_neg_sample_args"]["distribution"] != "none":
                raise ValueError(
                    f"{type(self).__name__}: the data carry labels ('{self.LABEL}') and "
                    "train_neg_sample_args samples negatives too; RecBole would overwrite the "
                    "labels with 1 for every row. Set `train_neg_sample_args: ~` to train on the "
                    "given labels, or drop the label column to train on sampled negatives.")
            positive = labels > 0.5
            users, items = users[positive], items[positive]
        elif config["train_neg_sample_args"]["distribution"] == "none":
            raise ValueError(
                f"{type(self).__name__} needs negatives: the data have no '{self.LABEL}' column "
                "and train_neg_sample_args is None. Load a 0/1 label column (with "
                "`train_neg_sample_args: ~`) or enable negative sampling.")
        user_nodes = self._user_nodes_np(users)
        src = [user_nodes, items]
        dst = [items, user_nodes]
        if self.use_kg:
            heads = dataset.kg_feat[dataset.head_entity_field].numpy().astype(np.int64)
            tails = dataset.kg_feat[dataset.tail_entity_field].numpy().astype(np.int64)
            src.append(heads)
            dst.append(tails)
            if self.kg_undirected:
                src.append(tails)
                dst.append(heads)
        src, dst = np.concatenate(src), np.concatenate(dst)
        keep = (src > 0) & (dst > 0)
        pairs = np.unique(src[keep] * self.n_nodes + dst[keep])
        return pairs // self.n_nodes, pairs % self.n_nodes

    def _user_nodes_np(self, users: np.ndarray) -> np.ndarray:
        return np.where(users > 0, self.n_base + users - 1, 0)

    def user_nodes(self, users: torch.Tensor) -> torch.Tensor:
        """Node ids of RecBole user ids (user 0, RecBole's padding, maps to node 0)."""
        return torch.where(users > 0, self.n_base + users - 1, torch.zeros_like(users))

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

    # -------------------------------------------------------------- sampling
    @property
    def neighbor_table(self) -> torch.Tensor:
        """The ``[n_nodes, max_degree]`` table of neighbour node ids (materialised; for inspection)."""
        return self.slot_nodes(torch.arange(self.n_nodes, device=self.neighbor_slots.device), self.neighbor_slots)

    def slot_nodes(self, nodes: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Node ids at list positions ``slots`` (``[*nodes.shape, ...]``) of each node's neighbours."""
        start = self.neighbor_ptr[nodes].view(*nodes.shape, *([1] * (slots.dim() - nodes.dim())))
        return self.neighbor_list[start + slots.long()]

    def sample_neighbors(self, nodes: torch.Tensor, k: int) -> torch.Tensor:
        """``k`` neighbours of each node: ``nodes`` ``[S, ...]`` -> ``[S, ..., k]``.

        Sampling ``s`` takes the first ``k`` columns of its own random permutation of the
        table's columns, shared by every node of that sampling (the reference's
        ``UniformSampler``).
        """
        n_samplings = nodes.shape[0]
        keys = torch.rand(n_samplings, self.max_degree, device=nodes.device)
        # the k largest of uniform keys: a uniform random k-subset in random order, like the
        # first k of a permutation, 20x cheaper than a full argsort of the 1024 columns
        columns = keys.topk(k, dim=1).indices
        columns = columns.view(n_samplings, *([1] * (nodes.dim() - 1)), k)
        return self.slot_nodes(nodes, self.neighbor_slots[nodes.unsqueeze(-1), columns])

    def neighborhood(self, nodes: torch.Tensor) -> torch.Tensor:
        """``N_x`` for centre nodes ``[S, B]`` -> ``[S, B, k1 + 1, d]`` (one sampling per S)."""
        if len(self.hop_samples) == 1:
            return self.embedding(self.neighborhood_ids(nodes))
        level1 = self.sample_neighbors(nodes, self.hop_samples[0])            # [S, B, k1]
        # two hops: each node of N_x is mean-aggregated with its own sampled neighbours
        level2 = self.sample_neighbors(level1, self.hop_samples[1])           # [S, B, k1, k2]
        level1_emb = self.embedding(level1)
        centre = self._aggregate(self.embedding(nodes).unsqueeze(-2), level1_emb)
        outer = self._aggregate(level1_emb.unsqueeze(-2), self.embedding(level2))
        return torch.cat([centre.unsqueeze(-2), outer], dim=-2)

    def neighborhood_ids(self, nodes: torch.Tensor) -> torch.Tensor:
        """One hop: node ids ``[S, B, k + 1]`` of ``N_x``, the centre first."""
        return torch.cat([nodes.unsqueeze(-1), self.sample_neighbors(nodes, self.hop_samples[0])], dim=-1)

    def _aggregate(self, self_emb: torch.Tensor, nbr_emb: torch.Tensor) -> torch.Tensor:
        """Reference GCN layer without W: ``ReLU(mean([self; nbrs]) + b)`` with input dropout."""
        stacked = self.dropout(torch.cat([self_emb, nbr_emb], dim=-2))
        return F.relu(stacked.mean(dim=-2) + self.agg_bias)

    def dropout(self, x: torch.Tensor) -> torch.Tensor:
        """Inverted dropout with :meth:`dropout_mask` (``F.dropout``'s per-element Bernoulli
        sampler took 11.5 ms of the CPU step for one [1024, 5, 128] neighbourhood)."""
        if not self.training or self.dropout_prob == 0:
            return x
        return x * self.dropout_mask(x.shape, x.device, x.dtype)

    def dropout_mask(self, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Keep mask scaled by ``1 / (1 - p)``. At ``p = 0.5`` (every preset) each element is one
        random bit, 64 per int64 draw: 0.9 ms for the two [1024, 5, 128] neighbourhoods of a
        step against 3.1 ms from uniform floats (``rand >= p``), which other ``p`` use."""
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
            # one lookup for both sides: with a plain nn.Embedding (DDP) two lookups make autograd
            # add two table-sized gradients, a copy that took a quarter of a CPU epoch
            ids = torch.stack([self.neighborhood_ids(user_nodes), self.neighborhood_ids(item_nodes)])
            hood_u, hood_v = self.dropout(self.embedding(ids))
        else:
            hood_u = self.dropout(self.neighborhood(user_nodes))
            hood_v = self.dropout(self.neighborhood(item_nodes))
        return self.interaction_logits(hood_u, hood_v)

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

    def predict(self, interaction) -> torch.Tensor:
        """Click probability averaged over ``n_eval`` neighbour samplings.

        Every ``_SAMPLING_GROUP_ROWS`` rows share their column permutations (the reference
        draws one per evaluation batch of that size) whatever the evaluation batch size, so a
        row's prediction has the same distribution for any ``eval_batch_size``. With one hop,
        rows whose Gram matrix (:meth:`_gram_probs`) has at most ``gram_pair_budget`` pairs are
        scored through it, the others from their ``n_eval`` neighbourhoods
        (:meth:`_direct_probs`); both give the same value for the same draws.
        """
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        if self.training or len(self.hop_samples) == 2:
            return self._predict_sampled(users, items)
        user_nodes = self.user_nodes(users)
        slots_u = self._sample_eval_slots(user_nodes)                         # [B, S, k]
        slots_v = self._sample_eval_slots(items)
        size_u, size_v = self._list_sizes(user_nodes), self._list_sizes(items)
        gram = size_u * size_v <= self.gram_pair_budget
        probs = torch.empty(len(users), device=users.device)
        for rows in self._gram_chunks(size_u, size_v, gram):
            probs[rows] = self._gram_probs(user_nodes[rows], items[rows], slots_u[rows], slots_v[rows])
        # and Gram rows whose sampled pairs all underflow exp() (0 / 0: an extreme score spread)
        rows = (~gram | ~torch.isfinite(probs)).nonzero().squeeze(1)
        for block in rows.split(self._direct_block_rows()):
            probs[block] = self._direct_probs(user_nodes[block], items[block], slots_u[block],
                                              slots_v[block])
        return probs

    def _predict_sampled(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Two hops (or training mode): ``n_eval`` forward passes batched, in row blocks under
        ``_EVAL_BLOCK`` elements, each block with its own column permutations."""
        rows = self._direct_block_rows()
        return torch.cat([torch.sigmoid(self.forward(u, i, self.n_eval)).mean(dim=0)
                          for u, i in zip(users.split(rows), items.split(rows))])

    def _sample_eval_slots(self, nodes: torch.Tensor) -> torch.Tensor:
        """``[B] -> [B, n_eval, k]`` list positions of the sampled neighbours: the column
        permutations of :meth:`sample_neighbors`, one set per ``_SAMPLING_GROUP_ROWS`` rows."""
        n_s, k = self.n_eval, self.hop_samples[0]
        n_groups = -(-len(nodes) // _SAMPLING_GROUP_ROWS)
        keys = torch.rand(n_groups * n_s, self.max_degree, device=nodes.device)
        columns = keys.topk(k, dim=1).indices.view(n_groups, n_s * k)
        group = torch.arange(len(nodes), device=nodes.device) // _SAMPLING_GROUP_ROWS
        # one flat gather: ~8x faster than 2-d advanced indexing into the [n_nodes, max_degree] slots
        flat = nodes.unsqueeze(1) * self.max_degree + columns[group]
        return self.neighbor_slots.view(-1).index_select(0, flat.view(-1)).view(len(nodes), n_s, k)

    def _list_sizes(self, nodes: torch.Tensor) -> torch.Tensor:
        """Length of ``[node | its distinct neighbours]``, one side of a row's Gram matrix."""
        return self.neighbor_ptr[nodes + 1] - self.neighbor_ptr[nodes] + 1

    def _gram_chunks(self, size_u: torch.Tensor, size_v: torch.Tensor, gram: torch.Tensor):
        """Indices of the Gram rows, grouped by the power-of-two sizes of both lists (padding
        stays under 2x per side) and cut into chunks under ``_EVAL_BLOCK`` elements."""
        rows = gram.nonzero().squeeze(1)
        if len(rows) == 0:
            return
        log_u = torch.log2(size_u[rows].double()).ceil().long()
        log_v = torch.log2(size_v[rows].double()).ceil().long()
        keys, bucket = torch.unique(log_u * 64 + log_v, return_inverse=True)
        counts = torch.bincount(bucket, minlength=len(keys)).tolist()
        members = rows[torch.argsort(bucket, stable=True)].split(counts)
        for key, bucket_rows in zip(keys.tolist(), members):
            width_u, width_v = 1 << (key // 64), 1 << (key % 64)
            per_row = ((width_u + width_v) * self.embedding_size + 3 * width_u * width_v
                       + 4 * self.n_eval * width_v)
            yield from bucket_rows.split(max(1, _EVAL_BLOCK // per_row))

    def _padded_lists(self, nodes: torch.Tensor) -> torch.Tensor:
        """``[node | distinct neighbours]`` of each node, padded with node 0 to the longest."""
        start = self.neighbor_ptr[nodes]
        length = self.neighbor_ptr[nodes + 1] - start
        offset = torch.arange(int(length.max()), device=nodes.device)
        real = offset < length.unsqueeze(1)
        neighbours = self.neighbor_list[torch.where(real, start.unsqueeze(1) + offset, 0)]
        return torch.cat([nodes.unsqueeze(1), neighbours.masked_fill_(~real, 0)], dim=1)

    def _gram_probs(self, user_nodes: torch.Tensor, items: torch.Tensor,
                    slots_u: torch.Tensor, slots_v: torch.Tensor) -> torch.Tensor:
        r"""Evaluation through one Gram matrix per row instead of ``n_eval`` neighbourhoods.

        Every node a sampling can draw for ``u`` is in ``L_u = [u | distinct neighbours of u]``,
        so with ``G = E[L_u] E[L_v]^T`` and ``c^s_u`` the multiplicities of ``L_u``'s nodes in
        sampling ``s`` (the centre once), the attention-weighted score over the ``(k+1)^2``
        pairs is exactly

        .. math:: s = \frac{c^{s\,T}_u (P \circ G)\, c^s_v}{c^{s\,T}_u P\, c^s_v}, \qquad
                  P = \exp(L - \max L)

        with ``L = G / T`` (ni:1) or ``tanh(f_1 + f_2^T) / T`` (ni:2). On Book-Crossing's
        validation split this gathers 1.4M embedding rows instead of 9.6M.
        """
        ids_u, ids_v = self._padded_lists(user_nodes), self._padded_lists(items)
        emb_u, emb_v = self.embedding(ids_u), self.embedding(ids_v)           # [b, Wu | Wv, d]
        gram = torch.bmm(emb_u, emb_v.transpose(1, 2))                        # [b, Wu, Wv]
        if self.attention == "ni:1":
            logits = gram / self.temperature
        else:
            f1 = torch.matmul(emb_u, self.w1) + self.b1                       # [b, Wu, 1]
            f2 = torch.matmul(emb_v, self.w2) + self.b2                       # [b, Wv, 1]
            logits = torch.tanh(f1 + f2.transpose(1, 2)) / self.temperature
        # padded positions have count 0; including them in the max keeps exp() <= 1 (no inf * 0)
        weights = torch.exp(logits - logits.flatten(1).max(dim=1).values.view(-1, 1, 1))
        # c_u^T M c_v for M = (P o G, P): the rows of the centre and the k sampled user-side
        # nodes summed, then the same columns on the item side (cheaper than building c_u, c_v)
        pair = torch.stack([weights * gram, weights], dim=2)                  # [b, Wu, 2, Wv]
        b, width_u, _, width_v = pair.shape
        n_s, k = slots_u.shape[1:]
        first_row = torch.arange(b, device=pair.device).view(b, 1, 1) * width_u
        rows = (first_row + slots_u.long() + 1).view(-1, k)
        # embedding_bag gathers and sums the k rows of each sampling in one pass
        per_sampling = F.embedding_bag(rows, pair.view(b * width_u, 2 * width_v), mode="sum")
        per_sampling = per_sampling.view(b, n_s, 2, width_v) + pair[:, :1]   # [b, S, 2, Wv]
        columns = (slots_v.long() + 1).unsqueeze(2).expand(b, n_s, 2, k)
        numerator, denominator = (per_sampling.gather(3, columns).sum(3) + per_sampling[..., 0]).unbind(2)
        return torch.sigmoid(numerator / denominator).mean(dim=1)

    def _direct_probs(self, user_nodes: torch.Tensor, items: torch.Tensor,
                      slots_u: torch.Tensor, slots_v: torch.Tensor) -> torch.Tensor:
        """The definition: the ``n_eval`` neighbourhoods of each side, probabilities averaged."""
        hood_u = self.embedding(self._hood_ids(user_nodes, slots_u))
        hood_v = self.embedding(self._hood_ids(items, slots_v))
        return torch.sigmoid(self.interaction_logits(hood_u, hood_v)).mean(dim=1)

    def _hood_ids(self, nodes: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """``[b], [b, S, k] -> [b, S, k + 1]`` node ids: centre, then the sampled neighbours."""
        neighbours = self.slot_nodes(nodes, slots)
        return torch.cat([nodes.view(-1, 1, 1).expand(-1, slots.shape[1], 1), neighbours], dim=2)

    def _direct_block_rows(self) -> int:
        """Rows whose ``n_eval`` neighbourhoods of both sides stay under ``_EVAL_BLOCK`` elements."""
        per_row = 2 * self.n_eval * self.nodes_per_neighborhood() * self.embedding_size
        return max(1, _EVAL_BLOCK // per_row)

    def nodes_per_neighborhood(self) -> int:
        """Embeddings gathered per node and sampling: ``k1 + 1``, plus ``k1 * k2`` for two hops."""
        k1 = self.hop_samples[0]
        return k1 + 1 + (k1 * self.hop_samples[1] if len(self.hop_samples) == 2 else 0)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        """Probabilities ``[B * n_items]`` of every item for each user, ``n_eval`` samplings averaged."""
        users = interaction[self.USER_ID]
        n_s = self.n_eval
        hood_u = self.neighborhood(self.user_nodes(users).expand(n_s, -1))    # [S, B, k+1, d]
        k1, dim = hood_u.shape[-2], hood_u.shape[-1]
        # items in chunks: both the item neighbourhoods and the pair scores stay below the block
        chunk = max(1, _EVAL_BLOCK // (n_s * max(len(users) * k1 * k1, k1 * dim)))
        scores = []
        for begin in range(0, self.n_items, chunk):
            items = torch.arange(begin, min(begin + chunk, self.n_items), device=users.device)
            hood_v = self.neighborhood(items.expand(n_s, -1))                  # [S, c, k+1, d]
            logits = self.interaction_logits(hood_u.unsqueeze(2), hood_v.unsqueeze(1))  # [S, B, c]
            scores.append(torch.sigmoid(logits).mean(dim=0))
        return torch.cat(scores, dim=1).view(-1)

    def graph_report(self) -> dict:
        """Sizes of the sampling graph (for logs and benchmark records)."""
        return {"nodes": self.n_graph_nodes, "embedded_nodes": self.n_nodes, "directed_edges": self.n_edges,
                "kg": self.use_kg}


class NI(KNI):
    """Neighbourhood interaction without the knowledge graph: KNI with ``kg: False``.

    Its defaults are ``properties/model/NI.yaml``; setting ``kg: True`` there or on the
    command line turns it into KNI.
    """
