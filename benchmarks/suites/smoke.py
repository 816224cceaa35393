"""Pipeline check: one RecBole baseline and one plugin model per protocol family, same data.

Not a paper reproduction: it proves, in about a minute, that training, evaluation,
result files and resume work end to end on this machine (the test suite runs it on
the tiny fixture). Models: BPR (RecBole, implicit ranking), BiasedMF (ours, explicit
ratings, RMSE) and RNNCCE (ours, next-item ranking).

Data: RecBole's bundled ml-100k, or ``RECBOLE_EXT_SMOKE_DATASET`` found under
``RECBOLE_EXT_DATASET_DIR`` (default ``dataset/``). ``--quick``: 1 epoch per model;
full size: 10 epochs. Results: ``benchmarks/results/[quick/]smoke/runs.{json,md,png}``.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.common import DATASET_DIR, ResultStore, pyplot, run_one, save_figure

MODELS = ("BPR", "BiasedMF", "RNNCCE")
SEEDS = (2020,)


def data_location(dataset: str) -> str:
    """Where ``dataset``'s folder lives: ``dataset/`` or, for ml-100k, RecBole's wheel."""
    if (DATASET_DIR / dataset).is_dir() or dataset != "ml-100k":
        return str(DATASET_DIR)
    import recbole

    return str(Path(recbole.__file__).parent / "dataset_example")


def main(args) -> None:
    dataset = os.environ.get("RECBOLE_EXT_SMOKE_DATASET", "ml-100k")
    store = ResultStore("smoke", "runs", quick=args.quick, resume=args.resume)
    epochs = 1 if args.quick else 10
    for model in args.only or MODELS:
        for seed in args.seeds or SEEDS:
            key = f"{model}/{dataset}/seed{seed}"
            if store.done(key):
                print(f"[smoke] {key} already recorded; skipped", flush=True)
                continue
            result = run_one(model, dataset, {"epochs": epochs, "seed": seed,
                                              "data_path": data_location(dataset)})
            store.add(key, {"model": model, "dataset": dataset, "seed": seed, "epochs": epochs,
                            "test_result": result["test_result"], "n_params": result["n_params"],
                            "fit_seconds": result["timings"]["fit_seconds"]})
    write_report(store)


def write_report(store: ResultStore) -> None:
    rows = [[key, rec["epochs"], rec["n_params"], round(rec["fit_seconds"], 1),
             ", ".join(f"{m}={v:.4f}" for m, v in rec["test_result"].items())]
            for key, rec in sorted(store.records.items())]
    store.write_markdown("Smoke suite (pipeline check, not a reproduction)",
                         ["run", "epochs", "parameters", "fit s", "test metrics"], rows,
                         notes="Command: `python -m benchmarks smoke [--quick]`.")
    plot_fit_seconds(store)


def plot_fit_seconds(store: ResultStore) -> None:
    plt = pyplot()

    keys = sorted(store.records)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.barh(keys, [store.records[k]["fit_seconds"] for k in keys])
    ax.set_xlabel("fit seconds (2 CPU cores)")
    save_figure(fig, store.file("png"), dpi=100)
