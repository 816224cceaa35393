"""Top-k recommendations and pair scores from any checkpoint written by a recbole-ext run.

RecBole's answer to "which items should user X get?", ``recbole.utils.case_study.full_sort_topk``,
takes internal ids and a test dataloader and only suits full-sort models. Here a checkpoint is
enough, and ids are the **external** tokens of the atomic files, in and out::

    from recbole_ext.recommend import recommend
    recs = recommend("saved/BPR-ml-1m-....pth", users=["1", "42"], topk=10)
    # pandas DataFrame: user_id, rank, item_id, score, cold_start

    python run_recbole_ext.py --recommend saved/BPR-....pth --users 1 42 --topk 10 --output recs.csv

The dataset is rebuilt from the checkpoint's config with the run's seed (so a random split is the
run's split), and the id maps and histories are exactly those the model was trained with.

**Scores.** Every family goes through the model's own scoring functions:

- ``full_sort_predict`` for one batch of users when the model has it (general models, RecBole's
  knowledge-aware models, KNI, the explicit-rating models NRP / BiasedMF / the autoencoders,
  whose scores are predicted ratings, and sequential models);
- otherwise ``predict`` on every (user, candidate item) pair, user and item features joined as
  RecBole's dataloaders do, in blocks of ``eval_batch_size`` pairs (e.g. NeuMF, the
  context-aware models, DIN). A model that needs a field only observed interactions carry
  cannot rank unseen items; that is reported in one line.
- KNI's scores average ``n_eval`` random neighbour samplings (its evaluation rule); the torch
  seed is reset to the run's ``seed`` before each call, so a call is reproducible, but a user's
  scores depend on which users share the batch.

**History and seen items.** Unless ``include_seen`` is set, a user's *seen* items are left out:

- general, knowledge-aware and rating models: the user's rows of the **training split** rebuilt
  from the checkpoint's config (RecBole's ``inter_matrix`` of the training split; on labelled
  data such as KNI's, only the positive rows ``label > 0.5``). ``exclude_known`` also leaves
  out the user's validation and test interactions (every known interaction).
- sequential models: the input is the user's **whole known history**, i.e. their interactions
  in the training, validation and test splits in time order (ties in file order), truncated to
  the last ``MAX_ITEM_LIST_LENGTH`` items; the seen items are that whole history. Under
  Devooght's user-disjoint protocol (``devooght_protocol: True``) every user's whole sequence is
  in one of the three files, so a validation or test user's input is their full sequence (not
  the first half the evaluation feeds).

**Users without history.** A known user with no training interaction (sequential models: no
known interaction), e.g. a user listed only in the ``.user`` file, or a KNI user whose training
rows are all negatives, gets the most popular training items (score = number of training
interactions) with ``cold_start = True``. An id missing from the dataset raises
:class:`RecommendError` naming it and a few close ids.

**Speed.** Rebuilding the dataset (RecBole's ``create_dataset`` + ``data_preparation``) is the
slow part of loading. The first call therefore writes a cache next to the checkpoint
(``<checkpoint>.recommend-cache``, weights-only torch format, written atomically) holding the
training split's dataset state, the known history and the id maps; later calls read it if the
checkpoint, the dataset files and the config overrides are unchanged. A dataset state that
cannot be stored in plain form, or a model whose scores differ when built from the stored
state, is simply not cached.
"""

from __future__ import annotations

import argparse
import difflib
import enum
import importlib
import io
import os
import sys
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable
from logging import getLogger
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from recbole.data.dataset import Dataset
from recbole.data.interaction import Interaction
from recbole.utils import ModelType, init_seed

from recbole_ext.checkpoint import (
    config_from_checkpoint,
    load_checkpoint,
    load_model_state,
)
from recbole_ext.data import create_dataset, data_preparation
from recbole_ext.quick_start import build_model

CACHE_FORMAT = "recbole-ext-recommend/1"
CACHE_SUFFIX = ".recommend-cache"
COLUMNS = ["user_id", "rank", "item_id", "score", "cold_start"]
PAIR_COLUMNS = ["user_id", "item_id", "score", "seen", "cold_start"]
# Score-matrix elements (users x items) per scoring batch: bounds memory whatever the item count.
_SCORE_BLOCK = 1 << 22
# Dataset modules whose classes a cache may name (a cache never imports anything else).
_TRUSTED_MODULES = ("recbole.", "recbole_ext.")
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
        fingerprint = _fingerprint(checkpoint, config, config_overrides)
        if cache:
            state = _read_cache(cache_path, fingerprint)
            if state is not None:
                dataset = _unpack_dataset(state["dataset"], config)
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
            _write_cache(cache_path, fingerprint, recommender, ckpt)
        return recommender

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


