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

from recbole_ext.recommend.cache import CACHE_SUFFIX
from recbole_ext.recommend.cli import (
    add_recommend_arguments,
    read_pairs,
    read_users,
    recommend_main,
    write_frame,
)
from recbole_ext.recommend.recommender import (
    COLUMNS,
    PAIR_COLUMNS,
    Recommender,
    RecommendError,
    recommend,
    score_pairs,
)

__all__ = ["CACHE_SUFFIX", "COLUMNS", "PAIR_COLUMNS", "RecommendError", "Recommender", "add_recommend_arguments",
           "read_pairs", "read_users", "recommend", "recommend_main", "score_pairs", "write_frame"]
