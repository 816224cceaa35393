"""LEPORID initialisation and DLR2 (issue 5; Zhang et al., KDD 2021, arXiv 2106.04993) on ML-1M.

``python -m benchmarks leporid [--quick] [--only fig2 init table] [--fresh]``

Parts (``--only`` takes part names; default all):

- ``fig2``: the paper's Fig. 2 simulator (:mod:`benchmarks.leporid_fig2`): Barabási–Albert
  graphs, one extra edge per node, embedding change against degree for LE and LEPORID.
  ``--quick``: 5 graphs x 10 extra edges; full: the official 50 x 30.
  Writes ``leporid/fig2.{json,png}``.
- ``init``: on the preset's training split of ML-1M (``leporid-ml-1m``: per-user
  chronological 70/10/20), seconds of our sparse LEPORID (users, items) against a
  straightforward dense implementation (dense Jaccard by matrix products, dense
  symmetric eigensolver; :func:`dense_leporid`), and the principal angles between our
  embedding subspaces and the official ML-1M LEPORID embeddings shipped with the code
  (``RAW_DATA/leporid/ml_1m_all/emb``). Official ids are mapped to ML-1M ids through the
  shipped validation file (:func:`official_id_maps`), which also re-checks the split
  (``split_check``). Ours is computed on the preset split and on the official split as
  far as it can be rebuilt (first ``int(0.7 n)`` ratings of every user by time), with
  ARPACK ``which='LA'`` (ours) and ``'LM'`` (the official code's choice). ``--quick``
  skips the dense user side (a 6,040 x 6,040 eigenproblem). ``leporid/init.json``.
- ``table``: ItemKNN, and BPR / NeuMF / LightGCN each with ``embedding_init`` default, le
  and leporid (BPR and LightGCN also with leporid at ``embedding_init_std: 0.1``); DLR2 with
  random (``default``, trainable) and LEPORID (frozen, its default) embeddings, on a
  200-user subset for one epoch and on all users at the official iteration budget. Preset ``leporid-ml-1m`` (split, HR / Precision / Recall @1,5,10,
  NDCG@10), RecBole's default hyper-parameters of each model, seed 2020. Besides all
  test users, the same metrics on the 25% of test users with the fewest training
  ratings (the paper's tail users; ties by user id). ``leporid/table.json``.

The report of all three parts is ``leporid/report.md``; ``--quick`` writes everything under
the git-ignored ``benchmarks/results/quick/leporid/`` instead.

Budget (``BUDGET``; 2 shared CPU cores, no GPU). ``--quick`` trains every model for one
epoch on the first 500 ML-1M users (DLR2: the first 100). The full size trains
ItemKNN / BPR / NeuMF / LightGCN on all 6,040 users with a fixed epoch budget per model and
one validation at the end (``eval_step = epochs``), i.e. far from convergence for the
neural models. DLR2 runs twice per initialisation: one epoch on the first ``dlr2_users``
users, and on all users at the official code's budget (``dlr2_official``: 5000 Adam steps
on batches of 32 positives, cosine-annealed per step, ``dlr2_batches_per_epoch``), tested
with the final weights. That budget is about 160k training states, a quarter of an ML-1M
epoch; training plus the one validation pass took 446 s (random) and 470 s (LEPORID) on one
thread, with the other core busy. (The cost is the 64-channel 3x3 convolutions over the
6 x 64 state: in isolation a training batch of 32 took 0.09 s, one of 256 0.6 s.) All
numbers are single runs (seed 2020).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from benchmarks.common import DATASET_DIR, RAW_DATA, REPO_ROOT, ResultStore, ensure_converted

PRESET = "leporid-ml-1m"
SEED = 2020
PARTS = ("fig2", "init", "table")
TOPK = (1, 5, 10)
# Per size: users kept (None: all of ML-1M), DLR2's users, and epochs per model.
BUDGET = {
    "quick": {"users": 500, "dlr2_users": 100,
              "epochs": {"ItemKNN": 1, "BPR": 1, "NeuMF": 1, "LightGCN": 1, "DLR2": 1},
              "dlr2_official": {"epochs": 1, "dlr2_batches_per_epoch": 20, "train_batch_size": 32}},
    "full": {"users": None, "dlr2_users": 200,
             "epochs": {"ItemKNN": 1, "BPR": 10, "NeuMF": 2, "LightGCN": 2, "DLR2": 1},
             # the official code's 5000 Adam steps on batches of 32 positives, annealed per step
             "dlr2_official": {"epochs": 5, "dlr2_batches_per_epoch": 1000, "train_batch_size": 32}},
}
INITS = ("default", "le", "leporid")
OFFICIAL = RAW_DATA / "leporid" / "ml_1m_all"


def runs() -> list[tuple[str, str, str, dict]]:
    """``(key, model, embedding_init, other config)`` of the table, in order.

    The ``std0.1`` rows rescale LEPORID's z-scored columns (``embedding_init_std``): at the
    official scale (std 1) the dot-product models start from scores of std ~8, and the user
    and item eigenvectors come from separate graphs, so their products carry no preference.
    """
    table = [("ItemKNN", "ItemKNN", "default", {})]
    for model in ("BPR", "NeuMF", "LightGCN"):
        table += [(f"{model}/{init}", model, init, {}) for init in INITS]
        if model != "NeuMF":
            table.append((f"{model}/leporid std0.1", model, "leporid", {"embedding_init_std": 0.1}))
    table += [("DLR2/random", "DLR2", "default", {"embedding_init_freeze": False}),
              ("DLR2/leporid", "DLR2", "leporid", {})]
    # all users at the official iteration budget (BUDGET[...]["dlr2_official"])
    table += [("DLR2/random, official budget", "DLR2", "default",
               {"embedding_init_freeze": False, "official_budget": True}),
              ("DLR2/leporid, official budget", "DLR2", "leporid", {"official_budget": True})]
    # references on DLR2's (smaller) user set, same epoch budgets as the all-user rows
    table += [(f"{model} (DLR2 users)", model, "default", {"dlr2_users": True}) for model in ("ItemKNN", "BPR")]
    return table


def ensure_ml1m(users: int | None) -> str:
    """``dataset/ml-1m`` (converted once), or ``dataset/ml-1m-u<users>``: its first ``users`` users."""
    ensure_converted("movielens", "ml-1m", "ml-1m")
    if users is None:
        return "ml-1m"
    name = f"ml-1m-u{users}"
    target = DATASET_DIR / name / f"{name}.inter"
    if not target.is_file():
        frame = pd.read_csv(DATASET_DIR / "ml-1m" / "ml-1m.inter", sep="\t")
        kept = frame[frame.iloc[:, 0].astype(int) <= users]
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        kept.to_csv(tmp, sep="\t", index=False)
        os.replace(tmp, target)
    return name


def base_config(**overrides) -> dict:
    config = {"use_gpu": False, "show_progress": False, "state": "WARNING", "seed": SEED,
              "checkpoint_dir": str(REPO_ROOT / "saved" / "benchmarks"), "data_path": str(DATASET_DIR)}
    config.update(overrides)
    return config


def threads() -> str:
    return f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cores={len(os.sched_getaffinity(0))}"


# ---------------------------------------------------------------------------------- init
def dense_leporid(rows: sp.spmatrix, dim: int = 64, topk: int = 1000, lam: float = 0.5) -> np.ndarray:
    """The LEPORID algorithm written densely, as the official code (n x n matrices throughout).

    Jaccard by dense matrix products (the official code loops in Python, which is slower
    still), per-row top-k by ``argpartition``, union symmetrisation, regularised degree,
    ``scipy.linalg.eigh`` for the ``dim`` largest eigenpairs of ``D̃^-1/2 W D̃^-1/2``,
    z-scored columns; rows without a neighbour are 0 (as ours).
    """
    R = (rows.toarray() > 0).astype(np.float64)
    n = len(R)
    degree = R.sum(axis=1)
    inter = R @ R.T
    union = degree[:, None] + degree[None, :] - inter
    S = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    np.fill_diagonal(S, 0.0)
    W = np.zeros_like(S)
    if topk < n:
        best = np.argpartition(-S, topk - 1, axis=1)[:, :topk]
        np.put_along_axis(W, best, np.take_along_axis(S, best, axis=1), axis=1)
    else:
        W = S
    W = np.maximum(W, W.T)
    d = W.sum(axis=1)
    connected = np.flatnonzero(d > 0)
    W = W[np.ix_(connected, connected)]
    d = d[connected]
    d_reg = (1.0 - lam) * d + lam * d.max()
    N = W / np.sqrt(np.outer(d_reg, d_reg))
    m = len(connected)
    _, vectors = scipy.linalg.eigh(N, subset_by_index=[m - dim, m - 1])
    out = np.zeros((n, dim))
    part = vectors[:, ::-1]
    out[connected] = (part - part.mean(axis=0)) / part.std(axis=0)
    return out


def lm_leporid(rows: sp.spmatrix, dim: int = 64, topk: int = 1000, lam: float = 0.5) -> np.ndarray:
    """LEPORID with the official eigen-selection: largest |eigenvalue| of ``D̃^-1/2 W D̃^-1/2``.

    The official ``GetEignVec`` calls ``eigs(max(L) I - L, which='LM')``; with zero diagonal
    ``max(L) = 1``, so it ranks the eigenvalues of ``N = I - L`` by magnitude.
    """
    from scipy.sparse.linalg import eigsh

    from recbole_ext.model.init.leporid import regularized_degree, similarity_graph, zscore_columns

    W = similarity_graph(rows, topk)
    connected = np.flatnonzero(np.diff(W.indptr) > 0)
    sub = W[connected][:, connected]
    scale = sp.diags(1.0 / np.sqrt(regularized_degree(sub, lam)))
    start = np.random.default_rng(0).uniform(-1.0, 1.0, len(connected))
    values, vectors = eigsh((scale @ sub @ scale).tocsr(), k=dim, which="LM", v0=start, tol=1e-4)
    full = np.zeros((W.shape[0], dim))
    full[connected] = vectors
    return zscore_columns(full, connected), values


def principal_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between the column spans of ``a`` and ``b``, descending."""
    return np.sort(np.cos(scipy.linalg.subspace_angles(a, b)))[::-1]


