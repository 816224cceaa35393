"""Recommendations from checkpoints: every model family, external ids, seen items, the CLI.

Each family trains one tiny checkpoint through the normal pipeline; the recommendations are
then checked against an independent computation: RecBole's own case-study scoring
(``full_sort_scores`` on the validation loader, whose history is the training split) where
it applies, otherwise the model's ``full_sort_predict`` / ``predict`` on inputs built here
from the atomic files.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO_ROOT, base_config, write_tiny_dataset
from contract_settings import MODEL_OVERRIDES
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.data.interaction import Interaction
from recbole.utils import init_seed
from recbole.utils.case_study import full_sort_scores

from recbole_ext import load_data_and_model, run_recbole_ext
from recbole_ext import recommend as rec
from recbole_ext.recommend import CACHE_SUFFIX, Recommender, RecommendError, recommend, score_pairs
from recbole_ext.recommend import recommender as recommender_module

SCRIPT = str(REPO_ROOT / "run_recbole_ext.py")
RANKING = {"metrics": ["Recall", "NDCG"], "topk": [5], "valid_metric": "NDCG@5"}
SEQUENTIAL = {"load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "train_neg_sample_args": None,
              "MAX_ITEM_LIST_LENGTH": 6, **RANKING}
USER_FILE = {"inter": ["user_id", "item_id", "timestamp"], "user": ["user_id", "age"]}
CONTEXT = {"load_col": {"inter": ["user_id", "item_id", "label"], "user": ["user_id", "age", "gender"],
                        "item": ["item_id", "genre"]},
           "train_neg_sample_args": None, "metrics": ["AUC"], "valid_metric": "AUC", "embedding_size": 8,
           "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": None, "mode": "labeled"}}
COLD_USER = "41"  # only in the .user file: a known user without any interaction

FAMILIES = {
    "BPR": {**RANKING, "load_col": USER_FILE},                       # RecBole general
    "LightGCN": {**RANKING, "embedding_size": 8, "n_layers": 1},      # RecBole graph model
    "NeuMF": {**RANKING, "mf_embedding_size": 8, "mlp_embedding_size": 8,
              "mlp_hidden_size": [8]},                                 # RecBole, predict only
    "LEGCF": {**RANKING, **MODEL_OVERRIDES["LEGCF"]},                 # ours, general
    "GRU4Rec": {**SEQUENTIAL, "load_col": USER_FILE, "embedding_size": 8, "hidden_size": 8},
    "KNI": dict(MODEL_OVERRIDES["KNI"]),                              # ours, knowledge, pointwise
    "NRP": dict(MODEL_OVERRIDES["NRP"]),                              # ours, explicit ratings
    "BiasedMF": dict(MODEL_OVERRIDES["BiasedMF"]),
    "FM": dict(CONTEXT),                                              # RecBole context-aware
    # a context model that reads an interaction-only field: cannot rank unseen items
    "FM-timestamp": dict(CONTEXT, model="FM", numerical_features=["timestamp"],
                         load_col=dict(CONTEXT["load_col"], inter=["user_id", "item_id", "label", "timestamp"])),
}
DEVOOGHT_TRAIN = {f"u{u}": [f"i{(u * 3 + k) % 12 + 1}" for k in range(7)] for u in range(1, 9)}
DEVOOGHT_VALID = {"v1": ["i1", "i2", "i3", "i4"]}
DEVOOGHT_TEST = {"t1": ["i5", "i6", "i7", "i8", "i9"], "t2": ["i9"]}


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """The tiny dataset plus a user who is only in the ``.user`` file, and a Devooght split."""
    root = write_tiny_dataset(tmp_path_factory.mktemp("rec_data"))
    with open(root / "tiny" / "tiny.user", "a") as users:
        users.write(f"{COLD_USER}\t25\tF\tartist\t10001\n")
    folder = root / "dev"
    folder.mkdir()
    for part, split in (("train", DEVOOGHT_TRAIN), ("valid", DEVOOGHT_VALID), ("test", DEVOOGHT_TEST)):
        lines = ["user_id:token\titem_id:token\ttimestamp:float"]
        for user, items in split.items():
            lines += [f"{user}\t{item}\t{1000 + step}" for step, item in enumerate(items)]
        (folder / f"dev.{part}.inter").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def checkpoints(data_root, tmp_path_factory) -> dict[str, str]:
    """One trained checkpoint per model family (trained lazily, once per module)."""
    work = tmp_path_factory.mktemp("rec_runs")
    trained: dict[str, str] = {}

    class Lazy(dict):
        def __missing__(self, name: str) -> str:
            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(work)  # RecBole writes ./log
                if name == "RNNCCE":
                    config = base_config(work, str(data_root), model="RNNCCE", dataset="dev",
                                         devooght_protocol=True, benchmark_filename=["train", "valid", "test"],
                                         load_col={"inter": ["user_id", "item_id", "timestamp"]},
                                         eval_args={"order": "TO", "mode": "full"}, MAX_ITEM_LIST_LENGTH=3,
                                         metrics=["Recall"], topk=[3], valid_metric="recall@3",
                                         embedding_size=6, hidden_size=6, train_batch_size=8)
                else:
                    config = base_config(work, str(data_root), **{"model": name, **FAMILIES[name]})
                result = run_recbole_ext(config_dict=config)
            self[name] = result["checkpoint"]
            return self[name]

    return Lazy(trained)


def reload(checkpoint: str):
    """``(config, model, dataset, train, valid, test)`` through the pipeline's own reload."""
    config, model, *rest = load_data_and_model(checkpoint)
    return (config, model.eval(), *rest)


