"""Devooght's user-disjoint protocol: split files, half-sequence evaluation rows, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import base_config

from recbole_ext import Config, run_recbole_ext
from recbole_ext.data import create_dataset, data_preparation

HEADER = "user_id:token\titem_id:token\ttimestamp:float"
# Train users u1..u6 see items i1..i9; validation user v1 and test users t1, t2 hold out
# their whole sequence. Timestamps are deliberately not in file order for t1.
TRAIN = {f"u{u}": [f"i{(u + k) % 9 + 1}" for k in range(6)] for u in range(1, 7)}
VALID = {"v1": ["i1", "i2", "i3", "i4"]}
TEST = {"t1": ["i5", "i6", "i7", "i8", "i9"], "t2": ["i2", "i4", "i6", "i8", "i1", "i3", "i5"],
        "t3": ["i9"]}  # t3 cannot be split in half: dropped


def write_split(root: Path, name: str, parts: dict[str, dict[str, list[str]]]) -> str:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for part, users in parts.items():
        lines = [HEADER]
        for user, items in users.items():
            rows = [f"{user}\t{item}\t{1000 + step}" for step, item in enumerate(items)]
            lines += rows[::-1] if user == "t1" else rows
        (folder / f"{name}.{part}.inter").write_text("\n".join(lines) + "\n")
    return str(root)


def devooght_config(tmp_path: Path, data_path: str, name: str = "dev", **extra) -> dict:
    config = {"model": "RNNCCE", "dataset": name, "data_path": data_path,
              "devooght_protocol": True, "benchmark_filename": ["train", "valid", "test"],
              "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
              "eval_args": {"order": "TO", "mode": "full"}, "MAX_ITEM_LIST_LENGTH": 2,
              "metrics": ["Sps", "Recall", "Precision", "NDCG", "User_Coverage",
                          "Item_Coverage", "Blockbuster_Share"],
              "topk": [3], "valid_metric": "sps@3", "epochs": 1, "train_batch_size": 8,
              "eval_batch_size": 16, "embedding_size": 6, "hidden_size": 6,
              "checkpoint_dir": str(tmp_path / "saved"), "state": "ERROR",
              "show_progress": False, "use_gpu": False, "seed": 2020, "reproducibility": True}
    config.update(extra)
    return config


def loaders(tmp_path, **extra):
    data_path = write_split(tmp_path, "dev", {"train": TRAIN, "valid": VALID, "test": TEST})
    config = Config(config_dict=devooght_config(tmp_path, data_path, **extra))
    dataset = create_dataset(config)
    return dataset, data_preparation(config, dataset)


def tokens(dataset, field, ids) -> list[str]:
    return [str(t) for t in dataset.id2token(field, np.asarray(ids))]


def test_splits_are_user_disjoint_and_cover_every_user(tmp_path):
    dataset, (train, valid, test) = loaders(tmp_path)
    user_sets = [set(tokens(dataset, "user_id", d.dataset.inter_feat["user_id"].numpy()))
                 for d in (train, valid, test)]
    assert user_sets == [set(TRAIN), set(VALID), {"t1", "t2"}]
    # training is RecBole's prefix augmentation: n - 1 rows per training user
    assert len(train.dataset) == sum(len(s) - 1 for s in TRAIN.values())


def test_evaluation_rows_feed_the_first_half_and_score_the_second(tmp_path):
    dataset, (_, _, test) = loaders(tmp_path)
    split = test.dataset
    feat = split.inter_feat
    rows = {tokens(dataset, "user_id", [u])[0]: r for r, u in enumerate(feat["user_id"].tolist())}
    # t1 (5 items): viewed i5 i6, goal i7 i8 i9 (file order was reversed; time order rules)
    r = rows["t1"]
    assert feat["item_length"][r].item() == 2
    assert tokens(dataset, "item_id", feat["item_id_list"][r][:2]) == ["i5", "i6"]
    assert tokens(dataset, "item_id", split.goal_items[r]) == ["i7", "i8", "i9"]
    assert tokens(dataset, "item_id", [feat["item_id"][r]]) == ["i7"]
    assert feat["label"][r].item() == feat["item_id"][r].item()
    # t2 (7 items): viewed i2 i4 i6 -> input is the last MAX_ITEM_LIST_LENGTH=2 of them
    r = rows["t2"]
    assert tokens(dataset, "item_id", feat["item_id_list"][r][:2]) == ["i4", "i6"]
    assert tokens(dataset, "item_id", split.viewed_items[r]) == ["i2", "i4", "i6"]
    assert tokens(dataset, "item_id", split.goal_items[r]) == ["i8", "i1", "i3", "i5"]

    interaction, history, positive_u, positive_i = test.collate_fn([rows["t2"]])
    assert history is None
    assert positive_u.tolist() == [0, 0, 0, 0]
    assert tokens(dataset, "item_id", positive_i) == ["i8", "i1", "i3", "i5"]


def test_exclude_viewed_masks_the_whole_first_half(tmp_path):
    dataset, (_, _, test) = loaders(tmp_path, exclude_viewed=True)
    row = tokens(dataset, "user_id", test.dataset.inter_feat["user_id"]).index("t2")
    _, (history_u, history_i), _, _ = test.collate_fn([row])
    assert history_u.tolist() == [0, 0, 0]
    assert tokens(dataset, "item_id", history_i) == ["i2", "i4", "i6"]


def test_training_popularity_counts_every_training_interaction(tmp_path):
    dataset, (train, _, _) = loaders(tmp_path)
    popularity = train.dataset.item_counter
    expected = {}
    for items in TRAIN.values():
        for item in items:
            expected[item] = expected.get(item, 0) + 1
    got = {tokens(dataset, "item_id", [i])[0]: c for i, c in popularity.items()}
    assert got == expected
    assert popularity.num_items == dataset.item_num


def test_a_user_in_two_splits_is_rejected(tmp_path):
    data_path = write_split(tmp_path, "dev", {"train": TRAIN, "valid": VALID,
                                              "test": {"u1": ["i1", "i2"], **TEST}})
    config = Config(config_dict=devooght_config(tmp_path, data_path))
    dataset = create_dataset(config)
    with pytest.raises(ValueError, match=r"1 users \(e.g. 'u1'\) are in both 'train' and 'test'"):
        data_preparation(config, dataset)


def test_devooght_protocol_needs_three_split_files(tmp_path):
    data_path = write_split(tmp_path, "dev", {"train": TRAIN, "valid": VALID, "test": TEST})
    config = Config(config_dict=devooght_config(tmp_path, data_path,
                                                benchmark_filename=["train", "test"]))
    with pytest.raises(ValueError, match="benchmark_filename"):
        create_dataset(config)


@pytest.mark.parametrize("output", ["untied", "tied"])
def test_end_to_end_run_reports_every_devooght_metric(tmp_path, output):
    data_path = write_split(tmp_path, "dev", {"train": TRAIN, "valid": VALID, "test": TEST})
    config = devooght_config(tmp_path, data_path, output=output,
                             tying_loss="kl" if output == "tied" else "none")
    result = run_recbole_ext(config_dict=config)
    test = result["test_result"]
    assert set(test) == {"sps@3", "recall@3", "precision@3", "ndcg@3", "user_coverage@3",
                         "item_coverage@3", "blockbuster_share@3"}
    assert all(np.isfinite(v) for v in test.values())
    # two test users: sps and user_coverage are multiples of 1/2, item coverage an integer
    assert test["sps@3"] in (0.0, 0.5, 1.0) and test["user_coverage@3"] in (0.0, 0.5, 1.0)
    assert test["item_coverage@3"] == int(test["item_coverage@3"])
    assert torch.isfinite(torch.tensor(result["best_valid_score"]))


def test_a_recbole_sequential_model_uses_the_same_split_when_the_protocol_is_on(tmp_path):
    # GRU4Rec has no plugin dataset; devooght_protocol alone routes it to the Devooght split.
    data_path = write_split(tmp_path, "dev", {"train": TRAIN, "valid": VALID, "test": TEST})
    config = devooght_config(tmp_path, data_path, model="GRU4Rec", embedding_size=6,
                             hidden_size=6, loss_type="CE", train_neg_sample_args=None)
    dataset = create_dataset(Config(config_dict=config))
    assert type(dataset).__name__ == "DevooghtDataset"
    test = run_recbole_ext(config_dict=config)["test_result"]
    assert set(test) == {"sps@3", "recall@3", "precision@3", "ndcg@3", "user_coverage@3",
                         "item_coverage@3", "blockbuster_share@3"}


def test_recbole_leave_one_out_protocol_trains_rnncce_and_gru4rec_on_the_same_rows(
        tmp_path, tiny_dataset):
    # RecBole's sequential benchmark protocol: prefix augmentation, last item = test target.
    data_path, name = tiny_dataset
    loo = {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
           "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
           "train_neg_sample_args": None, "metrics": ["Recall", "MRR", "NDCG", "Hit"],
           "topk": [5], "valid_metric": "MRR@5", "MAX_ITEM_LIST_LENGTH": 10}
    sizes, results = {}, {}
    for model, extra in (("RNNCCE", {"embedding_size": 8, "hidden_size": 8}),
                         ("GRU4Rec", {"embedding_size": 8, "hidden_size": 8, "loss_type": "CE"})):
        config = Config(config_dict=base_config(tmp_path, data_path, model=model, dataset=name,
                                                **loo, **extra))
        train, valid, test = data_preparation(config, create_dataset(config))
        sizes[model] = (len(train.dataset), len(valid.dataset), len(test.dataset))
        results[model] = run_recbole_ext(config_dict=base_config(
            tmp_path, data_path, model=model, dataset=name, **loo, **extra))["test_result"]
    assert sizes["RNNCCE"] == sizes["GRU4Rec"]
    assert set(results["RNNCCE"]) == set(results["GRU4Rec"]) == {"recall@5", "mrr@5", "ndcg@5",
                                                                 "hit@5"}
    assert all(np.isfinite(v) for v in results["RNNCCE"].values())


def test_loading_a_recbole_sequential_model_leaves_anomaly_mode_off():
    # RecBole's sine.py turns autograd anomaly mode on at import; GRU4Rec must not train
    # slower than RNNCCE because of it. A fresh interpreter: the import happens only once.
    import subprocess
    import sys

    code = ("import torch; from recbole_ext.registry import get_model; "
            "get_model('GRU4Rec'); print(torch.is_anomaly_enabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