def angle_summary(cosines: np.ndarray) -> dict:
    return {"mean_cos": float(cosines.mean()), "median_cos": float(np.median(cosines)),
            "min_cos": float(cosines.min()), "n_cos_above_0.99": int((cosines > 0.99).sum()),
            "n_cos_above_0.9": int((cosines > 0.9).sum()), "n_dims": int(len(cosines))}


def official_id_maps(ratings: pd.DataFrame) -> tuple[dict[int, int], dict[int, int], dict]:
    """Official (user, item) ids -> ML-1M ids, from the shipped validation file.

    Official user ``u`` is ML-1M user ``u + 1`` (checked: every validation row has an
    ML-1M rating of that user with the same timestamp and rating). An official item is the
    ML-1M movie common to all its validation rows' candidates (same user, timestamp and
    rating); ambiguous items are resolved by removing movies already assigned elsewhere.

    Returns:
        ``(user map, item map, split check)``; the split check locates the validation
        rows in each user's time-sorted ratings.
    """
    valid = pd.read_csv(OFFICIAL / "ml_1m_all_validate.txt", sep=" ", names=["u", "i", "r", "t"])
    valid["user"] = valid.u + 1
    joined = valid.merge(ratings, on=["user", "t", "r"], how="left")
    unmatched = int(joined.item.isna().sum())
    candidates: dict[int, set] = {}
    for (item, _, _, _), group in joined.groupby(["i", "user", "t", "r"]):
        found = set(group.item.dropna().astype(int))
        candidates[item] = candidates[item] & found if item in candidates else found
    items: dict[int, int] = {}
    while True:
        fixed = {k: next(iter(s)) for k, s in candidates.items() if len(s) == 1 and k not in items}
        if not fixed:
            break
        items.update(fixed)
        taken = set(items.values())
        candidates = {k: (s if k in items else s - taken) for k, s in candidates.items()}
    users = {u: u + 1 for u in range(int(valid.u.max()) + 1)}

    ordered = ratings.sort_values(["user", "t"], kind="stable")
    ordered["pos"] = ordered.groupby("user").cumcount()
    n = ordered.groupby("user").size()
    counts = valid.groupby("user").size()
    expected = (0.8 * n).astype(int) - (0.7 * n).astype(int)
    ours = ordered[(ordered.pos >= (0.7 * ordered.user.map(n)).astype(int))
                   & (ordered.pos < (0.8 * ordered.user.map(n)).astype(int))]
    overlap = pd.concat([ours.groupby(["user", "t", "r"]).size().rename("a"),
                         valid.groupby(["user", "t", "r"]).size().rename("b")], axis=1).fillna(0)
    check = {"validation_rows": len(valid), "rows_without_ml1m_match": unmatched,
             "users_with_count_int08n_minus_int07n": float((counts == expected.loc[counts.index]).mean()),
             "rows_in_positions_int07n_to_int08n": float(overlap.min(axis=1).sum() / len(valid)),
             "items_mapped": len(items), "items_in_validation": int(valid.i.nunique())}
    return users, items, check