# ---------------------------------------------------------------------------------- references
def tokens_of(dataset, field: str, ids) -> list[str]:
    return [str(t) for t in dataset.id2token(field, np.asarray(ids))]


def model_scores(model, dataset, interaction: Interaction) -> torch.Tensor:
    """``[B, n_items]``: full_sort_predict, or predict on every item as RecBole's case study does."""
    n_users = len(interaction)
    with torch.no_grad():
        try:
            return model.full_sort_predict(interaction).view(n_users, -1).clone()
        except NotImplementedError:
            pairs = interaction.repeat_interleave(dataset.item_num)
            pairs.update(dataset.get_item_feature().repeat(n_users))
            return model.predict(pairs).view(n_users, -1)


def top_items(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    values, items = torch.topk(scores, k, dim=1)
    return values.numpy(), items.numpy()


def assert_matches(frame: pd.DataFrame, users: list[str], dataset, scores: torch.Tensor, k: int) -> None:
    """``frame`` (ours) ranks each user's items exactly by ``scores`` (reference, masked).

    Compared by score so that exact ties may come in either order: the reported score of each
    recommended item is the reference score of that item, and the k best reference scores are
    the reported ones, in order.
    """
    values, items = top_items(scores, k)
    item_index = {t: i for i, t in enumerate(tokens_of(dataset, dataset.iid_field, range(dataset.item_num)))}
    assert frame["user_id"].drop_duplicates().tolist() == users
    for row, user in enumerate(users):
        ours = frame[frame["user_id"] == user]
        assert ours["rank"].tolist() == list(range(1, k + 1))
        np.testing.assert_allclose(ours["score"].to_numpy(), values[row], rtol=1e-5, atol=1e-6)
        own = scores[row, [item_index[t] for t in ours["item_id"]]].numpy()
        np.testing.assert_allclose(ours["score"].to_numpy(), own, rtol=1e-5, atol=1e-6)
        exact = np.unique(values[row]).size == k
        if exact:
            assert ours["item_id"].tolist() == tokens_of(dataset, dataset.iid_field, items[row])


def training_items(train_dataset, uid: int, positives_only: bool = False) -> set[int]:
    feat = train_dataset.inter_feat
    rows = feat[train_dataset.uid_field].numpy() == uid
    if positives_only:
        rows &= feat["label"].numpy() > 0.5
    return set(feat[train_dataset.iid_field].numpy()[rows].tolist())


def atomic_history(data_root: Path, name: str, user: str) -> list[str]:
    """A user's items in time order (ties in file order), read straight from the atomic files."""
    frames = [pd.read_csv(f, sep="\t", dtype=str) for f in sorted((data_root / name).glob(f"{name}*.inter"))]
    frame = pd.concat(frames, ignore_index=True)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    mine = frame[frame["user_id"] == user]
    mine = mine.iloc[np.argsort(mine["timestamp"].astype(float).to_numpy(), kind="stable")]
    return mine["item_id"].tolist()


# ---------------------------------------------------------------------------------- general
@pytest.mark.parametrize("name", ["BPR", "LightGCN", "NeuMF", "LEGCF", "NRP", "BiasedMF", "FM"])
def test_general_and_rating_models_match_recbole_case_study(name, checkpoints):
    config, model, dataset, train, valid, _ = reload(checkpoints[name])
    users = ["3", "17", "1", "40"]
    k = 5
    frame = recommend(checkpoints[name], users, topk=k)
    assert list(frame.columns) == rec.COLUMNS and not frame["cold_start"].any()
    uids = dataset.token2id(dataset.uid_field, users)
    if isinstance(valid, FullSortEvalDataLoader):
        # RecBole's own case study on the validation loader: its history is the training split
        scores = full_sort_scores(uids, model, valid)
    else:
        interaction = dataset.join(Interaction({dataset.uid_field: torch.as_tensor(uids)}))
        scores = model_scores(model, dataset, interaction)
        scores[:, 0] = -np.inf
        for row, uid in enumerate(uids):
            scores[row, list(training_items(train._dataset, uid))] = -np.inf
    assert_matches(frame, users, dataset, scores, k)
    # seen items: never recommended, and the frame's ids are the atomic files' tokens
    item_tokens = set(pd.read_csv(Path(config["data_path"]) / "tiny.inter", sep="\t", dtype=str)
                      .iloc[:, 1])
    assert set(frame["item_id"]) <= item_tokens
    for user, uid in zip(users, uids):
        seen = set(tokens_of(dataset, dataset.iid_field, list(training_items(train._dataset, uid))))
        assert not seen & set(frame.loc[frame["user_id"] == user, "item_id"])


def test_include_seen_ranks_every_item_by_the_model(checkpoints):
    config, model, dataset, *_ = reload(checkpoints["BPR"])
    users = ["5", "6"]
    k = 50
    frame = recommend(checkpoints["BPR"], users, topk=k, include_seen=True)
    uids = dataset.token2id(dataset.uid_field, users)
    scores = model_scores(model, dataset, Interaction({dataset.uid_field: torch.as_tensor(uids)}))
    scores[:, 0] = -np.inf
    assert_matches(frame, users, dataset, scores, k)


def test_exclude_known_also_leaves_out_validation_and_test_items(checkpoints, data_root):
    _, _, dataset, *_ = reload(checkpoints["BPR"])
    n_items = dataset.item_num - 1
    frame = recommend(checkpoints["BPR"], ["7"], topk=n_items, exclude_known=True)
    history = set(atomic_history(data_root, "tiny", "7"))
    assert not history & set(frame["item_id"])
    assert len(frame) == n_items - len(history)


def test_user_without_history_gets_popular_items_flagged(checkpoints, data_root):
    frame = recommend(checkpoints["BPR"], [COLD_USER, "1"], topk=5)
    cold = frame[frame["user_id"] == COLD_USER]
    assert cold["cold_start"].all() and not frame.loc[frame["user_id"] == "1", "cold_start"].any()
    _, _, _, train, _, _ = reload(checkpoints["BPR"])
    counts = np.bincount(train._dataset.inter_feat["item_id"].numpy(), minlength=train._dataset.item_num)
    assert cold["score"].tolist() == sorted(counts[1:], reverse=True)[:5]


def test_all_users_covers_every_known_user(checkpoints):
    frame = recommend(checkpoints["BPR"], topk=2)
    assert frame["user_id"].nunique() == 41 and len(frame) == 82
    assert frame.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2]).all()


