"""KNI's graph and neighbour tables: which nodes exist, who neighbours whom, how neighbours
are sampled. The model (:mod:`recbole_ext.model.knowledge_aware_recommender.kni`) embeds the
nodes; this module never touches an embedding.

Node space ``[0 = padding | entities (item i = entity i) | users]``. Edges, added in both
directions: the positive training interactions and, with the KG, every KG triple with its
relation dropped (:func:`interaction_kg_edges`). Only the nodes a neighbourhood can hold are
kept (:func:`reachable_subgraph`), and a fixed table of ``max_degree`` neighbours per node is
drawn once (:func:`build_neighbor_table`), as the reference's ``pre_process_adj`` does.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

POSITIVE_LABEL = 0.5  # a labelled row is a positive interaction when its label exceeds this


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


def interaction_kg_edges(owner: str, config, dataset, n_nodes: int, user_node_offset: int,
                         use_kg: bool, kg_undirected: bool) -> tuple[np.ndarray, np.ndarray]:
    """Deduplicated directed edges (both directions) of the positive-training + KG graph.

    Positive rows are ``label > 0.5`` when the data carry ``LABEL_FIELD``; every row otherwise
    (negatives are then sampled). User ``u`` is node ``user_node_offset + u - 1``.

    Raises:
        ValueError: labels outside [0, 1], labels together with negative sampling (RecBole would
            overwrite them), or neither labels nor negative sampling.
    """
    inter = dataset.inter_feat
    label = config["LABEL_FIELD"]
    users = inter[dataset.uid_field].numpy().astype(np.int64)
    items = inter[dataset.iid_field].numpy().astype(np.int64)
    sampling = config["train_neg_sample_args"]["distribution"] != "none"
    if label in inter:
        labels = inter[label].numpy().astype(np.float64)
        if labels.size and (labels.min() < 0 or labels.max() > 1):
            raise ValueError(
                f"{owner} trains with binary cross-entropy on LABEL_FIELD '{label}', whose values "
                f"must lie in [0, 1]; got values in [{labels.min()}, {labels.max()}]. Binarise the "
                "ratings (e.g. `threshold: {rating: 4}`) or point LABEL_FIELD at a 0/1 column.")
        if sampling:
            raise ValueError(
                f"{owner}: the data carry labels ('{label}') and train_neg_sample_args samples "
                "negatives too; RecBole would overwrite the labels with 1 for every row. Set "
                "`train_neg_sample_args: ~` to train on the given labels, or drop the label column "
                "to train on sampled negatives.")
        positive = labels > POSITIVE_LABEL
        users, items = users[positive], items[positive]
    elif not sampling:
        raise ValueError(
            f"{owner} needs negatives: the data have no '{label}' column and "
            "train_neg_sample_args is None. Load a 0/1 label column (with "
            "`train_neg_sample_args: ~`) or enable negative sampling.")
    user_nodes = np.where(users > 0, user_node_offset + users - 1, 0)
    src, dst = [user_nodes, items], [items, user_nodes]
    if use_kg:
        heads = dataset.kg_feat[dataset.head_entity_field].numpy().astype(np.int64)
        tails = dataset.kg_feat[dataset.tail_entity_field].numpy().astype(np.int64)
        src.append(heads)
        dst.append(tails)
        if kg_undirected:
            src.append(tails)
            dst.append(heads)
    src, dst = np.concatenate(src), np.concatenate(dst)
    keep = (src > 0) & (dst > 0)
    pairs = np.unique(src[keep] * n_nodes + dst[keep])
    return pairs // n_nodes, pairs % n_nodes


def reachable_subgraph(src: np.ndarray, dst: np.ndarray, n_nodes: int, centres: np.ndarray,
                       hops: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The part of the graph that ``hops``-hop neighbourhoods of ``centres`` can reach.

    A neighbourhood holds its centre and nodes up to ``hops`` edges away, so only those nodes
    are ever embedded, and only the neighbour lists of nodes less than ``hops`` edges from a
    centre are ever sampled. Every other embedding row would receive weight decay only and
    never change a prediction, so dropping it is exact and saves its optimiser step.

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


class NeighborTable(NamedTuple):
    """KNI's fixed neighbour table, stored as positions into per-node neighbour lists.

    ``table[x, c] = neighbours[ptr[x] + slots[x, c]]``. ``neighbours[ptr[x]:ptr[x + 1]]`` are
    the distinct neighbours of ``x`` in ascending order (``[0]``, the padding node, for a node
    without neighbours). Positions fit int16 where node ids need int32, which halves the
    largest array of the model, and evaluation works on the positions directly.
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


class NeighborSampler(nn.Module):
    """The neighbour table as device buffers, and the reference's sampling over it.

    The buffers are rebuilt from the data and the seed whenever the model is built, so they
    are not persistent (not in checkpoints).
    """

    def __init__(self, table: NeighborTable) -> None:
        super().__init__()
        self.max_degree = table.slots.shape[1]
        self.register_buffer("ptr", torch.from_numpy(table.ptr), persistent=False)
        self.register_buffer("neighbours", torch.from_numpy(table.neighbours), persistent=False)
        self.register_buffer("slots", torch.from_numpy(table.slots), persistent=False)

    @property
    def table(self) -> torch.Tensor:
        """The ``[n_nodes, max_degree]`` table of neighbour node ids (materialised; for inspection)."""
        return self.slot_nodes(torch.arange(len(self.slots), device=self.slots.device), self.slots)

    def slot_nodes(self, nodes: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Node ids at list positions ``slots`` (``[*nodes.shape, ...]``) of each node's neighbours."""
        start = self.ptr[nodes].view(*nodes.shape, *([1] * (slots.dim() - nodes.dim())))
        return self.neighbours[start + slots.long()]

    def sample(self, nodes: torch.Tensor, k: int) -> torch.Tensor:
        """``k`` neighbours of each node: ``nodes`` ``[S, ...]`` -> ``[S, ..., k]``.

        Sampling ``s`` takes the first ``k`` columns of its own random permutation of the
        table's columns, shared by every node of that sampling (the reference's
        ``UniformSampler``).
        """
        n_samplings = nodes.shape[0]
        # the k largest of uniform keys: a uniform random k-subset in random order, like the
        # first k of a permutation, without sorting all the columns
        columns = torch.rand(n_samplings, self.max_degree, device=nodes.device).topk(k, dim=1).indices
        columns = columns.view(n_samplings, *([1] * (nodes.dim() - 1)), k)
        return self.slot_nodes(nodes, self.slots[nodes.unsqueeze(-1), columns])

    def list_sizes(self, nodes: torch.Tensor) -> torch.Tensor:
        """Length of ``[node | its distinct neighbours]``."""
        return self.ptr[nodes + 1] - self.ptr[nodes] + 1

    def padded_lists(self, nodes: torch.Tensor) -> torch.Tensor:
        """``[node | distinct neighbours]`` of each node, padded with node 0 to the longest."""
        start = self.ptr[nodes]
        length = self.ptr[nodes + 1] - start
        offset = torch.arange(int(length.max()), device=nodes.device)
        real = offset < length.unsqueeze(1)
        neighbours = self.neighbours[torch.where(real, start.unsqueeze(1) + offset, 0)]
        return torch.cat([nodes.unsqueeze(1), neighbours.masked_fill_(~real, 0)], dim=1)