def official_train_matrix(ratings: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray,
                          shape: tuple[int, int]) -> sp.csr_matrix:
    """The first ``int(0.7 n)`` ratings of every user by time, as a matrix over our ids."""
    ordered = ratings.sort_values(["user", "t"], kind="stable").copy()
    ordered["pos"] = ordered.groupby("user").cumcount()
    ordered["n"] = ordered.groupby("user").user.transform("size")
    train = ordered[ordered.pos < (0.7 * ordered.n).astype(int)]
    rows, cols = user_ids[train.user.to_numpy()], item_ids[train.item.to_numpy()]
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)


def run_init(store: ResultStore, quick: bool) -> None:
    from recbole_ext.model.init.leporid import leporid_embedding
    from recbole_ext.quick_start import prepare_run

    if store.done("init"):
        return
    name = ensure_ml1m(None)
    run = prepare_run("BPR", name, preset=PRESET, config_dict=base_config(), with_trainer=False)
    dataset, train_data = run.dataset, run.train_data
    R = train_data._dataset.inter_matrix(form="csr")  # [users+1, items+1], training split only
    sides = {"user": R, "item": R.T.tocsr()}
    record: dict = {"threads": threads(), "train_interactions": int(R.nnz), "timing": {}, "angles": {}}

    ours = {}
    # wall seconds depend on the other jobs sharing the cores; process CPU seconds (all
    # threads summed) do not, and bound the wall time on idle cores from above
    record["load_average_before"] = os.getloadavg()
    for side, rows in sides.items():
        start, cpu = time.perf_counter(), time.process_time()
        ours[side] = leporid_embedding(rows, dim=64, topk=1000, lam=0.5)
        record["timing"][f"sparse_{side}_s"] = round(time.perf_counter() - start, 2)
        record["timing"][f"sparse_{side}_cpu_s"] = round(time.process_time() - cpu, 2)
        print(f"sparse {side}: {record['timing'][f'sparse_{side}_s']} s", flush=True)
    for kind in ("s", "cpu_s"):
        record["timing"][f"sparse_total_{kind}"] = round(record["timing"][f"sparse_user_{kind}"]
                                                         + record["timing"][f"sparse_item_{kind}"], 2)
    for side in (("item",) if quick else ("item", "user")):
        start, cpu = time.perf_counter(), time.process_time()
        dense = dense_leporid(sides[side])
        record["timing"][f"dense_{side}_s"] = round(time.perf_counter() - start, 2)
        record["timing"][f"dense_{side}_cpu_s"] = round(time.process_time() - cpu, 2)
        print(f"dense {side}: {record['timing'][f'dense_{side}_s']} s", flush=True)
        rows = np.flatnonzero(np.abs(ours[side]).sum(axis=1) > 0)
        record["angles"][f"sparse_vs_dense_{side}"] = angle_summary(principal_cosines(ours[side][rows],
                                                                                     dense[rows]))
    record["load_average_after"] = os.getloadavg()

    # official embeddings: map their ids to ours through the validation file
    ratings = pd.read_csv(DATASET_DIR / "ml-1m" / "ml-1m.inter", sep="\t")
    ratings.columns = ["user", "item", "r", "t"]
    users, items, record["split_check"] = official_id_maps(ratings)
    to_ours = {"user": np.zeros(ratings.user.max() + 1, dtype=np.int64),
               "item": np.zeros(ratings.item.max() + 1, dtype=np.int64)}
    for side, field in (("user", dataset.uid_field), ("item", dataset.iid_field)):
        tokens = np.unique(ratings[side].to_numpy())
        to_ours[side][tokens] = dataset.token2id(field, tokens.astype(str))
    official_split = official_train_matrix(ratings, to_ours["user"], to_ours["item"], R.shape)
    variants = {"preset split, LA": ours}
    variants["official split, LA"] = {"user": leporid_embedding(official_split, 64, 1000, 0.5),
                                      "item": leporid_embedding(official_split.T.tocsr(), 64, 1000, 0.5)}
    variants["official split, LM"] = {}
    for side, rows in (("user", official_split), ("item", official_split.T.tocsr())):
        variants["official split, LM"][side], values = lm_leporid(rows)
        record[f"lm_{side}_negative_eigenvalues"] = int((values < 0).sum())
    rng = np.random.default_rng(SEED)
    for side, mapping in (("user", users), ("item", items)):
        official = np.load(OFFICIAL / "emb" / "leporid0.5" / f"ml_1m_all_{side}64_k1000symjaccard_norm.npy")
        theirs = np.array(sorted(mapping))
        mine = to_ours[side][np.array([mapping[k] for k in theirs])]
        for variant, embeddings in variants.items():
            record["angles"][f"official_vs_{variant}_{side}"] = angle_summary(
                principal_cosines(official[theirs], embeddings[side][mine]))
        record["angles"][f"official_vs_random_{side}"] = angle_summary(
            principal_cosines(official[theirs], rng.standard_normal((len(theirs), 64))))
        record["angles"][f"preset_vs_official_split_ours_{side}"] = angle_summary(
            principal_cosines(ours[side][mine], variants["official split, LA"][side][mine]))
        record[f"official_{side}_rows_compared"] = len(theirs)
    store.add("init", record)