def test_a_model_that_cannot_rank_says_so_in_one_line(checkpoints):
    with pytest.raises(RecommendError, match=r"^FM cannot score unseen \(user, item\) pairs: its predict "
                                             r"reads the field 'timestamp'") as info:
        recommend(checkpoints["FM-timestamp"], ["1"])
    assert "\n" not in str(info.value)


def test_unknown_user_error_names_the_id_and_close_ids(checkpoints):
    with pytest.raises(RecommendError, match=r"unknown user id '400'.*close ids: .*40"):
        recommend(checkpoints["BPR"], ["1", "400"])


# ---------------------------------------------------------------------------------- sequential
@pytest.mark.parametrize("name, dataset_name, users", [
    ("GRU4Rec", "tiny", ["2", "9", "33"]),
    ("RNNCCE", "dev", ["u1", "v1", "t1", "t2"]),  # Devooght: training, validation, test users
])
def test_sequential_models_read_the_whole_known_history(name, dataset_name, users, checkpoints, data_root):
    config, model, dataset, *_ = reload(checkpoints[name])
    max_len = config["MAX_ITEM_LIST_LENGTH"]
    k = 3
    frame = recommend(checkpoints[name], users, topk=k)
    histories = [atomic_history(data_root, dataset_name, user) for user in users]
    seq = torch.zeros(len(users), max_len, dtype=torch.long)
    for row, history in enumerate(histories):
        window = dataset.token2id(dataset.iid_field, history[-max_len:])
        seq[row, :len(window)] = torch.as_tensor(window)
    lengths = torch.as_tensor([min(len(h), max_len) for h in histories])
    interaction = Interaction({dataset.uid_field: torch.as_tensor(dataset.token2id(dataset.uid_field, users)),
                               model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: lengths})
    scores = model_scores(model, dataset, interaction)
    scores[:, 0] = -np.inf
    for row, history in enumerate(histories):
        scores[row, dataset.token2id(dataset.iid_field, history)] = -np.inf  # seen: the whole history
    assert_matches(frame, users, dataset, scores, k)
    for user, history in zip(users, histories):
        assert not set(history) & set(frame.loc[frame["user_id"] == user, "item_id"])