# ---------------------------------------------------------------------------------- cache
def _fingerprint(checkpoint, config, overrides: dict | None) -> dict:
    """What the cached dataset state depends on: the checkpoint file, the dataset's files (size
    and modification time) and the overrides."""
    import recbole

    from recbole_ext.utils import to_plain

    stat = os.stat(checkpoint)
    folder = Path(config["data_path"])
    files = sorted(folder.glob(f"{config['dataset']}.*")) if folder.is_dir() else []
    return {"format": CACHE_FORMAT, "recbole": recbole.__version__,
            "checkpoint": [stat.st_size, stat.st_mtime_ns],
            "data": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files],
            "overrides": to_plain(overrides or {})}


def _read_cache(path: Path, fingerprint: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - an unreadable cache is rebuilt, never fatal
        getLogger().warning(f"recommend cache {path} unreadable ({err}); rebuilding it")
        return None
    if state.get("fingerprint") != fingerprint:
        return None
    return state


def _write_cache(path: Path, fingerprint: dict, recommender: Recommender, ckpt: dict) -> None:
    """Store the dataset state if it packs into plain data and rebuilds an identical model."""
    dataset = recommender.dataset
    try:
        packed = _pack_dataset(dataset, recommender.sequential)
    except _Unpackable as err:
        getLogger().info(f"recommend cache not written: {err}")
        return
    known = recommender.known
    state = {"fingerprint": fingerprint, "dataset": packed,
             "known": {"indptr": torch.from_numpy(known.indptr.astype(np.int64)),
                       "indices": torch.from_numpy(known.indices.astype(np.int64))},
             "sequences": recommender.sequences}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, map_location="cpu", weights_only=True)
    try:
        copy = _unpack_dataset(restored["dataset"], recommender.config)
        same = _same_scores(recommender, Recommender(
            recommender.config, _build_model(ckpt, recommender.config, copy), copy,
            _csr_from(restored["known"], copy), restored["sequences"]))
    except Exception as err:  # noqa: BLE001 - e.g. a model that reads a dropped column
        getLogger().info(f"recommend cache not written: the stored dataset state does not rebuild "
                         f"the model ({type(err).__name__}: {err})")
        return
    if not same:
        getLogger().info("recommend cache not written: the model built from the stored dataset "
                         "state scores differently")
        return
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)  # readers never see a half-written cache
    except OSError as err:
        tmp.unlink(missing_ok=True)
        getLogger().warning(f"recommend cache not written to {path}: {err}")


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


class _Unpackable(TypeError):
    """A dataset attribute with no plain (weights-only) form."""


_SKIPPED = {"config", "logger"}
_TAG = "__recbole_ext_recommend__"


def _pack_dataset(dataset: Dataset, sequential: bool) -> dict:
    """The training split's attributes in weights-only form (config and logger are re-attached).

    The augmented ``*_list`` columns of a sequential training split are dropped: they are large,
    rebuilt from nothing here, and no model reads them at construction time (the cache is only
    kept when the model built from it scores exactly like the original).
    """
    attrs = dict(vars(dataset))
    if sequential and isinstance(attrs.get("inter_feat"), Interaction):
        suffix = dataset.config["LIST_SUFFIX"]
        length = getattr(dataset, "item_list_length_field", None)
        kept = {k: v for k, v in attrs["inter_feat"].interaction.items()
                if not k.endswith(suffix) and k != length}
        attrs["inter_feat"] = Interaction(kept)
    cls = type(dataset)
    return {"class": f"{cls.__module__}:{cls.__qualname__}",
            "attrs": {name: _pack(value, name) for name, value in attrs.items() if name not in _SKIPPED}}


def _unpack_dataset(packed: dict, config) -> Dataset:
    module_name, _, qualname = packed["class"].partition(":")
    if not module_name.startswith(_TRUSTED_MODULES):
        raise RecommendError(f"recommend cache names dataset class {packed['class']}, which is "
                             "neither RecBole's nor recbole-ext's; delete the cache file")
    cls = getattr(importlib.import_module(module_name), qualname)
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise RecommendError(f"recommend cache names {packed['class']}, which is not a dataset class")
    dataset = cls.__new__(cls)
    dataset.__dict__.update({name: _unpack(value) for name, value in packed["attrs"].items()})
    dataset.config = config
    dataset.logger = getLogger()
    return dataset