# --------------------------------------------------------------------------------- table
def tail_users(train_dataset, test_dataset, fraction: float = 0.25) -> np.ndarray:
    """The ``fraction`` of test users with the fewest training ratings (ties: lower id first)."""
    uid = train_dataset.uid_field
    counts = np.bincount(train_dataset.inter_feat[uid].numpy(), minlength=train_dataset.user_num)
    test_users = np.unique(test_dataset.inter_feat[uid].numpy())
    order = np.lexsort((test_users, counts[test_users]))
    return test_users[order[:int(np.ceil(fraction * len(test_users)))]]


def train_and_test(model: str, dataset: str, config_dict: dict) -> dict:
    """Train on the preset split, test on all test users and on the tail users."""
    import torch
    from recbole.data.dataloader import FullSortEvalDataLoader

    from recbole_ext.quick_start import prepare_run
    from recbole_ext.utils import to_plain

    run = prepare_run(model, dataset, preset=PRESET, config_dict=base_config(**config_dict))
    config, net, trainer = run.config, run.model, run.trainer
    train_data, valid_data, test_data = run.train_data, run.valid_data, run.test_data
    init_report = run.init_report or {"seconds": 0.0, "layers": {}}
    start = time.perf_counter()
    # one validation at the end (eval_step = epochs), so the final weights are the selected
    # ones and no checkpoint round trip is needed
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    fit_seconds = time.perf_counter() - start
    test_all = trainer.evaluate(test_data, load_best_model=False, show_progress=False)

    tail = tail_users(train_data._dataset, test_data._dataset)
    test_set = test_data._dataset
    keep = torch.as_tensor(np.isin(test_set.inter_feat[test_set.uid_field].numpy(), tail))
    tail_loader = FullSortEvalDataLoader(config, test_set.copy(test_set.inter_feat[keep]), test_data._sampler)
    test_tail = trainer.evaluate(tail_loader, load_best_model=False, show_progress=False)
    train_counts = np.bincount(train_data._dataset.inter_feat[test_set.uid_field].numpy(),
                               minlength=test_set.user_num)
    return {"model": model, "dataset": dataset, "embedding_init": config["embedding_init"],
            "embedding_init_freeze": config["embedding_init_freeze"],
            "embedding_init_std": config["embedding_init_std"], "epochs": config["epochs"],
            "batches_per_epoch": config["dlr2_batches_per_epoch"], "train_batch_size": config["train_batch_size"],
            "test": to_plain(test_all), "test_tail": to_plain(test_tail), "tail_users": int(len(tail)),
            "tail_max_train_ratings": int(train_counts[tail].max()),
            "test_users": int(len(np.unique(test_set.inter_feat[test_set.uid_field].numpy()))),
            "init_seconds": round(float(init_report["seconds"]), 2),
            "initialised_layers": init_report["layers"], "fit_seconds": round(fit_seconds, 1),
            "n_params": int(sum(p.numel() for p in net.parameters())),
            "trainable_params": int(sum(p.numel() for p in net.parameters() if p.requires_grad)),
            "threads": threads()}


