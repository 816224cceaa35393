"""RNN-CCE weight tying (seed 002): ML-1M Devooght table, GRU4Rec on the same split, epoch cost.

Parts (``--only`` takes part names):

- ``profile``: ml-100k (RecBole's bundled copy), RecBole's GRU4Rec settings (GRU, embedding
  64, hidden 128, dropout 0.3, batch 2048, max length 50, CE over all items, prefix
  augmentation, leave-one-out). Seconds per training step (forward, backward, Adam) of
  GRU4Rec and RNNCCE with autograd anomaly mode off, and for GRU4Rec and RNNCCE tied also
  on (what ``import recbole.model.sequential_recommender`` leaves switched on: ``sine.py``
  line 25 calls ``torch.autograd.set_detect_anomaly(True)``); plus the operators that take
  the most time in one step (``torch.profiler``).
- ``timing``: the same data and settings, whole epochs through ``run_recbole_ext``:
  GRU4Rec vs RNNCCE tied without KL (GRU4Rec's architecture plus an output bias); seconds
  per epoch and test metrics under RecBole's leave-one-out protocol (the other RNNCCE
  variants' step cost is in ``profile``).
  Anomaly mode is off for every run here.
- ``ab``: the ``timing`` pair alternated (GRU4Rec, RNNCCE, three rounds of one epoch each), so
  a change in the machine's load hits both models alike.
- ``devooght``: ML-1M user-disjoint split (500 validation + 500 test users, kwonmha's
  setting), the six ``rnncce-ml-1m-d{50,100,200}-{untied,tied}`` presets, the d100 tied preset
  without the KL term, and RecBole's GRU4Rec (its default architecture, CE loss) with the
  d100 preset's data and training settings; sps@10 and recall@10 next to the seed's numbers,
  and seconds per epoch.
- ``devooght-paper`` (only when named): the ``devooght`` runs at kwonmha's budget, all 5040
  training users for one epoch (about 51,000 batches of 16); ``rnncce/devooght-paper.json``.
- ``devooght-long`` (only when named): all 5040 training users for up to 4 epochs, validation
  sps@10 after every epoch and the best epoch tested, as kwonmha keeps the best validated model
  of a run that goes on past its 50,000-batch minimum; ``rnncce/devooght-long.json``.
- Sweep labels (only when named, with a Devooght part): ``d100-tied-t20g1`` runs the d100 tied +
  KL preset with tau 20 and gamma 1 (any dim 50/100/200, tau, gamma).
- ``viewed``: the saved checkpoints of the ``devooght-paper`` / ``devooght-long`` runs tested
  again with every first-half item removed from the ranking (``exclude_viewed: True``,
  Devooght's test.py default); ``rnncce/viewed.json`` / ``.md``.
- ``beauty-ab``: one epoch each of the Beauty untied and tied + KL runs, alternated twice.
- ``beauty``: Amazon Beauty with RecBole's leave-one-out protocol; RNNCCE dim 100 untied vs
  tied (+KL), and GRU4Rec.

Budget (``DEVOOGHT_BUDGET``, ``TIMING_EPOCHS``): the paper setting (all 5040 training users,
kwonmha's >= 50,000 batches of 16, i.e. about one epoch of the 823k prefixes) costs 3-13
minutes per model and epoch on one core (3.6 ms per batch at dim 50, 6-8 ms at dim 100,
15 ms at dim 200), more than the CPU time this suite is given on a shared 2-core machine.
The default size therefore trains each ``devooght`` model for one epoch on the first 700
training users (about 7,200 batches of 16; all validation and test users are kept), and
runs ``timing`` for one epoch. ``--quick``: ``devooght`` on 100 training users, ``timing``
and ``beauty`` one epoch, ``profile`` with fewer steps.

Results: ``benchmarks/results/rnncce/<part>.json`` (one per part), a combined ``report.md`` and
``devooght.png`` (``devooght-paper.png``, ``devooght-long.png``); ``--quick`` writes them under the
git-ignored ``benchmarks/results/quick/rnncce/``. Runs use
``torch.get_num_threads()`` threads; on a shared CPU set ``OMP_NUM_THREADS=1``
(oversubscribed OpenMP threads made a batch-16 LSTM step 15x slower in our measurements).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import DATASET_DIR, ResultStore, ensure_converted, ensure_ml100k, pyplot, run_one, save_figure

SEED = 2020
SEED_TABLE = {  # kwonmha README, ML-1M, @10 in %: (sps, recall)
    (50, "untied"): (31.0, 6.2), (50, "tied"): (29.2, 6.0),
    (100, "untied"): (29.2, 5.2), (100, "tied"): (33.8, 6.6),
    (200, "untied"): (28.6, 5.6), (200, "tied"): (31.0, 6.8),
}
# data and training keys of the d100 preset (with RNNCCE's defaults under it) that GRU4Rec
# shares on the Devooght split; the architecture keys stay RNNCCE's
DEVOOGHT_SHARED_KEYS = ("dataset", "devooght_protocol", "benchmark_filename", "load_col", "exclude_viewed",
                        "MAX_ITEM_LIST_LENGTH", "train_batch_size", "learner", "learning_rate",
                        "clip_grad_norm", "metrics", "topk", "valid_metric", "eval_args",
                        "eval_batch_size", "epochs", "stopping_step")


def devooght_settings_for_others() -> dict:
    """The d100 preset's data and training settings, as the yaml layers give them to RNNCCE."""
    from recbole_ext.config import Config

    layers = Config(model="RNNCCE", preset="rnncce-ml-1m-d100-tied").external_config_dict
    return {key: layers[key] for key in DEVOOGHT_SHARED_KEYS if key in layers}
