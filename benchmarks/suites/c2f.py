"""RecBole LightGCN vs LEGCF (coarse) vs C2F (fine) on Gowalla, Yelp2018 and ML-1M.

Protocol (one seed, 2020):
- Gowalla and Yelp2018: the LightGCN train/test files, with a random third of every
  user's test items moved to validation (``dataset_atomic lightgcn --valid-from-test 1/3``,
  seed 2020), as in the LEGCF / C2F code. Yelp2018 stands in for Yelp2020, whose
  training split is not available offline.
- ML-1M: every rating is a positive; RecBole's per-user random 80/10/10 split.
- Same split, seed, epoch budget per stage, batch size (8192), negatives and evaluation
  (full ranking, Recall/NDCG@5,10,20,50, model selection on validation NDCG@20) for all
  models; d = 128, 3 layers. LightGCN: RecBole's, reg_weight 1e-4. LEGCF: the C2F coarse
  settings (c = 300, t = 2, w* = 0.5, L2 factor 5, METIS init). C2F: stage ``[fine]``
  from LEGCF's assignment-update checkpoint (``init_checkpoint``; the checkpoint the
  official fine stage loads), c_f = 100, ft = 4, SparsePCA 80,
  tau = 1, g = 0.2; its epochs are a second budget on top of LEGCF's.
- Sizes (``SIZES``): ``--quick`` is a pipeline check (5-10 % of the users, 4 epochs).
  The default, ``full``, is what fits the CPU budget of a shared 2-core machine: a seeded
  random 10 % of the Gowalla / Yelp2018 users and 25 % of the ML-1M users
  (:func:`subsample_users`: all their interactions in every split), 30 epochs per stage,
  validation every 3 epochs, one negative per positive, learning rate 1e-2 for every model
  and stage (chosen, not tuned, so that the ~300 Adam steps of a 30-epoch budget of about
  10 batches move the N(0,1)-initialised codebook and biases; the code's 1e-3 / 3e-3 were
  not run at this size), and the fixed-assignment sub-stages capped at 15 epochs
  (``fixed_assignment_epochs``) so that the assignment update runs within the budget.
  ``C2F_BENCH_SIZE=long`` keeps the ``full`` users and learning rate but gives every model
  150 epochs per stage (fixed-assignment sub-stages capped at 75), validation every 5 epochs
  and a patience of 4 validations: it shows whether the gap to LightGCN is a budget effect.
  ``C2F_BENCH_SIZE=paper`` is the code's setting on all users (5 negatives, lr 1e-3 then
  3e-3, epochs up to 1000, validation every 5, patience 5, no cap): GPU-sized, not run here.
- Reported: test Recall@20 / NDCG@20, relative to LightGCN (and C2F to LEGCF), embedding
  parameters/bytes (``memory_report``; LightGCN: its user and item tables), wall seconds
  per training epoch (assignment updates included), CPU seconds per epoch from
  :func:`step_cpu_seconds`, and the epochs of every sub-stage.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (DATASET_DIR, REPO_ROOT, ResultStore, ensure_converted, pyplot, run_one,
                               save_figure, uniform_negatives)

SEED = 2020
EMBEDDING_SIZE = 128
# name -> (converter, raw folder, converter options)
DATASETS = {
    "gowalla": ("lightgcn", "gowalla", {"valid_from_test": "1/3", "seed": SEED}),
    "yelp2018": ("lightgcn", "yelp2018", {"valid_from_test": "1/3", "seed": SEED}),
    "ml-1m": ("movielens", "ml-1m", {}),
}
# Size of a run: seeded user fraction per dataset (1.0 = all users), epoch budget per stage
# (LightGCN, LEGCF, and C2F's fine stage each), validation interval, patience, negatives.
SIZES = {
    "quick": {"fractions": {"gowalla": 0.05, "yelp2018": 0.05, "ml-1m": 0.1}, "epochs": 4,
              "eval_step": 2, "stopping_step": 1, "fixed_assignment_epochs": 2, "negatives": 1,
              "learning_rate": 1.0e-2, "fine_learning_rate": 1.0e-2},
    "full": {"fractions": {"gowalla": 0.1, "yelp2018": 0.1, "ml-1m": 0.25}, "epochs": 30,
             "eval_step": 3, "stopping_step": 2, "fixed_assignment_epochs": 15, "negatives": 1,
             "learning_rate": 1.0e-2, "fine_learning_rate": 1.0e-2},
    "long": {"fractions": {"gowalla": 0.1, "yelp2018": 0.1, "ml-1m": 0.25}, "epochs": 150,
             "eval_step": 5, "stopping_step": 4, "fixed_assignment_epochs": 75, "negatives": 1,
             "learning_rate": 1.0e-2, "fine_learning_rate": 1.0e-2},
    "paper": {"fractions": {"gowalla": 1.0, "yelp2018": 1.0, "ml-1m": 1.0}, "epochs": 1000,
              "eval_step": 5, "stopping_step": 4, "fixed_assignment_epochs": 0, "negatives": 5,
              "learning_rate": 1.0e-3, "fine_learning_rate": 3.0e-3},
}
SPLITS = ("train", "valid", "test")
CPU_STEPS = 5  # training steps timed per model for the CPU cost columns


def subsample_users(name: str, fraction: float, seed: int = SEED) -> str:
    """Write ``dataset/<name>-u<pct>`` keeping a seeded random ``fraction`` of the users.

    Users are drawn with ``numpy.random.default_rng(seed).choice`` (without replacement)
    from the sorted user ids of the source; every interaction of a kept user stays, in
    every split file, in file order. Returns the new dataset name.
    """
    out_name = f"{name}-u{round(fraction * 100)}"
    out_dir = DATASET_DIR / out_name
    source = DATASET_DIR / name
    files = [source / f"{name}.{s}.inter" for s in SPLITS if (source / f"{name}.{s}.inter").is_file()]
    suffixes = [f".{s}.inter" for s in SPLITS if (source / f"{name}.{s}.inter").is_file()]
    if not files:
        files, suffixes = [source / f"{name}.inter"], [".inter"]
    if all((out_dir / f"{out_name}{suffix}").is_file() for suffix in suffixes):
        return out_name
    users = set()
    for path in files:
        with path.open() as handle:
            next(handle)
            users.update(line.split("\t", 1)[0] for line in handle)
    ordered = sorted(users, key=lambda u: (len(u), u))
    rng = np.random.default_rng(seed)
    keep = set(rng.choice(ordered, size=max(1, math.ceil(fraction * len(ordered))), replace=False))
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, suffix in zip(files, suffixes):
        with path.open() as src, (out_dir / f"{out_name}{suffix}").open("w") as dst:
            dst.write(next(src))
            dst.writelines(line for line in src if line.split("\t", 1)[0] in keep)
    return out_name


def dataset_config(name: str) -> dict:
    if name.startswith("ml-1m"):
        return {"load_col": {"inter": ["user_id", "item_id"]},
                "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user",
                              "mode": "full"}}
    return {"load_col": {"inter": ["user_id", "item_id"]}, "benchmark_filename": list(SPLITS),
            "eval_args": {"order": "RO", "group_by": "user", "mode": "full"}}


def common_config(size: dict, seed: int) -> dict:
    return {
        "seed": seed, "embedding_size": EMBEDDING_SIZE, "n_layers": 3, "epochs": size["epochs"],
        "eval_step": size["eval_step"], "stopping_step": size["stopping_step"],
        "train_batch_size": 8192,
        "eval_batch_size": 2**23,  # full ranking: users per batch = this // n_items
        "learning_rate": size["learning_rate"], "metrics": ["Recall", "NDCG"],
        "topk": [5, 10, 20, 50], "valid_metric": "NDCG@20",
        "train_neg_sample_args": uniform_negatives(size["negatives"]),
    }


LEGCF_SETTINGS = {"n_anchors": 300, "n_compositions": 2, "anchor_weight": 0.5, "l2_penalty_factor": 5.0}
MODELS = {  # run label -> settings; the label names the model unless it is in VARIANTS
    "LightGCN": {"reg_weight": 1.0e-4},
    "LEGCF": LEGCF_SETTINGS,
    "LEGCF-2x": LEGCF_SETTINGS,
    # capacity ablations: is the gap to LightGCN the codebook size (c) or the composition (t)?
    "LEGCF-c1200": LEGCF_SETTINGS | {"n_anchors": 1200},
    "LEGCF-c3000": LEGCF_SETTINGS | {"n_anchors": 3000},
    "LEGCF-t4": LEGCF_SETTINGS | {"n_compositions": 4},
    # near one anchor per entity (no compression), and no L2 term: is the gap the model itself?
    "LEGCF-c4000-t1": LEGCF_SETTINGS | {"n_anchors": 4000, "n_compositions": 1},
    "LEGCF-noL2": LEGCF_SETTINGS | {"l2_penalty_factor": 0.0},
    # anchors left out of the propagation graph (Â only), with shared anchors and with a
    # private random anchor per entity: does the expanded graph or the sharing cost recall?
    "LEGCF-plain": LEGCF_SETTINGS | {"anchors_in_graph": False},
    "LEGCF-private": LEGCF_SETTINGS | {"n_anchors": 20000, "n_compositions": 1, "assignment_init": "random"},
    "LEGCF-private-plain": LEGCF_SETTINGS | {"n_anchors": 20000, "n_compositions": 1,
                                             "assignment_init": "random", "anchors_in_graph": False},
    # the official code's five negatives per positive instead of the suite's one
    "LEGCF-neg5": LEGCF_SETTINGS | {"train_neg_sample_args": uniform_negatives(5)},
    "C2F": {"stage": ["fine"], "n_anchors": 300, "n_compositions": 2, "anchor_weight": 0.5,
            "l2_penalty_factor": 5.0, "n_fine_anchors": 100, "n_fine_compositions": 4,
            "sparse_pca_components": 80, "soft_threshold": 1.0, "bridge_weight": 0.2},
}


# run label -> (model, epoch budget factor); run only when named in --only. LEGCF-2x trains
# as many epochs as C2F's coarse + fine stages together: it separates what the fine stage
# adds from what more training adds. The other LEGCF-* labels are the ablations above, at
# LEGCF's budget.
VARIANTS = {label: ("LEGCF", 2 if label == "LEGCF-2x" else 1) for label in MODELS if label.startswith("LEGCF-")}


def model_class(label: str) -> str:
    return VARIANTS[label][0] if label in VARIANTS else label


def run_config(model: str, dataset: str, size: dict, seed: int, store: ResultStore) -> dict:
    """The config dict of run ``model`` (a label of ``MODELS``); C2F's names the checkpoint of
    LEGCF's run on ``dataset``."""
    config = common_config(size, seed) | dataset_config(dataset) | MODELS[model]
    config["epochs"] = size["epochs"] * (VARIANTS[model][1] if model in VARIANTS else 1)
    if model != "LightGCN":
        config["fixed_assignment_epochs"] = size["fixed_assignment_epochs"]
    if model == "C2F":
        coarse = store.records.get(f"{dataset}/LEGCF/seed{seed}")
        if coarse is None:
            raise RuntimeError(f"C2F on {dataset} needs the LEGCF run first")
        config["init_checkpoint"] = coarse_handoff_checkpoint(coarse)
        config["fine_learning_rate"] = size["fine_learning_rate"]
    return config


