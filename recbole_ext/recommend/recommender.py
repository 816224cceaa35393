"""The :class:`Recommender`: a checkpoint's model with its dataset's id maps and histories
(see the package docstring for the rules)."""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterable
from logging import getLogger
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from recbole.data.dataset import Dataset
from recbole.data.interaction import Interaction
from recbole.utils import ModelType, init_seed

from recbole_ext.checkpoint import load_checkpoint, load_model_state
from recbole_ext.config import config_from_checkpoint
from recbole_ext.data import create_dataset, data_preparation
from recbole_ext.quick_start import build_model
from recbole_ext.recommend.cache import (
    CACHE_SUFFIX,
    Unpackable,
    fingerprint,
    pack_dataset,
    read_cache,
    unpack_dataset,
    write_cache,
)

COLUMNS = ["user_id", "rank", "item_id", "score", "cold_start"]
PAIR_COLUMNS = ["user_id", "item_id", "score", "seen", "cold_start"]
# Score-matrix elements (users x items) per scoring batch: bounds memory whatever the item count.
_SCORE_BLOCK = 1 << 22
# Users whose close ids are searched in full; beyond it only ids of similar length are compared.
_CLOSE_ID_POOL = 20000


class RecommendError(ValueError):
    """A request that cannot be answered (unknown id, bad input file, a model that cannot rank)."""