LOO = {"train_neg_sample_args": None, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
       "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
       "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"], "topk": [10],
       "valid_metric": "MRR@10"}
GRU4REC_SETTINGS = {"MAX_ITEM_LIST_LENGTH": 50, "train_batch_size": 2048, "learning_rate": 1.0e-3,
                    "embedding_size": 64, "hidden_size": 128, "dropout_prob": 0.3}
RNNCCE_AS_GRU4REC = {"cell": "gru", "num_layers": 1}
TIMING_RUNS = {
    "GRU4Rec": ("GRU4Rec", {"loss_type": "CE"}),
    "RNNCCE tied (no KL)": ("RNNCCE", {"output": "tied", "tying_loss": "none"}),
}
PROFILE_RUNS = {**TIMING_RUNS,
                "RNNCCE tied + KL": ("RNNCCE", {"output": "tied", "tying_loss": "kl"}),
                "RNNCCE untied": ("RNNCCE", {"output": "untied", "tying_loss": "none"})}
PROFILE_ANOMALY_ON = {"GRU4Rec", "RNNCCE tied (no KL)"}  # the other runs: anomaly off only
TIMING_EPOCHS = 1
# (training users kept, epochs) for the ML-1M Devooght table; see the module docstring.
# "paper": all 5040 training users for one epoch, about 51,000 batches of 16 (kwonmha's
# min_iter is 50,000); part ``devooght-paper``, its own result file.
DEVOOGHT_BUDGET = {"quick": (100, 1), "full": (700, 1), "paper": (None, 1), "long": (None, 4)}
DEVOOGHT_PARTS = {"paper": "devooght-paper", "long": "devooght-long"}  # size -> part, named-only parts
DEVOOGHT_OUTPUTS = {  # row label -> (preset output, overrides, dims run)
    "untied": ("untied", {}, (50, 100, 200)), "tied": ("tied", {}, (50, 100, 200)),
    "tied-nokl": ("tied", {"tying_loss": "none"}, (100,)),
    "tied-tgrad": ("tied", {"tying_target_grad": True}, (100,))}
# Named-only runs of the tied + KL preset with another tau and gamma: ``d100-tied-t5g1`` is dim 100,
# tau 5, gamma 1 (the KL term's weight is gamma * tau).
SWEEP_LABEL = re.compile(r"d(50|100|200)-tied-t(\d+(?:\.\d+)?)g(\d+(?:\.\d+)?)")
DEVOOGHT_LABELS = {"untied": "untied", "tied": "tied + KL", "tied-nokl": "tied, no KL",
                   "tied-tgrad": "tied + KL, target grad"}


