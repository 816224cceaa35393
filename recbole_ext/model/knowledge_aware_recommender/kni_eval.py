r"""KNI's exact evaluation: the same scores as the definition, computed with less work.

Evaluation averages the probabilities of ``n_eval`` independent neighbour samplings. With
one hop it need not build the ``n_eval`` neighbourhoods: every node a sampling can draw for
``x`` is in the short list ``L_x = [x | distinct neighbours of x]``, so one Gram matrix of the
two lists per row, weighted by how often each sampling drew each node, gives the same score
exactly (:func:`gram_probs`). Rows whose Gram matrix would be larger than the ``n_eval``
neighbourhoods are scored from the neighbourhoods (:func:`direct_probs`).

All work runs in blocks under :data:`EVAL_BLOCK` float32 elements. Besides bounding memory,
blocks below glibc's mmap threshold are recycled by malloc instead of being mapped afresh, whose
page faults would cost more than the gathers themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EVAL_BLOCK = 1 << 22
# Rows of one evaluation call that share their column permutations: the reference draws one
# permutation per evaluation batch of 1024 rows.
SAMPLING_GROUP_ROWS = 1024


def one_hop_probs(model, user_nodes: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Click probabilities of node pairs, ``n_eval`` samplings averaged (one hop only).

    Rows whose Gram matrix has at most ``model.gram_pair_budget`` pairs go through it, the others
    through their neighbourhoods; both give the same value for the same draws.
    """
    slots_u = sample_eval_slots(model, user_nodes)                          # [B, S, k]
    slots_v = sample_eval_slots(model, items)
    size_u, size_v = model.neighbors.list_sizes(user_nodes), model.neighbors.list_sizes(items)
    gram = size_u * size_v <= model.gram_pair_budget
    probs = torch.empty(len(user_nodes), device=user_nodes.device)
    for rows in gram_chunks(model, size_u, size_v, gram):
        probs[rows] = gram_probs(model, user_nodes[rows], items[rows], slots_u[rows], slots_v[rows])
    # and Gram rows whose sampled pairs all underflow exp() (0 / 0: an extreme score spread)
    rows = (~gram | ~torch.isfinite(probs)).nonzero().squeeze(1)
    for block in rows.split(direct_block_rows(model)):
        probs[block] = direct_probs(model, user_nodes[block], items[block], slots_u[block], slots_v[block])
    return probs