def coarse_handoff_checkpoint(coarse: dict) -> str:
    """LEGCF's checkpoint a fine stage starts from: its validated update sub-stage, as in C2F's code."""
    update = (coarse.get("stages") or {}).get("coarse/update")
    if update and update["best_valid_score"] is not None and update["checkpoint"]:
        return repo_path(update["checkpoint"])
    return repo_path(coarse["checkpoint"])


def size_name(quick: bool) -> str:
    """``quick``, or the ``C2F_BENCH_SIZE`` environment variable (``full`` by default, ``long``, ``paper``)."""
    if quick:
        return "quick"
    name = os.environ.get("C2F_BENCH_SIZE", "full")
    if name not in SIZES or name == "quick":
        raise ValueError(f"C2F_BENCH_SIZE={name!r}: expected 'full', 'long' or 'paper' (use --quick for quick)")
    return name


def record(result: dict, model: str) -> dict:
    test = result["test_result"]
    timings = result["timings"]
    epochs = timings["train_epoch_seconds"]
    memory = result.get("memory")
    if memory is None:  # RecBole LightGCN: user and item embedding tables, float32
        params = result["n_params"]
        memory = {"embedding_params": params, "embedding_bytes": params * 4,
                  "lightgcn_bytes": params * 4, "bytes_ratio_vs_lightgcn": 1.0}
    return {
        "model": model, "dataset": result["dataset"],
        "recall@20": test["recall@20"], "ndcg@20": test["ndcg@20"], "test_result": test,
        "best_valid_result": result["best_valid_result"],
        "embedding_params": memory["embedding_params"], "embedding_bytes": memory["embedding_bytes"],
        "bytes_ratio_vs_lightgcn": memory["bytes_ratio_vs_lightgcn"], "memory": memory,
        "epochs_trained": len(epochs),
        "seconds_per_epoch": float(np.mean(epochs)) if epochs else None,
        "fit_seconds": timings["fit_seconds"],
        # checkpoints relative to the repository: result files carry no machine paths
        "stages": {phase: dict(info, checkpoint=repo_relative(info["checkpoint"]))
                   for phase, info in (result.get("stages") or {}).items()} or None,
        "checkpoint": repo_relative(result["checkpoint"]),
    }