def ensure_devooght_ml1m(n_train_users: int | None) -> str:
    ensure_converted("movielens", "ml-1m", "ml-1m")
    name = "ml-1m-devooght"
    if not (DATASET_DIR / name / "stats.json").is_file():
        from dataset_atomic.devooght import convert

        convert(DATASET_DIR / "ml-1m", DATASET_DIR / name, valid_users=500, test_users=500, seed=2,
                min_user_activity=0, min_item_pop=0)
    return subsample_train_users(name, n_train_users) if n_train_users else name


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
            "valid_history": result.get("valid_history"), "threads": torch.get_num_threads()}


def profile_batches(model_name: str, config_dict: dict, n_batches: int,
                    anomaly_modes: tuple[bool, ...]) -> dict:
    """Mean seconds per training step (forward, backward, Adam) per anomaly mode, and the
    operators with the most self CPU time in one extra step (anomaly off)."""
    from recbole_ext.quick_start import prepare_run

    run = prepare_run(model_name, config_dict={"seed": SEED, **config_dict}, with_trainer=False)
    train, model = run.train_data, run.model
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0e-3)
    record = {"training_rows": len(train.dataset), "batches_per_epoch": len(train),
              "mean_prefix_length": round(train.dataset.inter_feat["item_length"].float().mean().item(), 2)}
    batches = iter(train)

    def step() -> None:
        loss = model.calculate_loss(next(batches))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for anomaly in anomaly_modes:
        torch.autograd.set_detect_anomaly(anomaly)
        seconds = []
        for _ in range(n_batches + 1):
            start = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - start)
        per_batch = float(np.mean(seconds[1:]))  # the first step warms up the allocator
        key = "anomaly_on" if anomaly else "anomaly_off"
        record[f"{key}_seconds_per_batch"] = round(per_batch, 3)
        record[f"{key}_epoch_estimate_seconds"] = round(per_batch * len(train), 1)
    torch.autograd.set_detect_anomaly(False)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    ops = sorted(prof.key_averages(), key=lambda op: op.self_cpu_time_total, reverse=True)
    total = sum(op.self_cpu_time_total for op in ops)
    record["top_ops_self_cpu"] = [[op.key, round(op.self_cpu_time_total / 1e6, 3),
                                   round(op.self_cpu_time_total / total, 3)] for op in ops[:6]]
    return record


@dataclass(frozen=True)
class Selection:
    """What ``--only`` and ``--seeds`` select inside the parts: run labels such as ``d50-tied`` or
    ``GRU4Rec`` (empty: every run) and the seeds of the Devooght parts."""

    labels: frozenset[str] = frozenset()
    seeds: tuple[int, ...] = (SEED,)

    def wants(self, label: str) -> bool:
        return not self.labels or label in self.labels


def run_profile(store: ResultStore, quick: bool, select: Selection) -> None:
    base = {"dataset": ensure_ml100k(), "use_gpu": False, "state": "ERROR", "show_progress": False,
            "data_path": str(DATASET_DIR), **LOO, **GRU4REC_SETTINGS}
    for name, (model, extra) in PROFILE_RUNS.items():
        key = f"profile/{name}"
        if store.done(key):
            continue
        extra = {**RNNCCE_AS_GRU4REC, **extra} if model == "RNNCCE" else extra
        modes = (False, True) if name in PROFILE_ANOMALY_ON else (False,)
        record = profile_batches(model, {**base, **extra}, n_batches=1 if quick else 3,
                                 anomaly_modes=modes)
        store.add(key, record | {"model": model, "threads": torch.get_num_threads()})


def run_timing(store: ResultStore, quick: bool, select: Selection) -> None:
    dataset = ensure_ml100k()
    for name, (model, extra) in TIMING_RUNS.items():
        key = f"timing/{name}"
        if store.done(key):
            continue
        extra = {**RNNCCE_AS_GRU4REC, **extra} if model == "RNNCCE" else extra
        config = {**LOO, **GRU4REC_SETTINGS, "epochs": TIMING_EPOCHS, "stopping_step": 1000,
                  "seed": SEED, **extra}
        store.add(key, summary(run_one(model, dataset, config)))


