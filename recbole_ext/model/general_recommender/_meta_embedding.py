"""Sparse building blocks shared by the meta-embedding models :mod:`legcf` and :mod:`c2f`.

Entities are numbered as in RecBole's LightGCN: users ``0..n_users-1`` then items
``n_users..n_users+n_items-1`` (the padding ids 0 of both fields are isolated nodes).
An *assignment* with exactly ``t`` non-zeros per row is stored as two dense tensors,
column indices ``[rows, t]`` and weights ``[rows, t]``; multiplying it with a codebook is
a sparse-dense product and no ``rows x codebook`` matrix is ever materialised, neither
when it is built, nor in the graph, nor when it is re-estimated (done in row chunks).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

# Rows of H_ent scored per chunk in the assignment update: chunk x c floats at a time.
_UPDATE_CHUNK_ROWS = 4096


def bipartite_adjacency(inter: sp.spmatrix, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary, symmetric ``(n_users + n_items)``-square user-item adjacency (no self loops)."""
    inter = sp.coo_matrix(inter)
    rows = np.concatenate([inter.row, inter.col + n_users])
    cols = np.concatenate([inter.col + n_users, inter.row])
    n = n_users + n_items
    adj = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n))
    adj.data[:] = 1.0  # repeated interactions count once, as in RecBole's LightGCN
    return adj


def sym_normalize_coo(adj: sp.spmatrix) -> tuple[torch.Tensor, torch.Tensor]:
    """``D^-1/2 A D^-1/2`` as COO ``(indices [2, nnz], values [nnz])``; isolated rows stay 0."""
    adj = sp.coo_matrix(adj)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        inv_sqrt = np.where(degree > 0, degree ** -0.5, 0.0)
    values = adj.data * inv_sqrt[adj.row] * inv_sqrt[adj.col]
    indices = torch.from_numpy(np.vstack([adj.row, adj.col]).astype(np.int64))
    return indices, torch.from_numpy(values.astype(np.float32))


def metis_partition(adj: sp.csr_matrix, n_parts: int, seed: int) -> np.ndarray:
    """Partition the nodes of an undirected graph into ``n_parts`` parts with METIS (pymetis).

    The official code partitions the same graph with ``dgl.metis_partition_assignment``;
    pymetis calls the same METIS library on the unweighted graph.

    Raises:
        ImportError: pymetis is missing (install it, or use ``assignment_init: random``).
    """
    try:
        import pymetis
    except ImportError as err:  # pragma: no cover - pymetis is a declared dependency
        raise ImportError("METIS assignment init needs pymetis (`pip install pymetis`); "
                          "set `assignment_init: random` to do without it.") from err
    if n_parts == 1:
        return np.zeros(adj.shape[0], dtype=np.int64)
    adj = sp.csr_matrix(adj)  # METIS needs a graph without self loops, as built above
    options = pymetis.Options(seed=int(seed))
    if hasattr(pymetis, "CSRAdjacency"):
        graph = pymetis.CSRAdjacency(adj.indptr.astype(np.int64), adj.indices.astype(np.int64))
        result = pymetis.part_graph(n_parts, adjacency=graph, options=options)
    else:  # pymetis < 2025.2
        result = pymetis.part_graph(n_parts, xadj=adj.indptr, adjncy=adj.indices, options=options)
    return np.asarray(result[1], dtype=np.int64)