def run_table(store: ResultStore, quick: bool) -> None:
    budget = BUDGET["quick" if quick else "full"]
    for key, model, init, extra in runs():
        if store.done(key):
            continue
        extra = dict(extra)
        official = extra.pop("official_budget", False)
        if official:
            users, extra = budget["users"], {**extra, **budget["dlr2_official"]}
        elif model == "DLR2" or extra.pop("dlr2_users", False):
            users = budget["dlr2_users"]
        else:
            users = budget["users"]
        epochs = extra.pop("epochs", budget["epochs"][model])
        # DLR2's random embeddings are trained (the official 'random' initialisation)
        config = {"embedding_init": init, "epochs": epochs, "eval_step": epochs, **extra}
        print(f"--> {key} on {ensure_ml1m(users)}, {epochs} epoch(s)", flush=True)
        record = train_and_test(model, ensure_ml1m(users), config)
        print(f"<-- {key}: {record['test']} tail {record['test_tail']} ({record['fit_seconds']} s)", flush=True)
        store.add(key, record)


# ---------------------------------------------------------------------------------- fig2
def run_fig2(store: ResultStore, quick: bool) -> None:
    from benchmarks import leporid_fig2

    if store.done("fig2"):
        return
    payload = leporid_fig2.main(["--quick"] if quick else [], png=store.file("png"))
    store.add("fig2", {"settings": payload["settings"], "seconds": payload["seconds"],
                       "summary": payload["summary"], "png": store.file("png").name})