def run_devooght(store: ResultStore, quick: bool, select: Selection, size: str | None = None) -> None:
    """The Devooght table; ``size`` picks a ``DEVOOGHT_BUDGET`` entry (default: quick/full).

    ``select.labels`` (run labels such as ``d50-tied`` or ``GRU4Rec`` given to ``--only``) limits
    the runs, so that two processes can share one table's runs (``beauty`` takes ``untied``,
    ``tied`` and ``GRU4Rec``).
    """
    size = size or ("quick" if quick else "full")
    part = DEVOOGHT_PARTS.get(size, "devooght")
    n_users, n_epochs = DEVOOGHT_BUDGET[size]
    dataset = ensure_devooght_ml1m(n_users)
    budget = {"epochs": n_epochs, "train_users": n_users or "all"}

    for seed in select.seeds:
        suffix = "" if seed == SEED else f"@{seed}"  # the first seed's runs keep their plain keys

        def key(label: str) -> str:
            return f"{part}/{label}{suffix}"

        def wanted(label: str) -> bool:
            return not store.done(key(label)) and select.wants(label)

        def run_preset(label: str, dim: int, output: str, overrides: dict, record: dict) -> None:
            result = run_one("RNNCCE", dataset, {"seed": seed, "epochs": n_epochs, **overrides},
                             preset=f"rnncce-ml-1m-d{dim}-{output}")
            store.add(key(label), summary(result) | {"dim": dim, **record, "seed": seed, **budget})

        for dim in (50, 100, 200):
            for label, (output, overrides, dims) in DEVOOGHT_OUTPUTS.items():
                if dim in dims and wanted(f"d{dim}-{label}"):
                    run_preset(f"d{dim}-{label}", dim, output, overrides, {"output": label})
        for label in sorted(select.labels):
            sweep = SWEEP_LABEL.fullmatch(label)
            if sweep and wanted(label):
                overrides = {"tying_temperature": float(sweep[2]), "tying_gamma": float(sweep[3])}
                run_preset(label, int(sweep[1]), "tied", overrides, {"output": "tied-sweep", **overrides})
        if wanted("GRU4Rec"):
            settings = devooght_settings_for_others()
            settings.update({"dataset": dataset, "seed": seed, "epochs": n_epochs, "loss_type": "CE",
                             "train_neg_sample_args": None})
            store.add(key("GRU4Rec"), summary(run_one("GRU4Rec", dataset, settings))
                      | {"dim": "64/128", "output": "GRU4Rec", "seed": seed, **budget})


BEAUTY_RUNS = {  # label -> (run label for --only, model, settings)
    "RNNCCE d100 untied": ("untied", "RNNCCE", {"cell": "lstm", "embedding_size": 100, "hidden_size": 100,
                                                "output": "untied", "tying_loss": "none"}),
    "RNNCCE d100 tied + KL": ("tied", "RNNCCE", {"cell": "lstm", "embedding_size": 100, "hidden_size": 100,
                                                 "output": "tied", "tying_loss": "kl"}),
    "GRU4Rec": ("GRU4Rec", "GRU4Rec", {}),
}


def beauty_config(epochs: int) -> tuple[str, dict]:
    dataset = ensure_converted("sequences", "amazon-beauty", "amazon-beauty")
    return dataset, {**LOO, "MAX_ITEM_LIST_LENGTH": 50, "train_batch_size": 256, "learning_rate": 1.0e-3,
                     "epochs": epochs, "stopping_step": 5, "seed": SEED, "eval_batch_size": 1024}


def run_beauty(store: ResultStore, quick: bool, select: Selection) -> None:
    dataset, common = beauty_config(1 if quick else 30)
    for name, (label, model, extra) in BEAUTY_RUNS.items():
        key = f"beauty/{name}"
        if select.wants(label) and not store.done(key):
            store.add(key, summary(run_one(model, dataset, {**common, **extra})))


def run_beauty_ab(store: ResultStore, quick: bool, select: Selection) -> None:
    """Untied and tied + KL on Amazon Beauty alternated (A B A B), one epoch each: the epoch-cost
    ratio on a 12k-item catalogue, both runs under the same machine load."""
    dataset, common = beauty_config(1)
    for round_no in (1, 2):
        for name, (label, model, extra) in BEAUTY_RUNS.items():
            key = f"beauty-ab/{name} round {round_no}"
            if model == "RNNCCE" and not store.done(key):
                store.add(key, summary(run_one(model, dataset, {**common, **extra})))


