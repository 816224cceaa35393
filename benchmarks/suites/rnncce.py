"""RNN-CCE weight tying (seed 002): ML-1M Devooght table, GRU4Rec on the same split, epoch cost.

Parts (``--only`` takes part names):

- ``profile``: ml-100k (RecBole's bundled copy), RecBole's GRU4Rec settings (GRU, embedding
  64, hidden 128, dropout 0.3, batch 2048, max length 50, CE over all items, prefix
  augmentation, leave-one-out). Seconds per training batch of GRU4Rec and RNNCCE with
  autograd anomaly mode on (what ``import recbole.model.sequential_recommender`` leaves
  switched on: ``sine.py`` line 25 calls ``torch.autograd.set_detect_anomaly(True)``) and off.
- ``timing``: the same data and settings, whole epochs through ``run_recbole_ext``:
  GRU4Rec vs RNNCCE (tied without KL = GRU4Rec's architecture plus a bias; tied + KL;
  untied), seconds per epoch and test metrics. Anomaly mode is off for every run here.
- ``devooght``: ML-1M user-disjoint split (500 validation + 500 test users), the six
  ``rnncce-ml-1m-d{50,100,200}-{untied,tied}`` presets, plus RecBole's GRU4Rec (its default
  architecture) with the d100 preset's data and training settings; sps@10 and recall@10
  next to the seed's numbers, and seconds per epoch.
- ``beauty``: Amazon Beauty with RecBole's leave-one-out protocol; RNNCCE dim 100 untied vs
  tied (+KL), and GRU4Rec.

Results: ``benchmarks/results/rnncce-<part>[_quick].json`` (one per part) and a combined
``rnncce[_quick].md``. ``--quick``: ``timing`` 1 epoch; ``devooght`` on the first 1000 training users (all 500
validation and 500 test users), 2 epochs; ``beauty`` 3 epochs. The full size uses the
presets' 10 epochs (early stopping 3), which takes hours per model on 2 CPU cores.
Runs use ``torch.get_num_threads()`` threads; on a shared CPU set ``OMP_NUM_THREADS=1``
(oversubscribed OpenMP threads made a batch-16 LSTM step 15x slower in our measurements).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import DATASET_DIR, ResultStore, ensure_converted, run_one
from recbole_ext.config import PROPERTIES_DIR, load_yaml_file

SEED = 2020
SEED_TABLE = {  # kwonmha README, ML-1M, @10 in %: (sps, recall)
    (50, "untied"): (31.0, 6.2), (50, "tied"): (29.2, 6.0),
    (100, "untied"): (29.2, 5.2), (100, "tied"): (33.8, 6.6),
    (200, "untied"): (28.6, 5.6), (200, "tied"): (31.0, 6.8),
}
RNNCCE_ONLY_KEYS = {"model", "cell", "embedding_size", "hidden_size", "num_layers", "dropout_prob",
                    "output", "tying_loss", "tying_temperature", "tying_gamma",
                    "tying_target_grad"}
LOO = {"train_neg_sample_args": None, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
       "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
       "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"], "topk": [10],
       "valid_metric": "MRR@10"}
GRU4REC_SETTINGS = {"MAX_ITEM_LIST_LENGTH": 50, "train_batch_size": 2048, "learning_rate": 1.0e-3,
                    "embedding_size": 64, "hidden_size": 128, "dropout_prob": 0.3}
RNNCCE_AS_GRU4REC = {"cell": "gru", "num_layers": 1}
TIMING_RUNS = {
    "GRU4Rec": ("GRU4Rec", {}),
    "RNNCCE tied (no KL)": ("RNNCCE", {"output": "tied", "tying_loss": "none"}),
    "RNNCCE tied + KL": ("RNNCCE", {"output": "tied", "tying_loss": "kl"}),
    "RNNCCE untied": ("RNNCCE", {"output": "untied", "tying_loss": "none"}),
}


def use_devooght_data_for(model: str) -> None:
    """Let a RecBole sequential model read Devooght split files (for GRU4Rec on the same split)."""
    from recbole_ext.registry import PLUGIN_DATASETS

    PLUGIN_DATASETS.setdefault(model, PLUGIN_DATASETS["RNNCCE"])


def ensure_ml100k() -> str:
    """RecBole's bundled ml-100k interactions under ``dataset/ml-100k``."""
    import recbole

    target = DATASET_DIR / "ml-100k" / "ml-100k.inter"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(recbole.__file__).parent / "dataset_example" / "ml-100k" / "ml-100k.inter", target)
    return "ml-100k"


def ensure_devooght_ml1m(quick: bool) -> str:
    ensure_converted("movielens", "ml-1m", "ml-1m")
    name = "ml-1m-devooght"
    if not (DATASET_DIR / name / "stats.json").is_file():
        from dataset_atomic.devooght import convert

        convert(DATASET_DIR / "ml-1m", DATASET_DIR / name, valid_users=500, test_users=500, seed=2,
                min_user_activity=0, min_item_pop=0)
    return subsample_train_users(name, 1000) if quick else name