# -------------------------------------------------------------------------------- report
def write_report(quick: bool) -> None:
    stores = {part: ResultStore("leporid", part, quick=quick) for part in PARTS}
    out = ResultStore("leporid", "report", quick=quick, resume=False)
    metrics = ["hit@1", "hit@10", "precision@10", "recall@10", "ndcg@10"]
    header = ["run", "data", "epochs"] + metrics + [f"tail {m}" for m in ("hit@10", "recall@10", "ndcg@10")]
    rows = []
    for key, _, _, _ in runs():
        rec = stores["table"].records.get(key)
        if rec is None:
            continue
        epochs = rec["epochs"]
        if rec.get("batches_per_epoch"):
            epochs = f"{epochs} x {rec['batches_per_epoch']} batches of {rec['train_batch_size']}"
        rows.append([key, rec["dataset"], epochs] + [rec["test"].get(m) for m in metrics]
                    + [rec["test_tail"].get(m) for m in ("hit@10", "recall@10", "ndcg@10")])
    notes = [f"Command: `OMP_NUM_THREADS=1 python -m benchmarks leporid{' --quick' if quick else ''}`. "
             f"Budget: {BUDGET['quick' if quick else 'full']} (see the suite docstring). Single runs, seed {SEED}."]
    sizes = {rec["dataset"]: rec for rec in stores["table"].records.values()}
    if sizes:
        notes.append("Tail = the 25% of test users with the fewest training ratings: " + "; ".join(
            f"{rec['tail_users']} of {rec['test_users']} users on {name}, at most "
            f"{rec['tail_max_train_ratings']} training ratings" for name, rec in sorted(sizes.items())) + ".")
    init = stores["init"].records.get("init")
    if init:
        t = init["timing"]
        notes.append(f"Init ({init['threads']}, load average {init['load_average_before'][0]:.1f} before, "
                     f"{init['load_average_after'][0]:.1f} after): sparse LEPORID users {t['sparse_user_s']} s "
                     f"wall / {t['sparse_user_cpu_s']} s CPU + items {t['sparse_item_s']} / "
                     f"{t['sparse_item_cpu_s']} = {t['sparse_total_s']} s wall / {t['sparse_total_cpu_s']} s CPU; "
                     f"dense reference items {t.get('dense_item_s')} s wall / {t.get('dense_item_cpu_s')} s CPU, "
                     f"users {t.get('dense_user_s', 'not run')} / {t.get('dense_user_cpu_s', '-')}.")
        notes.append("Principal angles (cosines; 1 = same direction) against the official ML-1M LEPORID "
                     "embeddings, and sparse vs dense:\n\n| comparison | mean cos | median | min | >0.99 | >0.9 |"
                     "\n|---|---|---|---|---|---|\n" + "\n".join(
                         f"| {name} | {a['mean_cos']:.3f} | {a['median_cos']:.3f} | {a['min_cos']:.3f} | "
                         f"{a['n_cos_above_0.99']}/{a['n_dims']} | {a['n_cos_above_0.9']}/{a['n_dims']} |"
                         for name, a in init["angles"].items()))
        notes.append(f"Split check of the preset against the official validation file: {init['split_check']}.")
    # the official 50 x 30 simulation may not have run; then the quick one is reported, labelled by its size
    fig2 = stores["fig2"].records.get("fig2") or ResultStore("leporid", "fig2", quick=True).records.get("fig2")
    if fig2:
        s = fig2["summary"]
        notes.append(f"Fig. 2 ({fig2['settings']['graphs']} BA graphs x {fig2['settings']['repeats']} extra edges, "
                     f"![]({fig2['png']})): mean embedding change of the lowest-degree quartile / highest-degree "
                     f"quartile: LE {s['le']['mean_change_low_degree_quartile']:.3f} / "
                     f"{s['le']['mean_change_high_degree_quartile']:.3f}, LEPORID "
                     f"{s['leporid']['mean_change_low_degree_quartile']:.3f} / "
                     f"{s['leporid']['mean_change_high_degree_quartile']:.3f}.")
    out.write_markdown("LEPORID initialisation and DLR2 on ML-1M (issue 5)", header, rows, "\n\n".join(notes))


def main(args) -> None:
    runners = {"fig2": run_fig2, "init": run_init, "table": run_table}
    for part in PARTS:
        if not args.only or part in args.only:
            runners[part](ResultStore("leporid", part, quick=args.quick, resume=args.resume), args.quick)
    write_report(args.quick)