def run_timing_ab(store: ResultStore, quick: bool, select: Selection) -> None:
    """GRU4Rec and RNNCCE alternated (A B A B A B), one epoch each, so a change in the machine's
    load hits both models alike; ``timing`` runs them one after the other."""
    dataset = ensure_ml100k()
    for round_no in (1, 2, 3):
        for name, (model, extra) in TIMING_RUNS.items():
            key = f"ab/{name} round {round_no}"
            if store.done(key):
                continue
            extra = {**RNNCCE_AS_GRU4REC, **extra} if model == "RNNCCE" else extra
            config = {**LOO, **GRU4REC_SETTINGS, "epochs": 1, "stopping_step": 1000, "seed": SEED, **extra}
            store.add(key, summary(run_one(model, dataset, config)))


VIEWED_SOURCES = ("devooght-paper", "devooght-long")  # parts whose runs ``viewed`` re-tests


def _retest(ckpt: dict, exclude_viewed: bool, loaders: dict) -> dict:
    """Test metrics of a checkpoint's weights; ``loaders`` caches the data per protocol."""
    from recbole_ext.config import config_from_checkpoint
    from recbole_ext.quick_start import prepare_run

    config = config_from_checkpoint(ckpt, {"exclude_viewed": exclude_viewed, "state": "ERROR",
                                           "show_progress": False})
    # the data and its split do not depend on the model
    run = prepare_run(config=config, checkpoint=ckpt, data=loaders.get(exclude_viewed))
    loaders[exclude_viewed] = (run.dataset, run.train_data, run.valid_data, run.test_data)
    run.trainer.eval_collector.data_collect(run.train_data)
    result = run.trainer.evaluate(run.test_data, load_best_model=False, show_progress=False)
    return {key: round(float(value), 4) for key, value in result.items()}


def run_viewed(store: ResultStore, quick: bool, select: Selection) -> None:
    """Every saved checkpoint of the ``devooght-paper`` / ``devooght-long`` runs tested again with
    ``exclude_viewed: True`` (the whole first half removed from the ranking, as Devooght's
    test.py does by default; kwonmha's TensorFlow top-k keeps it, and so do the presets).

    A checkpoint is matched to its run by testing it again under the presets' protocol: the
    result must equal the run's recorded test result, so a checkpoint of an older code version
    or another run cannot be attributed by mistake.
    """
    from benchmarks.common import REPO_ROOT
    from recbole_ext.checkpoint import load_checkpoint

    records = {key: rec for part in VIEWED_SOURCES
               for key, rec in ResultStore("rnncce", part, quick=quick).records.items()}
    loaders: dict = {}
    for path in sorted((REPO_ROOT / "saved" / "benchmarks").glob("RNNCCE-ml-1m-devooght-[A-Z]*.pth")):
        ckpt = load_checkpoint(path)
        seed, dim = ckpt["external_config"].get("seed"), ckpt["external_config"].get("embedding_size")
        candidates = [key for key, rec in records.items() if not store.done(f"viewed/{key}")
                      and rec.get("seed", SEED) == seed and rec.get("dim") == dim]  # seedless: SEED
        if not candidates:
            continue
        kept = _retest(ckpt, False, loaders)
        match = [key for key in candidates
                 if all(abs(records[key]["test_result"][k] - kept[k]) < 1e-4 for k in kept)]
        if len(match) == 1:
            key = match[0]
            kept_fields = {k: records[key].get(k) for k in ("dim", "output", "epochs_trained")}
            store.add(f"viewed/{key}", {**kept_fields, "seed": seed, "test_result_with_viewed": kept,
                                        "test_result_excluding_viewed": _retest(ckpt, True, loaders),
                                        "checkpoint": path.name})
            print(f"{key}: {path.name}", flush=True)


PARTS = {"profile": run_profile, "timing": run_timing, "ab": run_timing_ab, "devooght": run_devooght,
         "devooght-paper": partial(run_devooght, size="paper"),
         "devooght-long": partial(run_devooght, size="long"),
         "beauty": run_beauty, "beauty-ab": run_beauty_ab, "viewed": run_viewed}