def _pack(value: Any, where: str) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, torch.Tensor)):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, enum.Enum):
        return {_TAG: "enum", "class": _class_name(type(value), where), "name": value.name}
    if isinstance(value, Interaction):
        return {_TAG: "interaction", "data": dict(value.interaction)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return {_TAG: "ndarray", "data": torch.from_numpy(np.ascontiguousarray(value))}
        if value.dtype.kind == "U" or (value.dtype == object and all(isinstance(v, str) for v in value.flat)):
            return {_TAG: "strings", "dtype": value.dtype.str, "shape": list(value.shape),
                    "data": [str(v) for v in value.flat]}
        raise _Unpackable(f"{where}: array of dtype {value.dtype}")
    if type(value) is list:
        return [_pack(v, where) for v in value]
    if type(value) in (tuple, set):
        return {_TAG: type(value).__name__, "items": [_pack(v, where) for v in value]}
    if isinstance(value, dict):
        return _pack_mapping(value, where)
    raise _Unpackable(f"{where}: {type(value).__module__}.{type(value).__qualname__}")


def _pack_mapping(value: dict, where: str) -> dict:
    """Plain dicts, OrderedDict, defaultdict of a builtin factory, and Counter subclasses of
    RecBole/recbole-ext (with their attributes, e.g. ``ItemPopularity.num_items``)."""
    cls = type(value)
    if not (cls in (dict, OrderedDict, defaultdict) or issubclass(cls, Counter)):
        raise _Unpackable(f"{where}: mapping {cls.__module__}.{cls.__qualname__}")
    keys = [k.item() if isinstance(k, np.generic) else k for k in value]
    if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in keys):
        raise _Unpackable(f"{where}: mapping with a key that is not a str or an int")
    out = {_TAG: "dict", "class": _class_name(cls, where), "keys": keys,
           "values": [_pack(v, f"{where}[{k!r}]") for k, v in zip(keys, value.values())]}
    if cls is defaultdict:
        if value.default_factory not in (None, *_FACTORIES.values()):
            raise _Unpackable(f"{where}: defaultdict factory {value.default_factory}")
        out["factory"] = getattr(value.default_factory, "__name__", None)
    if getattr(value, "__dict__", None):
        out["attrs"] = {k: _pack(v, f"{where}.{k}") for k, v in vars(value).items()}
    return out


def _class_name(cls: type, where: str) -> str:
    if cls.__module__ not in _TRUSTED_BUILTINS and not cls.__module__.startswith(_TRUSTED_MODULES):
        raise _Unpackable(f"{where}: {cls.__module__}.{cls.__qualname__}")
    return f"{cls.__module__}:{cls.__qualname__}"


_FACTORIES = {f.__name__: f for f in (list, dict, set, int, float)}
_TRUSTED_BUILTINS = ("builtins", "collections")