def repo_relative(path: str | None) -> str | None:
    """``path`` relative to the repository root (``saved/...``) when it lies inside it."""
    if not path:
        return path
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return path


def repo_path(path: str) -> str:
    """A checkpoint path from a result file, absolute again."""
    return str(REPO_ROOT / path)


def main(args) -> None:
    size_key = size_name(args.quick)
    size = SIZES[size_key]
    store = ResultStore("c2f", "full" if size_key == "quick" else size_key, quick=args.quick,
                        resume=args.resume)
    seed = (args.seeds or [SEED])[0]
    only = set(args.only or [])
    for name, (fmt, raw, options) in DATASETS.items():
        if only & set(DATASETS) and name not in only:
            continue
        base = ensure_converted(fmt, raw, name, **options)
        fraction = size["fractions"][name]
        dataset = subsample_users(base, fraction) if fraction < 1.0 else base
        for model in MODELS:
            if model not in only and (only & set(MODELS) or model in VARIANTS):
                continue
            key = f"{dataset}/{model}/seed{seed}"
            if store.done(key):
                continue
            result = run_one(model_class(model), dataset,
                             config_dict=run_config(model, dataset, size, seed, store))
            store.add(key, record(result, model))
    for key, rec in list(store.records.items()):  # separate pass: a rerun fills in missing costs
        if "cpu_cost" not in rec:
            config = run_config(rec["model"], rec["dataset"], size, seed, store)
            cost = step_cpu_seconds(model_class(rec["model"]), rec["dataset"], config, n_steps=CPU_STEPS)
            store.add(key, dict(rec, cpu_cost=cost))
        if rec["model"] != "LightGCN" and "sub_stage_test" not in rec:
            store.add(key, dict(store.records[key], sub_stage_test=sub_stage_tests(rec)))
    write_table(store, size_key)