def subsample_train_users(name: str, n_users: int) -> str:
    """Copy of a Devooght split keeping the first ``n_users`` training users (all eval users)."""
    out_name = f"{name}-train{n_users}"
    out = DATASET_DIR / out_name
    if (out / f"{out_name}.test.inter").is_file():
        return out_name
    out.mkdir(parents=True, exist_ok=True)
    for part in ("train", "valid", "test"):
        lines = (DATASET_DIR / name / f"{name}.{part}.inter").read_text().splitlines()
        if part == "train":
            kept, users = [lines[0]], set()
            for line in lines[1:]:
                user = line.split("\t", 1)[0]
                if user not in users and len(users) == n_users:
                    continue
                users.add(user)
                kept.append(line)
            lines = kept
        (out / f"{out_name}.{part}.inter").write_text("\n".join(lines) + "\n")
    return out_name


def summary(result: dict) -> dict:
    timings = result["timings"]
    epochs = timings["train_epoch_seconds"]
    return {"model": result["model"], "dataset": result["dataset"], "preset": result.get("preset"),
            "test_result": result["test_result"], "best_valid_result": result["best_valid_result"],
            "n_params": result["n_params"], "epochs_trained": len(epochs),
            "train_epoch_seconds": epochs,
            "seconds_per_epoch": round(float(np.mean(epochs)), 2) if epochs else None,
            "threads": torch.get_num_threads()}


def profile_batches(model_name: str, config_dict: dict, n_batches: int) -> dict:
    """Mean seconds per training step (forward, backward, Adam) with anomaly mode off and on."""
    from recbole.utils import init_seed

    from recbole_ext.config import Config
    from recbole_ext.data import create_dataset, data_preparation
    from recbole_ext.registry import get_model

    config = Config(model=model_name, config_dict=config_dict)
    init_seed(SEED, True)
    train = data_preparation(config, create_dataset(config))[0]
    model = get_model(model_name)(config, train._dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0e-3)
    record = {"training_rows": len(train.dataset), "batches_per_epoch": len(train),
              "mean_prefix_length": round(train.dataset.inter_feat["item_length"].float().mean().item(), 2)}
    batches = iter(train)
    for anomaly in (False, True):
        torch.autograd.set_detect_anomaly(anomaly)
        seconds = []
        for _ in range(n_batches + 1):
            interaction = next(batches)
            start = time.perf_counter()
            loss = model.calculate_loss(interaction)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seconds.append(time.perf_counter() - start)
        per_batch = float(np.mean(seconds[1:]))  # the first step warms up the allocator
        key = "anomaly_on" if anomaly else "anomaly_off"
        record[f"{key}_seconds_per_batch"] = round(per_batch, 3)
        record[f"{key}_epoch_estimate_seconds"] = round(per_batch * len(train), 1)
    torch.autograd.set_detect_anomaly(False)
    return record


def run_profile(store: ResultStore, quick: bool) -> None:
    base = {"dataset": ensure_ml100k(), "use_gpu": False, "state": "ERROR", "show_progress": False,
            "data_path": str(DATASET_DIR), **LOO, **GRU4REC_SETTINGS}
    for name, (model, extra) in (("GRU4Rec", TIMING_RUNS["GRU4Rec"]),
                                 ("RNNCCE tied (no KL)", TIMING_RUNS["RNNCCE tied (no KL)"])):
        key = f"profile/{name}"
        if store.done(key):
            continue
        extra = {**RNNCCE_AS_GRU4REC, **extra} if model == "RNNCCE" else extra
        record = profile_batches(model, {**base, **extra}, n_batches=2 if quick else 5)
        store.add(key, record | {"model": model, "threads": torch.get_num_threads()})


def run_timing(store: ResultStore, quick: bool) -> None:
    dataset = ensure_ml100k()
    for name, (model, extra) in TIMING_RUNS.items():
        key = f"timing/{name}"
        if store.done(key):
            continue
        extra = {**RNNCCE_AS_GRU4REC, **extra} if model == "RNNCCE" else extra
        config = {**LOO, **GRU4REC_SETTINGS, "epochs": 1 if quick else 5, "stopping_step": 1000,
                  "seed": SEED, **extra}
        store.add(key, summary(run_one(model, dataset, config)))