def _unpack(value: Any) -> Any:
    if isinstance(value, list):
        return [_unpack(v) for v in value]
    if not (isinstance(value, dict) and _TAG in value):
        return value
    tag = value[_TAG]
    if tag == "ndarray":
        return value["data"].numpy()
    if tag == "strings":
        return np.array(value["data"], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
    if tag == "interaction":
        return Interaction(value["data"])
    if tag in ("tuple", "set"):
        return (tuple if tag == "tuple" else set)(_unpack(v) for v in value["items"])
    if tag == "enum":
        return _trusted_class(value["class"])[value["name"]]
    if tag == "dict":
        cls = _trusted_class(value["class"])
        items = zip(value["keys"], (_unpack(v) for v in value["values"]))
        if cls is defaultdict:
            out = defaultdict(_FACTORIES.get(value["factory"]), items)
        elif cls in (dict, OrderedDict):
            out = cls(items)
        elif issubclass(cls, Counter):
            out = cls.__new__(cls)
            dict.update(out, items)  # Counter(...) would count the pairs instead
        else:
            raise RecommendError(f"recommend cache names mapping {value['class']}; delete the cache file")
        for name, attr in value.get("attrs", {}).items():
            setattr(out, name, _unpack(attr))
        return out
    raise RecommendError(f"recommend cache holds an unknown entry '{tag}'; delete the cache file")


def _trusted_class(spec: str) -> type:
    module_name, _, qualname = spec.partition(":")
    if module_name not in _TRUSTED_BUILTINS and not module_name.startswith(_TRUSTED_MODULES):
        raise RecommendError(f"recommend cache names class {spec}; delete the cache file")
    return getattr(importlib.import_module(module_name), qualname)


# ---------------------------------------------------------------------------------- CLI
def add_recommend_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``--recommend`` options to ``run_recbole_ext.py``'s parser."""
    group = parser.add_argument_group(
        "recommendations", "top-k items per user, or pair scores, from a saved checkpoint "
        "(external ids of the atomic files; see recbole_ext/recommend.py)")
    group.add_argument("--recommend", metavar="CHECKPOINT", help="checkpoint to recommend from")
    who = group.add_mutually_exclusive_group()
    who.add_argument("--users", nargs="+", metavar="USER", help="external user ids")
    who.add_argument("--users-file", metavar="FILE", help="file of user ids, one per line")
    who.add_argument("--all-users", action="store_true", help="every user of the dataset")
    who.add_argument("--pairs", metavar="FILE",
                     help="score the (user_id, item_id) rows of a CSV/TSV file with a header "
                          "instead (predicted ratings for rating models)")
    # a string, because without --recommend ``--topk=[10]`` is RecBole's config key
    group.add_argument("--topk", metavar="K", default=None, help="items per user (default 10)")
    group.add_argument("--output", metavar="FILE",
                       help="write .csv or .jsonl (one JSON object per row); default: CSV on stdout")
    group.add_argument("--include-seen", action="store_true",
                       help="keep the items of the user's history (training items; sequential: the input)")
    group.add_argument("--exclude-known", action="store_true",
                       help="also leave out the user's validation and test interactions")
    group.add_argument("--no-cache", action="store_true",
                       help="neither read nor write <CHECKPOINT>.recommend-cache")


def recommend_main(args: argparse.Namespace, overrides: dict | None = None) -> int:
    """Run the ``--recommend`` command; returns the exit status. Errors raise ValueError subclasses."""
    if not args.recommend:
        raise RecommendError("--users/--users-file/--all-users/--pairs need --recommend CHECKPOINT")
    topk = _parse_topk(args.topk)
    output = Path(args.output) if args.output else None
    if output is not None and output.suffix.lower() not in (".csv", ".jsonl"):
        raise RecommendError(f"--output {output}: the file name must end in .csv or .jsonl")
    if args.pairs:
        pairs = read_pairs(args.pairs)
    elif args.users:
        users = args.users
    elif args.users_file:
        users = read_users(args.users_file)
    elif not args.all_users:
        raise RecommendError("--recommend needs --users U1 U2 ..., --users-file FILE, --all-users or --pairs FILE")
    start = time.perf_counter()
    recommender = Recommender.from_checkpoint(args.recommend, overrides,
                                              trust_legacy=args.trust_legacy_checkpoint,
                                              cache=not args.no_cache)
    if args.pairs:
        frame = recommender.score_pairs(pairs)
        what = f"{len(frame)} pair scores"
    else:
        frame = recommender.recommend(None if args.all_users else users, topk,
                                      include_seen=args.include_seen, exclude_known=args.exclude_known,
                                      show_progress=args.all_users)
        what = f"top-{topk} of {frame['user_id'].nunique()} users ({int(frame['cold_start'].sum())} " \
               "cold-start rows)"
    write_frame(frame, output)
    sys.stdout.flush()
    where = f" to {output}" if output else ""
    print(f"{what}{where} in {time.perf_counter() - start:.2f}s", file=sys.stderr)
    return 0


def _parse_topk(value: str | None) -> int:
    if value is None:
        return 10
    try:
        topk = int(value)
    except ValueError:
        topk = 0
    if topk < 1:
        raise RecommendError(f"--topk must be a positive int, got '{value}'")
    return topk


def read_users(path: str | os.PathLike) -> list[str]:
    """User ids of a file, one per line; blank lines, '#' comments and a ``user_id`` header skipped."""
    lines = _read_text(path).splitlines()
    users = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if users and users[0].split(":")[0] == "user_id":
        users = users[1:]
    if not users:
        raise RecommendError(f"{path}: no user ids (expected one id per line)")
    return users


def read_pairs(path: str | os.PathLike) -> pd.DataFrame:
    """(user, item) rows of a CSV or TSV file whose header names ``user_id`` and ``item_id``
    (RecBole's ``user_id:token`` form is accepted)."""
    text = _read_text(path)
    first = text.splitlines()[0] if text.strip() else ""
    sep = "\t" if "\t" in first else ","
    frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    frame.columns = [str(c).split(":")[0].strip() for c in frame.columns]
    missing = [c for c in ("user_id", "item_id") if c not in frame.columns]
    if missing:
        raise RecommendError(f"{path}:1: the header must name user_id and item_id; got "
                             f"{', '.join(frame.columns) or 'nothing'}")
    return frame[["user_id", "item_id"]]


def _read_text(path: str | os.PathLike) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    return path.read_text()


def write_frame(frame: pd.DataFrame, output: Path | None) -> None:
    """Write ``frame`` as CSV (stdout when ``output`` is None) or JSON lines, atomically."""
    if output is None:
        frame.to_csv(sys.stdout, index=False)
        return
    text = (frame.to_json(orient="records", lines=True) if output.suffix.lower() == ".jsonl"
            else frame.to_csv(index=False))
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, output)  # a reader never sees a half-written file
    finally:
        tmp.unlink(missing_ok=True)