def step_cpu_seconds(model: str, dataset: str, config: dict, n_steps: int) -> dict:
    """CPU seconds (``time.process_time``, this process) per training step and per assignment update.

    Wall-clock epoch times on a CPU shared with other jobs depend on their load; CPU time
    of the same steps in one process does much less. Builds the model as ``run_one`` does
    (C2F: coarse weights from ``init_checkpoint``, then the fine stage), runs ``n_steps``
    BPR steps with Adam on the first training batches (after one untimed step that builds
    the graph), then one ``update_assignment()`` together with the rebuild of the expanded
    graph it causes, which every epoch of an update sub-stage pays.
    """
    import torch

    from benchmarks.common import use_gpu
    from recbole_ext.quick_start import prepare_run

    full = {"use_gpu": use_gpu(), "state": "ERROR", "show_progress": False,
            "data_path": str(DATASET_DIR)} | config
    run = prepare_run(model, dataset, config_dict=full, with_trainer=False)
    net, train_data = run.model, run.train_data
    if model == "C2F":
        net.load_coarse_checkpoint(run.config["init_checkpoint"])
        net.enter_stage("fine")
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1.0e-3)
    batches = iter(train_data)
    warm_up = next(batches)
    net.calculate_loss(warm_up.to(net.device)).backward()
    net.zero_grad()
    steps = 0
    start = time.process_time()
    for batch in batches:
        loss = net.calculate_loss(batch.to(net.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
        if steps == n_steps:
            break
    per_step = (time.process_time() - start) / steps
    update = None
    if hasattr(net, "update_assignment"):
        start = time.process_time()
        net.update_assignment()
        net.graph()
        update = time.process_time() - start
    return {"cpu_seconds_per_step": per_step, "cpu_seconds_per_update": update,
            "steps_per_epoch": len(train_data), "steps_measured": steps}


def sub_stage_tests(rec: dict) -> dict:
    """Test Recall@20 / NDCG@20 of the best checkpoint of every validated sub-stage.

    The official code tests both the best model before and with assignment updates; the
    run itself tests only the checkpoint selected on validation.
    """
    from recbole_ext import get_trainer
    from recbole_ext.quick_start import load_data_and_model

    out = {}
    for phase, info in (rec.get("stages") or {}).items():
        if info["best_valid_score"] is None or not info["checkpoint"]:
            continue
        config, model, _, _, _, test_data = load_data_and_model(repo_path(info["checkpoint"]))
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        result = trainer.evaluate(test_data, load_best_model=False)
        out[phase] = {"recall@20": float(result["recall@20"]), "ndcg@20": float(result["ndcg@20"])}
    return out


def write_table(store: ResultStore, size_key: str) -> None:
    header = ["dataset", "model", "Recall@20", "NDCG@20", "R@20 vs LightGCN", "R@20 vs LEGCF",
              "embedding params", "embedding bytes", "bytes vs LightGCN", "wall s/epoch",
              "CPU s/epoch (steps + update)", "CPU epoch vs LightGCN", "epochs", "sub-stages (last epoch)",
              "test R@20 / N@20 per sub-stage"]
    rows = []
    datasets, models = list(DATASETS), list(MODELS)

    def order(item: tuple[str, dict]) -> tuple:
        key, rec = item
        base = next((i for i, name in enumerate(datasets) if key.startswith(name)), len(datasets))
        return base, key.split("/")[0], models.index(rec["model"]), key

    for key, rec in sorted(store.records.items(), key=order):
        dataset = key.split("/")[0]
        light = store.records.get(key.replace(f"/{rec['model']}/", "/LightGCN/"))
        coarse = store.records.get(key.replace(f"/{rec['model']}/", "/LEGCF/"))
        cpu = cpu_epoch_seconds(rec)
        light_cpu = cpu_epoch_seconds(light) if light else None
        stages = ", ".join(f"{k} ({v['last_epoch']})" for k, v in (rec.get("stages") or {}).items())
        rows.append([
            dataset, rec["model"], rec["recall@20"], rec["ndcg@20"],
            _relative(rec["recall@20"], light["recall@20"] if light else None),
            _relative(rec["recall@20"], coarse["recall@20"]) if rec["model"] in ("C2F", "LEGCF-2x") and coarse else "",
            rec["embedding_params"], rec["embedding_bytes"], f"{rec['bytes_ratio_vs_lightgcn']:.2%}",
            rec["seconds_per_epoch"], cpu,
            f"{cpu / light_cpu:.2f}x" if cpu and light_cpu else None,
            rec["epochs_trained"], stages,
            "; ".join(f"{phase} {v['recall@20']:.4f} / {v['ndcg@20']:.4f}"
                      for phase, v in (rec.get("sub_stage_test") or {}).items())])
    notes = (__doc__ or "") + (
        f"\nSize: `{size_key}` {SIZES[size_key]}."
        "\nCommand: `OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 python -m benchmarks c2f"
        + (" --quick" if size_key == "quick" else "") + "`"
        + (f" with `C2F_BENCH_SIZE={size_key}`" if size_key in ("long", "paper") else "") + "."
        f"\nDatasets in this file: {', '.join(sorted({r['dataset'] for r in store.records.values()}))}"
        " (`--only <dataset>` runs one)."
        "\nC2F's epochs are the fine stage only; its coarse weights are LEGCF's run in the row above,"
        " so C2F has trained for LEGCF's budget plus its own: compare with LEGCF at the same total"
        " before crediting the fine stage with the whole difference: row LEGCF-2x (`--only <dataset>"
        " LEGCF-2x`) is LEGCF with twice the epochs."
        "\nCPU s/epoch = steps per epoch x CPU seconds per step (+ one assignment update for LEGCF and"
        " C2F, which runs before every epoch of the update sub-stage), measured in-process with"
        " `time.process_time` on the first training batches; wall s/epoch is the run's mean and"
        " depends on the other jobs sharing the CPU."
    )
    title = "LightGCN vs LEGCF vs C2F" + ("" if size_key == "full" else f" ({size_key})")
    store.write_markdown(title, header, rows, notes)
    plot_memory_vs_recall(store)


def plot_memory_vs_recall(store: ResultStore) -> None:
    """``<part>.png``: Recall@20 against embedding bytes (log scale), one line per dataset."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    by_dataset: dict[str, list[dict]] = {}
    for rec in store.records.values():
        by_dataset.setdefault(rec["dataset"], []).append(rec)
    for dataset, recs in sorted(by_dataset.items()):
        recs.sort(key=lambda r: r["embedding_bytes"])
        ax.plot([r["embedding_bytes"] for r in recs], [r["recall@20"] for r in recs], "o-", label=dataset)
        for rec in recs:
            ax.annotate(rec["model"], (rec["embedding_bytes"], rec["recall@20"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("embedding bytes (log)")
    ax.set_ylabel("test Recall@20")
    ax.legend(fontsize=7)
    save_figure(fig, store.file("png"))


def cpu_epoch_seconds(rec: dict) -> float | None:
    cost = rec.get("cpu_cost")
    if not cost:
        return None
    return cost["steps_per_epoch"] * cost["cpu_seconds_per_step"] + (cost["cpu_seconds_per_update"] or 0.0)


def _relative(value: float, reference: float | None) -> str:
    return f"{value / reference - 1:+.1%}" if reference else ""