def anchor_assignment(partition: np.ndarray, n_anchors: int, t: int, anchor_weight: float,
                      rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial sparse assignment from a partition (LEGCF's METIS initialisation).

    Row ``i`` puts ``anchor_weight`` on anchor ``partition[i]`` and
    ``(1 - anchor_weight) / (t - 1)`` on ``t - 1`` other distinct anchors drawn uniformly;
    with ``t == 1`` the single weight is 1.

    Returns:
        ``(index [N, t] long, weight [N, t] float)``; column 0 holds the own partition.
    """
    n = len(partition)
    own = torch.as_tensor(partition, dtype=torch.long).view(-1, 1)
    if t == 1:
        return own, torch.ones(n, 1)
    # Draw among the c - 1 anchors that are not the own one, then skip over the own index.
    others = rng.integers(0, n_anchors - 1, size=(n, t - 1))
    clash = _rows_with_duplicates(others)
    while clash.any():
        others[clash] = rng.integers(0, n_anchors - 1, size=(int(clash.sum()), t - 1))
        clash = _rows_with_duplicates(others)
    others = torch.as_tensor(others, dtype=torch.long)
    others = others + (others >= own).long()
    index = torch.cat([own, others], dim=1)
    weight = torch.full((n, t), (1.0 - anchor_weight) / (t - 1))
    weight[:, 0] = anchor_weight
    return index, weight


def _rows_with_duplicates(values: np.ndarray) -> np.ndarray:
    ordered = np.sort(values, axis=1)
    return (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)


def assignment_matrix(index: torch.Tensor, weight: torch.Tensor, n_cols: int) -> torch.Tensor:
    """The row-wise sparse ``(index, weight)`` assignment as a coalesced sparse COO matrix."""
    rows = torch.arange(index.shape[0], device=index.device).repeat_interleave(index.shape[1])
    matrix = torch.sparse_coo_tensor(torch.stack([rows, index.reshape(-1)]), weight.reshape(-1),
                                     (index.shape[0], n_cols), check_invariants=False)
    return matrix.coalesce()


def expanded_graph(adj_indices: torch.Tensor, adj_values: torch.Tensor, n_nodes: int,
                   blocks: list[tuple[int, int, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Symmetrically normalised expanded graph as a coalesced sparse COO ``[n_nodes, n_nodes]`` tensor.

    Args:
        adj_indices, adj_values: the (already normalised) user-item block ``Â`` in COO form.
        n_nodes: entities + anchors (+ fine anchors).
        blocks: ``(row_offset, col_offset, index, weight)`` per assignment block ``S``; each
            is placed at ``[row_offset + r, col_offset + index[r, k]]`` and mirrored, giving
            ``[[Â, S], [Sᵀ, 0]]`` for one block.

    Returns:
        ``D^-1/2 G D^-1/2`` where ``D`` holds the row sums of ``G`` (0 where a sum is 0).
    """
    rows, cols, vals = [adj_indices[0]], [adj_indices[1]], [adj_values]
    for row_offset, col_offset, index, weight in blocks:
        r = torch.arange(index.shape[0], device=index.device).repeat_interleave(index.shape[1])
        r = r + row_offset
        c = index.reshape(-1) + col_offset
        w = weight.reshape(-1).to(adj_values.dtype)
        rows += [r, c]
        cols += [c, r]
        vals += [w, w]
    rows, cols, vals = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    degree = torch.zeros(n_nodes, dtype=vals.dtype, device=vals.device).index_add_(0, rows, vals)
    inv_sqrt = torch.where(degree > 0, degree.clamp_min(1e-12).rsqrt(), torch.zeros_like(degree))
    vals = vals * inv_sqrt[rows] * inv_sqrt[cols]
    graph = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n_nodes, n_nodes),
                                    check_invariants=False)
    return graph.coalesce()