def main(args) -> None:
    # RecBole's sine.py turns anomaly mode on when its sequential package is imported; import
    # it once now and switch the mode off so every run below is measured the same way.
    import recbole.model.sequential_recommender  # noqa: F401

    torch.autograd.set_detect_anomaly(False)
    only = set(args.only or ())
    all_parts = not only
    if only and not only & set(PARTS):
        raise SystemExit(f"--only {' '.join(sorted(only))}: name at least one part ({', '.join(PARTS)}); "
                         "run labels such as d50-tied only restrict the devooght parts")
    select = Selection(frozenset(only - set(PARTS)), tuple(args.seeds or [SEED]))
    # One result file per part, so parts can run in separate processes at the same time.
    for part, runner in PARTS.items():
        if part in DEVOOGHT_PARTS.values() and part not in only:
            continue  # hours of CPU: only when asked for by name
        if all_parts or part in only:
            runner(ResultStore("rnncce", part, quick=args.quick, resume=args.resume), args.quick, select)
    write_tables(args.quick)


def _pct(result: dict | None, key: str) -> str:
    return f"{100 * result[key]:.1f}" if result and key in result else ""


def _profile_cells(rec: dict) -> tuple[str, str]:
    on = rec.get("anomaly_on_seconds_per_batch")
    ops = "; ".join(f"{name} {share:.0%}" for name, _, share in rec.get("top_ops_self_cpu", [])[:4])
    text = (f"{rec['training_rows']} training rows, {rec['batches_per_epoch']} batches, mean input "
            f"length {rec['mean_prefix_length']}; s/batch anomaly off "
            f"{rec['anomaly_off_seconds_per_batch']}" + (f", on {on}" if on is not None else "")
            + (f"; top ops (self CPU): {ops}" if ops else ""))
    epoch = f"{rec['anomaly_off_epoch_estimate_seconds']} (off)" + (
        f" / {rec['anomaly_on_epoch_estimate_seconds']} (on)" if on is not None else "") + ", estimated"
    return text, epoch


def write_tables(quick: bool) -> None:
    """``report.md`` (and the Devooght plots) from the result files of every part run so far."""
    store = ResultStore("rnncce", "report", quick=quick, resume=False)
    records = {key: rec for part in PARTS
               for key, rec in ResultStore("rnncce", part, quick=quick).records.items()}
    header = ["part", "run", "sps@10 % (ours)", "sps@10 % (seed)", "recall@10 % (ours)",
              "recall@10 % (seed)", "other test metrics", "s/epoch", "epochs", "params"]
    rows = []
    for key, rec in records.items():
        part, name = key.split("/", 1)
        if part == "viewed":
            continue  # its own table, below
        if part == "profile":
            text, epoch = _profile_cells(rec)
            rows.append([part, name, "", "", "", "", text, epoch, "", ""])
            continue
        test = rec["test_result"]
        seed = [f"{x:.1f}" for x in SEED_TABLE.get((rec.get("dim"), rec.get("output")), ())] or ["", ""]
        others = ", ".join(f"{k} {v:.4f}" for k, v in test.items()
                           if not k.startswith(("sps@", "recall@")))
        rows.append([part, name, _pct(test, "sps@10"), seed[0], _pct(test, "recall@10"), seed[1],
                     others, rec["seconds_per_epoch"], rec["epochs_trained"], rec["n_params"]])
    size = "quick" if quick else "default"
    users, epochs = DEVOOGHT_BUDGET["quick" if quick else "full"]
    notes = (
        f"Size: {size}. devooght: first {users} training users (all 500 validation and 500 test "
        f"users), {epochs} epoch(s) of batch 16 per model, a CPU budget far below kwonmha's "
        f">= 50,000 batches on all 5040 training users; timing: {TIMING_EPOCHS} epoch(s). "
        "tied = tied preset (augmented KL loss, constant KL target); tied-nokl = tied preset with "
        "tying_loss none; tied-tgrad = tied preset with tying_target_grad True (gradients flow "
        "through the KL target, as in kwonmha's TensorFlow graph). "
        "Seed numbers: kwonmha/Improving-RNN-recommendation-model README (TensorFlow, ML-1M). "
        "Under leave-one-out (timing, beauty) recall@10 equals hit@10 (one target). "
        "One seed per row; with 500 test users the binomial standard error of sps@10 near 12 % "
        "is about 1.5 points, so differences of one or two points are within noise. "
        "s/epoch is wall-clock training time on a shared 2-core CPU with the thread count recorded "
        "in the JSON; profile rows time single training steps of the same batches with autograd "
        "anomaly mode off/on.\n"
        "devooght-paper: the same table at kwonmha's budget, all 5040 training users for one epoch "
        "(about 51,000 batches of 16; kwonmha trains at least 50,000), validation once at the end.\n"
        "devooght-long: all 5040 training users, up to 4 epochs with validation sps@10 after each, "
        "the best epoch tested (stopping after 3 epochs without improvement).\n"
        "Reproduce: `OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python -m benchmarks rnncce [--quick] "
        "[--only profile timing ab devooght devooght-paper devooght-long beauty] [run labels]`; `ab` alternates "
        "GRU4Rec and RNNCCE epochs; run labels (`d50-tied`, `GRU4Rec`, ...) restrict the Devooght "
        "runs, so two processes can share a table.")
    store.write_markdown("RNN-CCE: weight tying (seed 002) and epoch cost", header, rows, notes)
    write_viewed_table(records, quick)
    plot_devooght(records, store.path("devooght.png"), users, epochs)
    if not quick:
        for size, part in DEVOOGHT_PARTS.items():
            n_epochs = DEVOOGHT_BUDGET[size][1]  # both named-only parts train all 5040 users
            plot_devooght(records, store.path(f"{part}.png"), "all 5040",
                          n_epochs if n_epochs == 1 else f"up to {n_epochs}", part=part)