def run_devooght(store: ResultStore, quick: bool) -> None:
    dataset = ensure_devooght_ml1m(quick)
    epochs = {"epochs": 2} if quick else {}
    for dim in (50, 100, 200):
        for output in ("untied", "tied"):
            key = f"devooght/d{dim}-{output}"
            if not store.done(key):
                preset = f"rnncce-ml-1m-d{dim}-{output}"
                result = run_one("RNNCCE", dataset, {"seed": SEED, **epochs}, preset=preset)
                store.add(key, summary(result) | {"dim": dim, "output": output})
    key = "devooght/GRU4Rec"
    if not store.done(key):
        use_devooght_data_for("GRU4Rec")
        preset = load_yaml_file(PROPERTIES_DIR / "paper" / "rnncce-ml-1m-d100-tied.yaml")
        settings = {k: v for k, v in preset.items() if k not in RNNCCE_ONLY_KEYS}
        settings.update({"dataset": dataset, "seed": SEED, **epochs})
        store.add(key, summary(run_one("GRU4Rec", dataset, settings)) | {"dim": "64/128", "output": "GRU4Rec"})


def run_beauty(store: ResultStore, quick: bool) -> None:
    dataset = ensure_converted("sequences", "amazon-beauty", "amazon-beauty")
    common = {**LOO, "MAX_ITEM_LIST_LENGTH": 50, "train_batch_size": 256, "learning_rate": 1.0e-3,
              "epochs": 3 if quick else 30, "stopping_step": 5, "seed": SEED, "eval_batch_size": 1024}
    runs = {"RNNCCE d100 untied": ("RNNCCE", {"cell": "lstm", "embedding_size": 100, "hidden_size": 100,
                                              "output": "untied", "tying_loss": "none"}),
            "RNNCCE d100 tied + KL": ("RNNCCE", {"cell": "lstm", "embedding_size": 100, "hidden_size": 100,
                                                 "output": "tied", "tying_loss": "kl"}),
            "GRU4Rec": ("GRU4Rec", {})}
    for name, (model, extra) in runs.items():
        key = f"beauty/{name}"
        if not store.done(key):
            store.add(key, summary(run_one(model, dataset, {**common, **extra})))


PARTS = {"profile": run_profile, "timing": run_timing, "devooght": run_devooght, "beauty": run_beauty}


def main(args) -> None:
    # RecBole's sine.py turns anomaly mode on when its sequential package is imported; import
    # it once now and switch the mode off so every run below is measured the same way.
    import recbole.model.sequential_recommender  # noqa: F401

    torch.autograd.set_detect_anomaly(False)
    # One result file per part, so parts can run in separate processes at the same time.
    for part, runner in PARTS.items():
        if not args.only or part in args.only:
            runner(ResultStore(f"rnncce-{part}", quick=args.quick, resume=args.resume), args.quick)
    write_tables(args.quick)


def _pct(result: dict | None, key: str) -> str:
    return f"{100 * result[key]:.1f}" if result and key in result else ""


def write_tables(quick: bool) -> None:
    """``rnncce[_quick].md`` from the result files of every part run so far."""
    store = ResultStore("rnncce", quick=quick, resume=False)
    records = {key: rec for part in PARTS
               for key, rec in ResultStore(f"rnncce-{part}", quick=quick).records.items()}
    header = ["part", "run", "sps@10 % (ours)", "sps@10 % (seed)", "recall@10 % (ours)",
              "recall@10 % (seed)", "other test metrics", "s/epoch", "epochs", "params"]
    rows = []
    for key, rec in records.items():
        part, name = key.split("/", 1)
        if part == "profile":
            rows.append([part, name, "", "", "", "", (
                f"{rec['training_rows']} training rows, {rec['batches_per_epoch']} batches, mean input "
                f"length {rec['mean_prefix_length']}; s/batch anomaly off {rec['anomaly_off_seconds_per_batch']}"
                f", on {rec['anomaly_on_seconds_per_batch']}"), (
                f"{rec['anomaly_off_epoch_estimate_seconds']} (off) / "
                f"{rec['anomaly_on_epoch_estimate_seconds']} (on), estimated"), "", ""])
            continue
        test = rec["test_result"]
        seed = SEED_TABLE.get((rec.get("dim"), rec.get("output")), ("", ""))
        others = ", ".join(f"{k} {v:.4f}" for k, v in test.items()
                           if not k.startswith(("sps@", "recall@")))
        rows.append([part, name, _pct(test, "sps@10"), seed[0], _pct(test, "recall@10"), seed[1],
                     others, rec["seconds_per_epoch"], rec["epochs_trained"], rec["n_params"]])
    notes = (
        f"Size: {'quick (devooght: first 1000 training users, 2 epochs; timing: 1 epoch; beauty: 3 epochs)' if quick else 'full'}. "
        "Seed numbers: kwonmha/Improving-RNN-recommendation-model README (TensorFlow, ML-1M). "
        "Under leave-one-out (timing, beauty) recall@10 equals hit@10 (one target). "
        "s/epoch is wall-clock on a shared 2-core CPU with the thread count recorded in the JSON; "
        "profile rows time single training steps of the same batches with autograd anomaly mode off/on.\n"
        "Reproduce: `OMP_NUM_THREADS=1 python -m benchmarks rnncce [--quick] [--only profile timing devooght beauty]`.")
    store.write_markdown("RNN-CCE: weight tying (seed 002) and epoch cost", header, rows, notes)