def topk_pinv_assignment(h_rows: torch.Tensor, h_anchors: torch.Tensor,
                         t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LEGCF's assignment update ``S = top-t_rowwise(H_rows · pinv(H_anchors))``.

    The least-squares coefficients of each row on the anchors are scored chunk by chunk,
    so only ``chunk x c`` floats exist at a time. Negative kept coefficients are set to 0
    (see the deviations in :mod:`legcf`).

    Returns:
        ``(index [rows, t], weight [rows, t])``.
    """
    projector = torch.linalg.pinv(h_anchors)  # [d, c]
    index_parts, weight_parts = [], []
    for start in range(0, h_rows.shape[0], _UPDATE_CHUNK_ROWS):
        scores = h_rows[start:start + _UPDATE_CHUNK_ROWS] @ projector
        weight, index = torch.topk(scores, t, dim=1)
        index_parts.append(index)
        weight_parts.append(weight.clamp_min(0.0))
    return torch.cat(index_parts), torch.cat(weight_parts)


def soft_threshold(x: torch.Tensor, tau: float) -> torch.Tensor:
    """``sign(x) * relu(|x| - tau)``: entries with ``|x| <= tau`` become exact zeros."""
    return torch.sign(x) * F.relu(x.abs() - tau)


def softmax_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row softmax, then the ``k`` largest probabilities per row as ``(index, weight)``."""
    weight, index = torch.topk(torch.softmax(scores, dim=1), k, dim=1)
    return index, weight


def fine_assignment_from_partition(coarse_index: torch.Tensor, coarse_weight: torch.Tensor,
                                   partition: np.ndarray, n_anchors: int, n_fine: int,
                                   fine_weight: float, ft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """C2F's initial anchor -> fine assignment ``S2 = top-ft(softmax_row(S1ᵀ F))``.

    ``F`` (entities x c_f) puts ``fine_weight`` on the entity's fine partition and
    ``(1 - fine_weight) / (c_f - 1)`` on every other fine anchor (a dense matrix in the
    official code). With ``P`` the one-hot partition matrix and ``β = (1 - w) / (c_f - 1)``,
    ``F = (w - β) P + β 1 1ᵀ``, so ``S1ᵀ F = (w - β) S1ᵀ P + β (S1ᵀ 1) 1ᵀ`` is formed
    from sparse pieces without building ``F``.
    """
    beta = (1.0 - fine_weight) / (n_fine - 1) if n_fine > 1 else 0.0
    alpha = fine_weight - beta
    device = coarse_index.device
    part = torch.as_tensor(partition, dtype=torch.long, device=device)
    anchor = coarse_index.reshape(-1)
    fine = part.repeat_interleave(coarse_index.shape[1])
    flat = anchor * n_fine + fine
    s1t_p = torch.zeros(n_anchors * n_fine, dtype=coarse_weight.dtype, device=device)
    s1t_p.index_add_(0, flat, coarse_weight.reshape(-1))
    column_mass = torch.zeros(n_anchors, dtype=coarse_weight.dtype, device=device)
    column_mass.index_add_(0, anchor, coarse_weight.reshape(-1))
    scores = alpha * s1t_p.view(n_anchors, n_fine) + beta * column_mass.view(-1, 1)
    return softmax_topk(scores, ft)


def fine_assignment_update(h_rows: torch.Tensor, h_anchors: torch.Tensor, h_fine: torch.Tensor,
                           ft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """C2F's S2 update ``top-ft(softmax_row(A1ᵀ A2))`` with ``A1 = H pinv(H_c)``, ``A2 = H pinv(H_f)``.

    ``A1ᵀ A2 = pinv(H_c)ᵀ (Hᵀ H) pinv(H_f)`` needs only the ``d x d`` Gram matrix of the
    entity rows, never the ``N x c`` or ``N x c_f`` coefficient matrices.
    """
    gram = h_rows.T @ h_rows  # [d, d]
    scores = torch.linalg.pinv(h_anchors).T @ gram @ torch.linalg.pinv(h_fine)  # [c, c_f]
    return softmax_topk(scores, ft)


def sparse_pca_codebook(coarse_codebook: np.ndarray, n_fine: int, n_components: int, alpha: float,
                        rng: np.random.Generator) -> np.ndarray:
    """C2F's fine codebook initialisation (``init_finetune`` in the official code).

    Draw ``n_fine`` rows of the coarse codebook with replacement, fit
    ``sklearn.decomposition.SparsePCA(n_components, alpha)`` on them and scatter each
    row's components into a zero ``d``-vector at ``n_components`` random sorted positions.

    Returns:
        ``[n_fine, d]`` float32 array.
    """
    from sklearn.decomposition import SparsePCA

    d = coarse_codebook.shape[1]
    n_components = min(n_components, d)
    rows = coarse_codebook[rng.integers(0, coarse_codebook.shape[0], size=n_fine)]
    pca = SparsePCA(n_components=n_components, alpha=alpha,
                    random_state=int(rng.integers(0, 2**31 - 1)))
    components = pca.fit_transform(rows)
    codebook = np.zeros((n_fine, d), dtype=np.float32)
    for row in range(n_fine):
        positions = np.sort(rng.choice(d, size=n_components, replace=False))
        codebook[row, positions] = components[row]
    return codebook