# ---------------------------------------------------------------------------------- recommender
class Recommender:
    """A checkpoint's model with the id maps and histories of its dataset, for repeated queries.

    Build it with :meth:`from_checkpoint`; :func:`recommend` and :func:`score_pairs` are one-call
    shortcuts.

    Attributes:
        config: the run's config rebuilt from the checkpoint.
        model: the model in eval mode, weights loaded.
        dataset: the training split the model was built on.
    """

    def __init__(self, config, model: torch.nn.Module, dataset: Dataset, known: sp.csr_matrix,
                 sequences: dict[str, torch.Tensor] | None) -> None:
        self.config = config
        self.model = model.eval()
        self.dataset = dataset
        self.uid_field, self.iid_field = dataset.uid_field, dataset.iid_field
        self.user_tokens = np.asarray(dataset.field2id_token[self.uid_field])
        self.item_tokens = np.asarray(dataset.field2id_token[self.iid_field])
        self.n_users, self.n_items = len(self.user_tokens), len(self.item_tokens)
        self.sequential = config["MODEL_TYPE"] == ModelType.SEQUENTIAL
        self.known = known.tocsr()
        self.sequences = sequences
        if self.sequential:
            if sequences is None:
                raise ValueError("a sequential model needs the users' known histories")
            # training rows are (prefix -> next item): every training interaction but the first
            # of each sequence; the seen items are the whole known history (the input)
            items = dataset.inter_feat[self.iid_field].numpy()
            self.popularity = np.bincount(items, minlength=self.n_items).astype(np.float64)
            self.seen = self.known
            lengths = torch.diff(sequences["ptr"])
            self.has_history = (lengths > 0).numpy()
            self.max_len = int(config["MAX_ITEM_LIST_LENGTH"])
            suffix = config["LIST_SUFFIX"]
            self.list_fields = {field: field + suffix for field in sequences
                                if field != "ptr" and field + suffix in dataset.field2type}
        else:
            self.seen = dataset.inter_matrix(form="csr")  # the training rows (labelled: positives)
            self.popularity = np.asarray(self.seen.sum(axis=0)).ravel().astype(np.float64)
            self.has_history = np.diff(self.seen.indptr) > 0
        self.popularity[0] = -np.inf  # the padding item is never recommended
        self._full_sort = True  # until the model says it has no full_sort_predict

    # -------------------------------------------------------------------------- loading
    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, config_overrides: dict | None = None,
                        trust_legacy: bool = False, cache: bool = True) -> "Recommender":
        """Load a checkpoint and the dataset state it needs (from the cache when it is valid).

        Args:
            checkpoint: a ``.pth`` written by a recbole-ext run (or by RecBole, if trusted).
            config_overrides: config keys to change, e.g. ``{"data_path": ...}`` when the
                data moved, or ``{"use_gpu": False}``.
            trust_legacy: allow unpickling a checkpoint written by RecBole itself.
            cache: read and write ``<checkpoint>.recommend-cache``.
        """
        ckpt = load_checkpoint(checkpoint, "cpu", trust_legacy)
        overrides = {"state": "ERROR", "show_progress": False, **(config_overrides or {})}
        config = config_from_checkpoint(ckpt, overrides)
        cache_path = Path(f"{checkpoint}{CACHE_SUFFIX}")
        key = fingerprint(checkpoint, config, config_overrides)
        if cache:
            state = read_cache(cache_path, key)
            if state is not None:
                dataset = unpack_dataset(state["dataset"], config)
                return cls(config, _build_model(ckpt, config, dataset), dataset,
                           _csr_from(state["known"], dataset), state["sequences"])

        # Not prepare_run: the known history must be read before RecBole's split augments a
        # sequential dataset in place, and a query writes no log. The same seed as the run
        # before splitting: a random-order split depends on it.
        init_seed(config["seed"], config["reproducibility"])
        dataset_full = create_dataset(config)
        if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
            sequences = _known_sequences(dataset_full)
            known = _csr_from({"indptr": sequences["ptr"], "indices": sequences[dataset_full.iid_field]},
                              dataset_full)
        else:
            # read before build(): the whole data, not a split (labelled data: the positive rows)
            sequences, known = None, dataset_full.inter_matrix(form="csr")
        train_data, _, _ = data_preparation(config, dataset_full)
        train = train_data._dataset
        recommender = cls(config, _build_model(ckpt, config, train), train, known, sequences)
        if cache:
            recommender._write_cache(cache_path, key, ckpt)
        return recommender

    def _write_cache(self, path: Path, key: dict, ckpt: dict) -> None:
        """Cache the dataset state when it packs into plain data and rebuilds an identical model."""
        try:
            packed = pack_dataset(self.dataset, self.sequential)
        except Unpackable as err:
            getLogger().info(f"recommend cache not written: {err}")
            return
        state = {"fingerprint": key, "dataset": packed,
                 "known": {"indptr": torch.from_numpy(self.known.indptr.astype(np.int64)),
                           "indices": torch.from_numpy(self.known.indices.astype(np.int64))},
                 "sequences": self.sequences}

        def rebuilds_same(restored: dict) -> bool:
            copy = unpack_dataset(restored["dataset"], self.config)
            return _same_scores(self, Recommender(self.config, _build_model(ckpt, self.config, copy), copy,
                                                  _csr_from(restored["known"], copy), restored["sequences"]))

        write_cache(path, state, rebuilds_same)

    # -------------------------------------------------------------------------- ids
    def user_ids(self, users: Iterable) -> np.ndarray:
        """Internal ids of external user tokens; an unknown token raises :class:`RecommendError`."""
        return self._ids(users, self.uid_field, "user")

    def item_ids(self, items: Iterable) -> np.ndarray:
        return self._ids(items, self.iid_field, "item")

    def _ids(self, tokens: Iterable, field: str, kind: str) -> np.ndarray:
        token_id = self.dataset.field2token_id[field]
        tokens = [str(t) for t in tokens]
        ids = np.fromiter((token_id.get(t, -1) for t in tokens), dtype=np.int64, count=len(tokens))
        ids[ids == 0] = -1  # '[PAD]' is RecBole's padding, not an id
        if (ids < 0).any():
            missing = [t for t, i in zip(tokens, ids) if i < 0]
            vocabulary = self.dataset.field2id_token[field][1:]
            close = _close_ids(missing[0], vocabulary)
            more = f" ({len(missing) - 1} more unknown {kind} ids)" if len(missing) > 1 else ""
            hint = f"; close ids: {', '.join(close)}" if close else ""
            raise RecommendError(f"unknown {kind} id '{missing[0]}': not in dataset "
                                 f"'{self.config['dataset']}' as the checkpoint's config loads it"
                                 f"{hint}{more}")
        return ids

    def all_users(self) -> np.ndarray:
        """External tokens of every user of the dataset (RecBole's padding excluded)."""
        return self.user_tokens[1:]

    # -------------------------------------------------------------------------- queries
    @torch.no_grad()
    def recommend(self, users: Iterable | None = None, topk: int = 10, include_seen: bool = False,
                  exclude_known: bool = False, show_progress: bool = False) -> pd.DataFrame:
        """Top-``topk`` items of each user (external tokens), best first.

        Args:
            users: external user ids; None for every user.
            topk: items per user (fewer when a user has fewer unseen items).
            include_seen: keep the items of the user's history (see the module docstring).
            exclude_known: also leave out the user's validation and test interactions.
            show_progress: a tqdm bar over user batches (on stderr).

        Returns:
            DataFrame with columns ``user_id, rank, item_id, score, cold_start`` (rank from 1),
            users in the order given.
        """
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
            raise RecommendError(f"topk must be a positive int, got {topk!r}")
        tokens = self.all_users() if users is None else np.asarray([str(u) for u in users], dtype=object)
        uids = self.user_ids(tokens)
        k = min(int(topk), self.n_items - 1)
        init_seed(self.config["seed"], self.config["reproducibility"])
        batch = max(1, _SCORE_BLOCK // self.n_items)
        batches = range(0, len(uids), batch)
        if show_progress:
            from tqdm import tqdm

            batches = tqdm(batches, total=-(-len(uids) // batch), unit="batch", file=sys.stderr,
                           desc=f"top-{k} for {len(uids)} users")
        parts = []
        for start in batches:
            rows, items, scores, cold = self._topk_block(uids[start:start + batch], k, include_seen,
                                                         exclude_known)
            parts.append((rows + start, items, scores, cold))
        rows, items, scores, cold = (np.concatenate(column) for column in zip(*parts)) if parts else \
            (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, bool))
        rank = _ranks(rows)
        return pd.DataFrame({"user_id": tokens[rows].astype(str), "rank": rank,
                             "item_id": self.item_tokens[items].astype(str), "score": scores,
                             "cold_start": cold}, columns=COLUMNS)

    def _topk_block(self, uids: np.ndarray, k: int, include_seen: bool, exclude_known: bool):
        """``(row in uids, item id, score, cold)`` arrays of the top-k of a batch of users."""
        warm = self.has_history[uids]
        scores = torch.full((len(uids), self.n_items), float("-inf"))
        if warm.any():
            scores[torch.from_numpy(warm)] = self.scores(uids[warm]).float().cpu()
        if not warm.all():
            scores[torch.from_numpy(~warm)] = torch.from_numpy(self.popularity).float()
        scores[:, 0] = float("-inf")
        if not include_seen:
            _mask(scores, self.seen, uids)
        if exclude_known:
            _mask(scores, self.known, uids)
        values, items = torch.topk(scores, k, dim=1)
        keep = torch.isfinite(values).numpy()
        rows = np.broadcast_to(np.arange(len(uids))[:, None], keep.shape)[keep]
        return rows, items.numpy()[keep], values.numpy()[keep].astype(np.float64), ~warm[rows]

    def scores(self, uids: np.ndarray) -> torch.Tensor:
        """The model's scores ``[len(uids), n_items]`` for internal user ids with a history."""
        interaction = self._user_interaction(uids)
        if self._full_sort:
            try:
                scores = self.model.full_sort_predict(interaction.to(self.model.device))
                return scores.view(len(uids), self.n_items)
            except NotImplementedError:
                self._full_sort = False
        rows = torch.arange(len(uids)).repeat_interleave(self.n_items)
        items = torch.arange(self.n_items).repeat(len(uids))
        return self._predict(interaction, rows, items).view(len(uids), self.n_items)

    @torch.no_grad()
    def score_pairs(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """The model's ``predict`` score of each (user, item) pair; predicted ratings for rating models.

        Args:
            pairs: columns ``user_id`` and ``item_id`` (external tokens).

        Returns:
            DataFrame ``user_id, item_id, score, seen, cold_start`` in the input order; ``seen``
            tells whether the item is in the user's history, ``cold_start`` that the user has none
            (a sequential model then has no input and the score is NaN).
        """
        users = pairs["user_id"].astype(str).to_numpy()
        items = pairs["item_id"].astype(str).to_numpy()
        uids, iids = self.user_ids(users), self.item_ids(items)
        init_seed(self.config["seed"], self.config["reproducibility"])
        score = np.full(len(uids), np.nan)
        warm = self.has_history[uids] | (not self.sequential)
        distinct, inverse = np.unique(uids[warm], return_inverse=True)
        if len(distinct):
            interaction = self._user_interaction(distinct)
            score[warm] = self._predict(interaction, torch.from_numpy(inverse),
                                        torch.from_numpy(iids[warm])).double().cpu().numpy()
        seen = np.asarray(self.seen[uids, iids]).ravel() > 0
        return pd.DataFrame({"user_id": users, "item_id": items, "score": score, "seen": seen,
                             "cold_start": ~self.has_history[uids]}, columns=PAIR_COLUMNS)

    # -------------------------------------------------------------------------- model inputs
    def _user_interaction(self, uids: np.ndarray) -> Interaction:
        """Model input of each user: the id (and user features), plus the known sequence for
        sequential models, laid out as RecBole's sequential dataloaders do."""
        users = torch.from_numpy(np.asarray(uids, dtype=np.int64))
        fields = {self.uid_field: users}
        if self.sequential:
            ptr = self.sequences["ptr"]
            ends = ptr[users + 1]
            lengths = torch.minimum(ends - ptr[users], torch.tensor(self.max_len))
            offset = torch.arange(self.max_len)
            position = (ends - lengths).unsqueeze(1) + offset
            real = offset < lengths.unsqueeze(1)
            position = torch.where(real, position, torch.zeros_like(position))
            for field, list_field in self.list_fields.items():
                values = self.sequences[field][position]
                fields[list_field] = torch.where(real, values, torch.zeros_like(values))
            fields[self.dataset.item_list_length_field] = lengths
        interaction = Interaction(fields)
        if self.dataset.user_feat is not None:
            interaction = self.dataset.join(interaction)
        return interaction

    def _predict(self, interaction: Interaction, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``predict`` of the pairs (``interaction[rows]``, ``items``) in blocks of ``eval_batch_size``."""
        block = max(1, int(self.config["eval_batch_size"]))
        out = []
        for start in range(0, len(rows), block):
            pairs = interaction[rows[start:start + block]]
            pairs.update(Interaction({self.iid_field: items[start:start + block]}))
            if self.dataset.item_feat is not None:
                pairs.update(self.dataset.item_feat[pairs[self.iid_field]])
            try:
                out.append(self.model.predict(pairs.to(self.model.device)).float().view(-1))
            except KeyError as err:
                if not (err.args and isinstance(err.args[0], str) and err.args[0] not in pairs):
                    raise
                raise RecommendError(
                    f"{self.config['model']} cannot score unseen (user, item) pairs: its predict "
                    f"reads the field {err.args[0]!r}, which only observed interactions carry") from None
        return torch.cat(out) if out else torch.empty(0)


# ---------------------------------------------------------------------------------- one-call API
def recommend(checkpoint: str | os.PathLike, users: Iterable | None = None, topk: int = 10, *,
              include_seen: bool = False, exclude_known: bool = False,
              config_overrides: dict | None = None, trust_legacy: bool = False, cache: bool = True,
              show_progress: bool = False) -> pd.DataFrame:
    """Top-``topk`` recommendations of ``users`` (external ids; None: all users) from a checkpoint.

    Returns a DataFrame ``user_id, rank, item_id, score, cold_start``; see
    :meth:`Recommender.recommend` and the module docstring for what is left out and why.
    """
    recommender = Recommender.from_checkpoint(checkpoint, config_overrides, trust_legacy, cache)
    return recommender.recommend(users, topk, include_seen=include_seen, exclude_known=exclude_known,
                                 show_progress=show_progress)


def score_pairs(checkpoint: str | os.PathLike, pairs: pd.DataFrame, *,
                config_overrides: dict | None = None, trust_legacy: bool = False,
                cache: bool = True) -> pd.DataFrame:
    """The model's score of each (``user_id``, ``item_id``) row of ``pairs`` (see
    :meth:`Recommender.score_pairs`)."""
    recommender = Recommender.from_checkpoint(checkpoint, config_overrides, trust_legacy, cache)
    return recommender.score_pairs(pairs)


# ---------------------------------------------------------------------------------- helpers
def _build_model(ckpt: dict, config, dataset: Dataset) -> torch.nn.Module:
    init_seed(config["seed"], config["reproducibility"])
    model = build_model(config, dataset)
    load_model_state(model, ckpt, dataset=config["dataset"])
    return model.eval()


def _known_sequences(dataset: Dataset) -> dict[str, torch.Tensor]:
    """Every known interaction (all splits) grouped by user in time order (ties: file order), as
    flat columns plus ``ptr`` (user ``u``'s rows are ``ptr[u]:ptr[u+1]``).

    Read before ``build`` augments or splits the data, so the first item of a sequence is kept.
    """
    feat = dataset.inter_feat
    columns = feat.columns if isinstance(feat, pd.DataFrame) else list(feat.interaction)
    users = np.asarray(feat[dataset.uid_field], dtype=np.int64)
    keys = [np.arange(len(users))]
    if dataset.time_field in columns:
        keys.append(np.asarray(feat[dataset.time_field], dtype=np.float64))
    keys.append(users)
    order = np.lexsort(keys)
    out = {"ptr": torch.from_numpy(np.concatenate(
        [[0], np.cumsum(np.bincount(users, minlength=dataset.user_num))]).astype(np.int64))}
    for field in columns:
        if field == dataset.uid_field:
            continue
        values = np.asarray(feat[field])
        if values.dtype == object or values.ndim != 1:
            continue  # sequence-valued fields do not become list fields of one item each
        out[field] = torch.from_numpy(np.ascontiguousarray(values[order]))
    return out


def _mask(scores: torch.Tensor, matrix: sp.csr_matrix, uids: np.ndarray) -> None:
    """Set ``scores[r, i] = -inf`` for every item ``i`` of row ``uids[r]`` of ``matrix``."""
    starts, ends = matrix.indptr[uids], matrix.indptr[uids + 1]
    counts = ends - starts
    if counts.sum() == 0:
        return
    rows = np.repeat(np.arange(len(uids)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = matrix.indices[np.repeat(starts, counts) + offsets]
    scores[torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))] = float("-inf")


def _ranks(rows: np.ndarray) -> np.ndarray:
    """1, 2, ... within each run of equal ``rows`` (rows are grouped)."""
    if len(rows) == 0:
        return np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    return np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)])) + 1


def _close_ids(token: str, vocabulary: np.ndarray, n: int = 5) -> list[str]:
    pool = [str(t) for t in vocabulary]
    if len(pool) > _CLOSE_ID_POOL:
        pool = [t for t in pool if abs(len(t) - len(token)) <= 1][:_CLOSE_ID_POOL]
    return difflib.get_close_matches(token, pool, n=n, cutoff=0.5)


def _csr_from(state: dict, dataset: Dataset) -> sp.csr_matrix:
    """A user x item 0/1 matrix from ``indptr``/``indices`` tensors (duplicates summed)."""
    data = np.ones(len(state["indices"]), dtype=np.float64)
    matrix = sp.csr_matrix((data, state["indices"].numpy(), state["indptr"].numpy()),
                           shape=(dataset.user_num, dataset.item_num))
    matrix.sum_duplicates()
    return matrix


def _same_scores(first: Recommender, second: Recommender, n_users: int = 16) -> bool:
    uids = np.flatnonzero(first.has_history)[:n_users]
    if not np.array_equal(first.has_history, second.has_history):
        return False
    if len(uids) == 0:
        return True
    with torch.no_grad():
        scores = []
        for recommender in (first, second):
            torch.manual_seed(0)
            try:
                scores.append(recommender.scores(uids))
            except RecommendError:
                return True  # the model cannot rank at all: nothing a cache could change
    return torch.equal(scores[0], scores[1])