def test_sequential_user_without_history_is_cold(checkpoints):
    frame = recommend(checkpoints["GRU4Rec"], [COLD_USER], topk=3)
    assert len(frame) == 3 and frame["cold_start"].all()


# ---------------------------------------------------------------------------------- knowledge
def test_kni_scores_every_item_and_leaves_out_positive_training_rows(checkpoints):
    config, model, dataset, train, *_ = reload(checkpoints["KNI"])
    k = 5
    recommender = Recommender.from_checkpoint(checkpoints["KNI"])
    warm = [u for u in map(str, range(1, 41))
            if training_items(train._dataset, dataset.token2id("user_id", u), positives_only=True)]
    users = warm[:6]
    frame = recommender.recommend(users, topk=k)
    uids = dataset.token2id(dataset.uid_field, users)
    init_seed(config["seed"], config["reproducibility"])  # KNI averages random samplings
    scores = model_scores(model, dataset, Interaction({dataset.uid_field: torch.as_tensor(uids)}))
    scores[:, 0] = -np.inf
    for row, uid in enumerate(uids):
        # a pre-sampled negative (label 0) is not an interaction: it stays a candidate
        scores[row, list(training_items(train._dataset, uid, positives_only=True))] = -np.inf
    assert_matches(frame, users, dataset, scores, k)
    # the same call again gives the same scores (seeded)
    pd.testing.assert_frame_equal(frame, recommender.recommend(users, topk=k))


def test_kni_cold_users_are_those_without_a_positive_training_row(checkpoints):
    _, _, dataset, train, *_ = reload(checkpoints["KNI"])
    frame = recommend(checkpoints["KNI"], topk=2)
    cold = set(frame.loc[frame["cold_start"], "user_id"])
    expected = {u for u in map(str, range(1, 41))
                if not training_items(train._dataset, dataset.token2id("user_id", u), positives_only=True)}
    assert cold == expected