def sample_eval_slots(model, nodes: torch.Tensor) -> torch.Tensor:
    """``[B] -> [B, n_eval, k]`` list positions of the sampled neighbours: the column
    permutations of the training sampler, one set per :data:`SAMPLING_GROUP_ROWS` rows, so a
    row's prediction has the same distribution for any ``eval_batch_size``."""
    n_s, k, width = model.n_eval, model.hop_samples[0], model.neighbors.max_degree
    n_groups = -(-len(nodes) // SAMPLING_GROUP_ROWS)
    keys = torch.rand(n_groups * n_s, width, device=nodes.device)
    columns = keys.topk(k, dim=1).indices.view(n_groups, n_s * k)
    group = torch.arange(len(nodes), device=nodes.device) // SAMPLING_GROUP_ROWS
    # one flat gather instead of 2-d advanced indexing into the [n_nodes, max_degree] slots
    flat = nodes.unsqueeze(1) * width + columns[group]
    return model.neighbors.slots.view(-1).index_select(0, flat.view(-1)).view(len(nodes), n_s, k)


def gram_chunks(model, size_u: torch.Tensor, size_v: torch.Tensor, gram: torch.Tensor):
    """Indices of the Gram rows, grouped by the power-of-two sizes of both lists (padding
    stays under 2x per side) and cut into chunks under :data:`EVAL_BLOCK` elements."""
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
        per_row = ((width_u + width_v) * model.embedding_size + 3 * width_u * width_v
                   + 4 * model.n_eval * width_v)
        yield from bucket_rows.split(max(1, EVAL_BLOCK // per_row))


def gram_probs(model, user_nodes: torch.Tensor, items: torch.Tensor,
               slots_u: torch.Tensor, slots_v: torch.Tensor) -> torch.Tensor:
    r"""Evaluation through one Gram matrix per row instead of ``n_eval`` neighbourhoods.

    With ``G = E[L_u] E[L_v]^T`` and ``c^s_u`` the multiplicities of ``L_u``'s nodes in
    sampling ``s`` (the centre once), the attention-weighted score over the ``(k+1)^2``
    pairs is exactly

    .. math:: s = \frac{c^{s\,T}_u (P \circ G)\, c^s_v}{c^{s\,T}_u P\, c^s_v}, \qquad
              P = \exp(L - \max L)

    with ``L = G / T`` (ni:1) or ``tanh(f_1 + f_2^T) / T`` (ni:2).
    """
    ids_u, ids_v = model.neighbors.padded_lists(user_nodes), model.neighbors.padded_lists(items)
    emb_u, emb_v = model.embedding(ids_u), model.embedding(ids_v)             # [b, Wu | Wv, d]
    gram = torch.bmm(emb_u, emb_v.transpose(1, 2))                            # [b, Wu, Wv]
    if model.attention == "ni:1":
        logits = gram / model.temperature
    else:
        f1 = torch.matmul(emb_u, model.w1) + model.b1                         # [b, Wu, 1]
        f2 = torch.matmul(emb_v, model.w2) + model.b2                         # [b, Wv, 1]
        logits = torch.tanh(f1 + f2.transpose(1, 2)) / model.temperature
    # padded positions have count 0; including them in the max keeps exp() <= 1 (no inf * 0)
    weights = torch.exp(logits - logits.flatten(1).max(dim=1).values.view(-1, 1, 1))
    # c_u^T M c_v for M = (P o G, P): the rows of the centre and the k sampled user-side
    # nodes summed, then the same columns on the item side (cheaper than building c_u, c_v)
    pair = torch.stack([weights * gram, weights], dim=2)                      # [b, Wu, 2, Wv]
    b, width_u, _, width_v = pair.shape
    n_s, k = slots_u.shape[1:]
    first_row = torch.arange(b, device=pair.device).view(b, 1, 1) * width_u
    rows = (first_row + slots_u.long() + 1).view(-1, k)
    # embedding_bag gathers and sums the k rows of each sampling in one pass
    per_sampling = F.embedding_bag(rows, pair.view(b * width_u, 2 * width_v), mode="sum")
    per_sampling = per_sampling.view(b, n_s, 2, width_v) + pair[:, :1]       # [b, S, 2, Wv]
    columns = (slots_v.long() + 1).unsqueeze(2).expand(b, n_s, 2, k)
    numerator, denominator = (per_sampling.gather(3, columns).sum(3) + per_sampling[..., 0]).unbind(2)
    return torch.sigmoid(numerator / denominator).mean(dim=1)


def direct_probs(model, user_nodes: torch.Tensor, items: torch.Tensor,
                 slots_u: torch.Tensor, slots_v: torch.Tensor) -> torch.Tensor:
    """The definition: the ``n_eval`` neighbourhoods of each side, probabilities averaged."""
    hood_u = model.embedding(hood_ids(model, user_nodes, slots_u))
    hood_v = model.embedding(hood_ids(model, items, slots_v))
    return torch.sigmoid(model.interaction_logits(hood_u, hood_v)).mean(dim=1)


def hood_ids(model, nodes: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """``[b], [b, S, k] -> [b, S, k + 1]`` node ids: centre, then the sampled neighbours."""
    neighbours = model.neighbors.slot_nodes(nodes, slots)
    return torch.cat([nodes.view(-1, 1, 1).expand(-1, slots.shape[1], 1), neighbours], dim=2)


def direct_block_rows(model) -> int:
    """Rows whose ``n_eval`` neighbourhoods of both sides stay under :data:`EVAL_BLOCK` elements."""
    per_row = 2 * model.n_eval * model.nodes_per_neighborhood() * model.embedding_size
    return max(1, EVAL_BLOCK // per_row)


def full_sort_probs(model, users: torch.Tensor) -> torch.Tensor:
    """Probabilities ``[B * n_items]`` of every item for each user, ``n_eval`` samplings averaged,
    items in chunks so that neighbourhoods and pair scores stay under :data:`EVAL_BLOCK`."""
    n_s = model.n_eval
    hood_u = model.neighborhood(model.user_nodes(users).expand(n_s, -1))     # [S, B, k+1, d]
    k1, dim = hood_u.shape[-2], hood_u.shape[-1]
    chunk = max(1, EVAL_BLOCK // (n_s * max(len(users) * k1 * k1, k1 * dim)))
    scores = []
    for begin in range(0, model.n_items, chunk):
        items = torch.arange(begin, min(begin + chunk, model.n_items), device=users.device)
        hood_v = model.neighborhood(items.expand(n_s, -1))                    # [S, c, k+1, d]
        logits = model.interaction_logits(hood_u.unsqueeze(2), hood_v.unsqueeze(1))  # [S, B, c]
        scores.append(torch.sigmoid(logits).mean(dim=0))
    return torch.cat(scores, dim=1).view(-1)