def write_viewed_table(records: dict, quick: bool) -> None:
    """``viewed.md``: the Devooght runs tested with and without the first half ranked."""
    rows = []
    for key, rec in sorted(records.items()):
        if key.startswith("viewed/"):
            kept, excluded = rec["test_result_with_viewed"], rec["test_result_excluding_viewed"]
            rows.append([key.split("/", 1)[1], rec["seed"], _pct(kept, "sps@10"), _pct(kept, "recall@10"),
                         _pct(excluded, "sps@10"), _pct(excluded, "recall@10"), rec["checkpoint"]])
    if not rows:
        return
    header = ["run", "seed", "sps@10 % (viewed ranked)", "recall@10 % (viewed ranked)",
              "sps@10 % (viewed excluded)", "recall@10 % (viewed excluded)", "checkpoint"]
    notes = ("The saved best checkpoints of the devooght-paper and devooght-long runs, tested twice on "
             "the same 500 test users: as the presets do (kwonmha's TensorFlow top-k, items of the "
             "first half may be recommended; equal to the run's recorded result, which is how a "
             "checkpoint is matched to its run) and with `exclude_viewed: True` (every first-half item "
             "removed from the ranking, Devooght's test.py default). Reproduce: `python -m benchmarks "
             "rnncce --only viewed` after the devooght-paper / devooght-long runs.")
    ResultStore("rnncce", "viewed", quick=quick).write_markdown(
        "RNN-CCE: Devooght ML-1M runs with the first half ranked or excluded", header, rows, notes)


def plot_devooght(records: dict, path: Path, users: int | str, epochs: int | str,
                  part: str = "devooght") -> None:
    """sps@10 and recall@10 by dimension: ours (untied, tied without/with KL) beside the seed's."""
    rows = {key.split("/", 1)[1]: rec for key, rec in records.items() if key.startswith(f"{part}/d")}
    if not rows:
        return
    plt = pyplot()

    dims = (50, 100, 200)
    bars = [(f"ours {DEVOOGHT_LABELS[label]}", lambda d, m, label=label: rows.get(
                f"d{d}-{label}", {}).get("test_result", {}).get(f"{m}@10"))
            for label in DEVOOGHT_OUTPUTS]
    bars += [(f"seed {out}", lambda d, m, out=out: SEED_TABLE[(d, out)][m == "recall"] / 100)
             for out in ("untied", "tied")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(bars)
    for ax, metric in zip(axes, ("sps", "recall")):
        for i, (label, value) in enumerate(bars):
            heights = [100 * (value(d, metric) or 0.0) for d in dims]
            ax.bar(np.arange(len(dims)) + i * width, heights, width, label=label,
                   hatch="//" if label.startswith("seed") else None)
        ax.set_xticks(np.arange(len(dims)) + width * (len(bars) - 1) / 2, [f"dim {d}" for d in dims])
        ax.set_ylabel(f"{metric}@10 (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7)
    fig.suptitle(f"ML-1M Devooght protocol, LSTM; ours: {users} training users, {epochs} epoch(s)",
                 fontsize=9)
    save_figure(fig, path, rect=(0, 0.07, 1, 1))
    print(f"wrote {path}", flush=True)