# ---------------------------------------------------------------------------------- pairs
@pytest.mark.parametrize("name", ["NRP", "BiasedMF", "KNI", "BPR"])
def test_pair_scores_are_the_models_predict(name, checkpoints):
    config, model, dataset, train, *_ = reload(checkpoints[name])
    pairs = pd.DataFrame({"user_id": ["1", "2", "2", "30"], "item_id": ["5", "1", "7", "12"]})
    out = score_pairs(checkpoints[name], pairs)
    assert out[["user_id", "item_id"]].equals(pairs)
    uids = torch.as_tensor(dataset.token2id("user_id", pairs["user_id"].tolist()))
    iids = torch.as_tensor(dataset.token2id("item_id", pairs["item_id"].tolist()))
    init_seed(config["seed"], config["reproducibility"])
    distinct, inverse = torch.unique(uids, return_inverse=True)
    interaction = dataset.join(Interaction({"user_id": distinct}))[inverse]
    interaction.update(Interaction({"item_id": iids}))
    with torch.no_grad():
        expected = model.predict(dataset.join(interaction)).numpy()
    np.testing.assert_allclose(out["score"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    seen = [int(i) in training_items(train._dataset, int(u), positives_only=name == "KNI")
            for u, i in zip(uids, iids)]
    assert out["seen"].tolist() == seen
    if name in ("NRP", "BiasedMF"):  # predicted ratings on the 1-5 scale, roughly
        assert out["score"].between(-1, 7).all()


def test_sequential_pair_scores_use_the_known_history(checkpoints, data_root):
    _, model, dataset, *_ = reload(checkpoints["GRU4Rec"])
    pairs = pd.DataFrame({"user_id": ["2", COLD_USER], "item_id": ["4", "4"]})
    out = score_pairs(checkpoints["GRU4Rec"], pairs)
    full = recommend(checkpoints["GRU4Rec"], ["2"], topk=59, include_seen=True)
    assert out["score"][0] == pytest.approx(full.set_index("item_id").loc["4", "score"], rel=1e-5)
    assert np.isnan(out["score"][1]) and out["cold_start"].tolist() == [False, True]


# ---------------------------------------------------------------------------------- cache
def test_cache_is_written_used_and_invalidated(checkpoints, data_root, monkeypatch):
    checkpoint = checkpoints["LightGCN"]
    cache = Path(checkpoint + CACHE_SUFFIX)
    cache.unlink(missing_ok=True)
    fresh = recommend(checkpoint, ["1", "2"], topk=4, cache=False)
    assert not cache.exists()
    first = recommend(checkpoint, ["1", "2"], topk=4)
    assert cache.is_file()

    def no_reload(config):
        raise AssertionError("the dataset was rebuilt although the cache is valid")

    with monkeypatch.context() as patch:
        patch.setattr(recommender_module, "create_dataset", no_reload)
        cached = recommend(checkpoint, ["1", "2"], topk=4)
    pd.testing.assert_frame_equal(first, fresh)
    pd.testing.assert_frame_equal(cached, fresh)
    # a changed dataset file or a corrupt cache makes it rebuild
    inter = data_root / "tiny" / "tiny.inter"
    inter.touch()
    rebuilt = []
    original = recommender_module.create_dataset
    with monkeypatch.context() as patch:
        patch.setattr(recommender_module, "create_dataset", lambda config: rebuilt.append(1) or original(config))
        recommend(checkpoint, ["1"], topk=2)
        cache.write_bytes(b"not a cache")
        recommend(checkpoint, ["1"], topk=2)
    assert len(rebuilt) == 2


@pytest.mark.parametrize("name", ["GRU4Rec", "KNI", "RNNCCE", "NRP"])
def test_cached_state_gives_the_same_recommendations(name, checkpoints):
    checkpoint = checkpoints[name]
    Path(checkpoint + CACHE_SUFFIX).unlink(missing_ok=True)
    fresh = recommend(checkpoint, topk=3, cache=False)
    recommend(checkpoint, topk=3)  # writes the cache
    assert Path(checkpoint + CACHE_SUFFIX).is_file()
    pd.testing.assert_frame_equal(recommend(checkpoint, topk=3), fresh)


# ---------------------------------------------------------------------------------- CLI
def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=300)


def test_cli_writes_csv_and_jsonl_atomically(checkpoints, tmp_path):
    checkpoint = checkpoints["BPR"]
    out = tmp_path / "out" / "recs.csv"
    proc = run_cli("--recommend", checkpoint, "--users", "1", "2", "--topk", "3", "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    frame = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    expected = recommend(checkpoint, ["1", "2"], topk=3)
    pd.testing.assert_frame_equal(frame, expected, check_exact=False)
    assert sorted(p.name for p in out.parent.iterdir()) == ["recs.csv"]  # no temp file left

    jsonl = tmp_path / "recs.jsonl"
    jsonl.write_text("stale\n")
    proc = run_cli("--recommend", checkpoint, "--users-file", str(write(tmp_path / "u.txt", "user_id\n1\n\n2\n")),
                   "--output", str(jsonl), "--topk", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [(r["user_id"], r["rank"]) for r in rows] == [("1", 1), ("1", 2), ("2", 1), ("2", 2)]
    assert set(rows[0]) == set(rec.COLUMNS)


def test_cli_all_users_to_stdout_and_pairs(checkpoints, tmp_path):
    checkpoint = checkpoints["BiasedMF"]
    proc = run_cli("--recommend", checkpoint, "--all-users", "--topk", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == ",".join(rec.COLUMNS) and len(lines) == 1 + 41  # users of the .user file
    pairs = write(tmp_path / "pairs.tsv", "user_id:token\titem_id:token\n1\t5\n2\t7\n")
    out = tmp_path / "scores.csv"
    proc = run_cli("--recommend", checkpoint, "--pairs", str(pairs), "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    frame = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    expected = score_pairs(checkpoint, pd.DataFrame({"user_id": ["1", "2"], "item_id": ["5", "7"]}))
    pd.testing.assert_frame_equal(frame, expected, check_exact=False)


def test_cli_errors_are_one_line_with_exit_code_2(checkpoints, tmp_path):
    for args, message in ((["--users", "1", "999"], "error: unknown user id '999'"),
                          ([str(tmp_path / "none.pth"), "--users", "1"],
                           f"error: checkpoint not found: {tmp_path / 'none.pth'}")):
        if not args[0].endswith(".pth"):
            args = [checkpoints["BPR"], *args]
        proc = run_cli("--recommend", *args)
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), proc.stderr


@pytest.mark.parametrize("args, error, message", [
    (["--users", "1", "--topk", "0"], RecommendError, "--topk must be a positive int"),
    (["--users", "1", "--output", "recs.txt"], RecommendError, "--output recs.txt: the file name must end in"),
    ([], RecommendError, "--recommend needs --users"),
    (["--pairs", "missing.csv"], FileNotFoundError, "file not found: missing.csv"),
    (["--pairs", "bad.csv"], RecommendError, "bad.csv:1: the header must name user_id and item_id"),
])
def test_cli_usage_errors(args, error, message, checkpoints, tmp_path):
    """Raised before anything loads; the script prints them in one line with exit code 2
    (the exception types are in its list of expected errors)."""
    (tmp_path / "bad.csv").write_text("user,item\n1,2\n")  # the tests run in tmp_path
    from recbole_ext import cli as script

    args, unknown = script.build_parser().parse_known_args(["--recommend", checkpoints["BPR"], *args])
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        rec.recommend_main(args, script.parse_overrides(unknown))
    assert issubclass(error, script._expected_errors())


def test_topk_stays_a_config_key_for_training_runs():
    from recbole_ext.cli import build_parser

    args, _ = build_parser().parse_known_args(["--model", "BPR", "--topk=[5, 10]"])
    assert args.topk == "[5, 10]" and not args.recommend


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
