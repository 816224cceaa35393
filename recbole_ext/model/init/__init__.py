"""Embedding initialisers that any model can use through config alone.

``embedding_init: le | leporid`` (keys in ``properties/init/leporid.yaml``) replaces the
weights of every user and item ``nn.Embedding`` of a built model with LE or LEPORID
embeddings computed from the training split (:mod:`recbole_ext.model.init.leporid`).
``recbole_ext.quick_start.build_model`` calls :func:`apply_embedding_init` right after
the model is built, so it works on RecBole's models (BPR, NeuMF, LightGCN, GRU4Rec, ...)
and on ours.
"""

from __future__ import annotations

import time
from logging import getLogger
from typing import Any

import numpy as np
import torch
from torch import nn

from recbole_ext.model.init.leporid import SIMILARITIES, cached_embedding
from recbole_ext.params import ParamSpec, boolean, choice, integer, real

EMBEDDING_INITS = ("default", "le", "leporid")
# the keys of properties/init/leporid.yaml (checked by every recbole-ext Config)
EMBEDDING_INIT_PARAMS = ParamSpec({
    "embedding_init": choice(*EMBEDDING_INITS),
    "embedding_init_dim": integer(1),
    "leporid_topk": integer(1),
    "leporid_lambda": real(0, 1),
    "leporid_similarity": choice(*SIMILARITIES),
    "embedding_init_freeze": boolean(),
    "embedding_init_std": real(0, low_open=True),
})

__all__ = ["apply_embedding_init", "find_user_item_embeddings", "EMBEDDING_INITS", "EMBEDDING_INIT_PARAMS"]


def find_user_item_embeddings(model: nn.Module, n_users: int, n_items: int) -> dict[str, tuple[str, nn.Embedding]]:
    """User/item embedding tables of ``model``: ``{layer name: (side, module)}``.

    A table belongs to a side when its row count is the dataset's user or item count
    (RecBole's ids, padding row 0 included). When both counts are equal the layer name
    must contain ``user`` or ``item``.
    """
    found = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Embedding):
            continue
        sides = [side for side, count in (("user", n_users), ("item", n_items))
                 if module.num_embeddings == count]
        if len(sides) == 2:
            sides = [side for side in sides if side in name.lower()]
            if len(sides) != 1:
                raise ValueError(f"{type(model).__name__}.{name} has {module.num_embeddings} rows, "
                                 f"the number of both users and items, and its name does not say which")
        if sides:
            found[name] = (sides[0], module)
    return found


def apply_embedding_init(model: nn.Module, dataset: Any, config: Any) -> dict:
    """Initialise ``model``'s user/item embeddings with LE or LEPORID, in place.

    Args:
        model: a built recommender (any ``nn.Module``).
        dataset: the training split (``train_data.dataset``); only its
            ``inter_matrix`` is read, so validation and test never leak in.
        config: a Config with the keys of ``properties/init/leporid.yaml``.

    Returns:
        ``{"method", "layers": {name: side}, "seconds", "cached": {side: bool}}``;
        ``layers`` is empty for ``embedding_init: default``.

    Raises:
        ValueError: an unknown method or parameter, no user/item embedding, or a layer
            whose width differs from ``embedding_init_dim`` (naming model, layer, sizes), or
            ``embedding_init_freeze`` leaving the model no trainable parameter (BPR, LightGCN).
    """
    method = config["embedding_init"]
    if method in (None, "default"):
        return {"method": "default", "layers": {}, "seconds": 0.0, "cached": {}}
    EMBEDDING_INIT_PARAMS.apply("embedding_init", config)
    dim, topk, lam = config["embedding_init_dim"], config["leporid_topk"], config["leporid_lambda"]
    similarity, freeze, std = config["leporid_similarity"], config["embedding_init_freeze"], config["embedding_init_std"]
    cache_dir = config["embedding_init_cache_dir"]

    model_name = type(model).__name__
    layers = find_user_item_embeddings(model, dataset.user_num, dataset.item_num)
    if not layers:
        raise ValueError(f"embedding_init={method}: {model_name} has no nn.Embedding with "
                         f"{dataset.user_num} (users) or {dataset.item_num} (items) rows to initialise")
    for name, (side, module) in layers.items():
        if module.embedding_dim != dim:
            raise ValueError(f"embedding_init={method}: {model_name}.{name} ({side} embedding) has width "
                             f"{module.embedding_dim} but embedding_init_dim is {dim}; set "
                             f"embedding_init_dim={module.embedding_dim} or give the model "
                             f"{dim}-dimensional embeddings")
    initialised = {id(module.weight) for _, module in layers.values()}
    if freeze and not any(p.requires_grad and id(p) not in initialised for p in model.parameters()):
        # RecBole's trainer would fail later with "element 0 of tensors does not require grad"
        raise ValueError(f"embedding_init_freeze=True leaves {model_name} nothing to train: its only "
                         f"parameters are the initialised embeddings ({', '.join(layers)}); set "
                         f"embedding_init_freeze=False or use a model with other trainable layers")

    start = time.perf_counter()
    interactions = dataset.inter_matrix(form="csr")  # [n_users, n_items], training split only
    params = {"dim": dim, "topk": topk, "lam": lam if method == "leporid" else 0.0,
              "similarity": similarity}
    embeddings, cached = {}, {}
    for side in sorted({side for side, _ in layers.values()}):
        rows = interactions if side == "user" else interactions.T.tocsr()
        embeddings[side], cached[side] = cached_embedding(rows, cache_dir, str(config["dataset"]), side,
                                                          **params)
    with torch.no_grad():
        for name, (side, module) in layers.items():
            # z-scored columns have std 1; embedding_init_std rescales them (a dot-product model
            # such as BPR starts from scores of std ~sqrt(dim) at 1.0)
            module.weight.copy_(torch.as_tensor(std * np.asarray(embeddings[side]), dtype=module.weight.dtype))
            module.weight.requires_grad_(not freeze)
    seconds = time.perf_counter() - start
    getLogger().info(f"embedding_init={method} ({params}, std={std}, freeze={freeze}) applied to "
                     f"{', '.join(f'{model_name}.{n}' for n in layers)} in {seconds:.2f}s "
                     f"(cache hits: {cached})")
    return {"method": method, "layers": {name: side for name, (side, _) in layers.items()},
            "seconds": seconds, "cached": cached}
