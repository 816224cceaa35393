"""NRP family (seed 003, arXiv:2010.06070): Table 2 / Table 4 / Table 5 on MovieLens.

Parts (``--only`` takes part names, model names or variant keys ``variant1``...):

- ``table2``: ml-100k (RecBole's bundled atomic files, with ``.user`` and ``.item`` for the
  side information), preset ``nrp-ml-100k``: BiasedMF (the paper's MF row), DHA, NRP-DHA,
  aSDAE, NRP-aSDAE and NRP-direct with the ml-100k rows of supplementary Table 6 (the
  model yamls' defaults). Test RMSE, precision@25% (Table 2's column) and @10% (Table 3),
  parameters and seconds per training epoch, mean ± std over the seeds; each seed draws
  its own random 80/10/10 split, as the paper's three splits.
- ``noside``: the same runs with ``use_side_info: False`` (Table 5 for NRP-direct; the
  autoencoder models on ratings only as an extra column). BiasedMF has no side input.
- ``variants``: NRP-direct on the ``table2`` protocol with choices the paper leaves open
  (``VARIANTS``): the rating being predicted left out of both training input vectors
  (``mask_target_rating``; test ratings are never in them), batch 32, and the additions of
  the ``nrp-ml-100k-averaged`` preset (a moving average of the weights, with and without
  dropout on the training rating vectors); and MF with the average or run up to 300 epochs
  (``VARIANT_MODELS``). Every seed.
- ``table`` (only alone): rewrite ``runs.md`` from ``runs.json`` and the resume checkpoints of
  ml-1m runs in progress, training nothing.
- ``speed`` (only alone): training speed of the NRP family against the baseline commit
  (:mod:`benchmarks.nrp_speed`), ``results/nrp/speed.{json,md}``.
- ``ml1m``: ml-1m converted by ``dataset_atomic movielens`` from ``../shared/data/raw/ml-1m``,
  presets ``nrp-ml-1m[-<model>]`` (Table 6's ml-1m rows, encoders [1000, 500, 300, 100]).
- ``ml1m-averaged``: NRP-direct on ml-1m with preset ``nrp-ml-1m-averaged`` (the additions of
  ``nrp-ml-100k-averaged``, RMSprop instead of Table 6's SGD); only when named in ``--only``.

Sizes. ``--quick`` checks the pipeline only: one seed, one epoch of narrow networks
(``QUICK_SIZES``), ml-1m with MF and NRP-direct only. The full size is an *epoch budget*,
not the paper's run-to-convergence: at most ``FULL_EPOCHS[model]`` epochs with early
stopping after ``FULL_STOPPING`` validation epochs without improvement, best validation
checkpoint tested. Runs go in priority order (see :func:`plan`): NRP-direct and MF first,
the autoencoder models on seed 2020 only (extra seeds when named in ``--only``); ml-1m only
with ``--only ml1m`` (hours per run on CPU). A stopped suite resumes: finished runs are
skipped, and an ml-1m run stopped part-way continues from its last best checkpoint
(``saved/benchmarks/resume/<size>/<part>-<model>-<seed>/``; the epochs after that checkpoint
are trained again, and the record keeps the whole epoch history). On a shared 2-core CPU run
with ``OMP_NUM_THREADS=1``, one process per seed.

Paper numbers (Table 2, ml-100k/ml-1m, mean ± std over 3 splits; Table 5 for no side
information) are printed beside ours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.common import (
    CHECKPOINT_DIR,
    ResultStore,
    ensure_converted,
    ensure_ml100k,
    mean_std,
    newest_checkpoint,
    pyplot,
    run_one,
    save_figure,
)

MODELS = ["BiasedMF", "DHA", "NRPDHA", "ASDAE", "NRPaSDAE", "NRP"]
LABELS = {"BiasedMF": "MF", "DHA": "DHA", "NRPDHA": "NRP-DHA", "ASDAE": "aSDAE",
          "NRPaSDAE": "NRP-aSDAE", "NRP": "NRP-direct"}
ML1M_PRESETS = {"NRP": "nrp-ml-1m", "NRPaSDAE": "nrp-ml-1m-nrpasdae", "NRPDHA": "nrp-ml-1m-nrpdha",
                "ASDAE": "nrp-ml-1m-asdae", "DHA": "nrp-ml-1m-dha", "BiasedMF": "nrp-ml-1m-mf"}
# Table 2 (RMSE, precision % at p = 25, params as printed, seconds/epoch on the authors' GPU)
PAPER_TABLE2 = {
    "ml-100k": {"BiasedMF": ("0.940 ± 0.003", "68.4 ± 0.5", "(0, 0.26M)", "15"),
                "DHA": ("0.939 ± 0.002", "68.2 ± 0.6", "(8.6M, 0.26M)", "85"),
                "NRPDHA": ("0.926 ± 0.004", "68.4 ± 0.6", "(8.6M, 0)", "68"),
                "ASDAE": ("0.946 ± 0.005", "68.0 ± 1.1", "(13M, 0.26M)", "98"),
                "NRPaSDAE": ("0.910 ± 0.008", "69.0 ± 0.2", "(13M, 0)", "70"),
                "NRP": ("0.899 ± 0.006", "70.2 ± 0.4", "(4.7M, 0)", "42")},
    "ml-1m": {"BiasedMF": ("0.892 ± 0.004", "68.2 ± 0.3", "(0, 1M)", "45"),
              "DHA": ("0.865 ± 0.001", "69.3 ± 0.2", "(44M, 1M)", "1097"),
              "NRPDHA": ("0.855 ± 0.002", "69.6 ± 0.2", "(44M, 0)", "1027"),
              "ASDAE": ("0.879 ± 0.005", "69.0 ± 0.1", "(66M, 1M)", "1155"),
              "NRPaSDAE": ("0.877 ± 0.008", "68.5 ± 0.4", "(66M, 0)", "1055"),
              "NRP": ("0.851 ± 0.001", "70.0 ± 0.1", "(22M, 0)", "640")},
}
PAPER_TABLE5 = {"NRP": ("0.901 ± 0.006", "69.9 ± 0.43")}  # ml-100k, no side information
PAPER_TABLE3_ML1M_P10 = {"BiasedMF": "55.6", "DHA": "57.4", "NRPDHA": "57.3", "ASDAE": "56.4",
                         "NRPaSDAE": "57.1", "NRP": "58.1"}
FULL_SEEDS = [2020, 2021, 2022]
AUTOENCODERS = ["DHA", "NRPDHA", "ASDAE", "NRPaSDAE"]
# Epoch budget of the full size (CPU-bound: measured on one thread, ml-100k, batch 256,
# NRP-direct ~20 CPU-s per epoch, each autoencoder model ~45-55, MF ~0.5).
# NRP-direct's validation RMSE bottoms out after 4-8 epochs (seed 2020, table2 settings).
FULL_EPOCHS = {"BiasedMF": 40, "NRP": 20, **{m: 3 for m in AUTOENCODERS}}
# ml-1m (part ml1m): an NRP-direct epoch takes about 8 CPU minutes on one thread
# (results/nrp/speed.md), so NRP-direct gets up to 30 epochs; MF runs to convergence
ML1M_EPOCHS = {"BiasedMF": 300, "NRP": 30, **{m: 10 for m in AUTOENCODERS}}
# variant label -> settings on top of the table2 preset (part ``variants``); the model is
# NRP-direct unless VARIANT_MODELS names another
AVERAGED_PRESET = "nrp-ml-100k-averaged"
ML1M_AVERAGED_PRESET = "nrp-ml-1m-averaged"
ML1M_PARTS = ("ml1m", "ml1m-averaged")


def preset_additions(preset: str, base: str = "nrp-ml-100k") -> dict:
    """The keys of ``preset`` that ``base`` lacks or sets differently (one source for both)."""
    from recbole_ext.config import load_yaml_file, resolve_preset

    extra, plain = load_yaml_file(resolve_preset(preset)), load_yaml_file(resolve_preset(base))
    return {k: v for k, v in extra.items() if plain.get(k, object()) != v}


VARIANTS = {"NRP-direct, target masked": {"mask_target_rating": True},
            # the paper trains with Keras and gives no batch size: Keras' default is 32
            "NRP-direct, batch 32": {"train_batch_size": 32},
            "NRP-direct, weight average": {"weight_averaging": 0.999, "clip_predictions": True},
            "NRP-direct, weight average + input dropout": {"weight_averaging": 0.999, "clip_predictions": True,
                                                           "rating_input_dropout": 0.25},
            f"NRP-direct, weight average + input dropout, lr 5e-4 ({AVERAGED_PRESET})":
                preset_additions(AVERAGED_PRESET),
            # the same averaging for the MF baseline, so the ranking is not an averaging effect
            "MF, weight average": {"weight_averaging": 0.999},
            # MF is still improving at its 40-epoch budget (validation RMSE -0.0005 per epoch)
            "MF, up to 300 epochs": {"epochs": 300},
            # the autoencoder NRP models past the table's 3-epoch budget, to early stopping
            "NRP-DHA, up to 20 epochs": {"epochs": 20},
            "NRP-aSDAE, up to 20 epochs": {"epochs": 20}}
VARIANT_MODELS = {"MF, weight average": "BiasedMF", "MF, up to 300 epochs": "BiasedMF",  # not NRP-direct
                  "NRP-DHA, up to 20 epochs": "NRPDHA", "NRP-aSDAE, up to 20 epochs": "NRPaSDAE"}
VARIANT_KEYS = {label: f"variant{i}" for i, label in enumerate(VARIANTS, 1)}
FULL_STOPPING = 3
RESUME_DIR = CHECKPOINT_DIR / "resume"
QUICK_EPOCHS = 1
# --quick checks the pipeline only: one epoch of narrow networks (numbers are not comparable)
QUICK_SIZES = {"encoder_layers": [32, 16], "prediction_layers": [16, 1], "embedding_size": 16}


def summary(result: dict) -> dict:
    """The numbers the tables need from one ``run_recbole_ext`` result."""
    test, timings = result["test_result"], result["timings"]
    epochs = timings["train_epoch_seconds"]
    return {"rmse": test["rmse"], "mae": test["mae"],
            "prec25": test.get("ratingprecision@25"), "prec10": test.get("ratingprecision@10"),
            "prec25_incl": test.get("ratingprecisioninclusive@25"),
            "prec10_incl": test.get("ratingprecisioninclusive@10"),
            "valid_rmse": result["best_valid_result"]["rmse"], "n_params": result["n_params"],
            "sec_per_epoch": float(np.mean(epochs)) if epochs else None,
            "epochs_trained": timings["epochs_trained"], "fit_seconds": timings["fit_seconds"],
            "valid_history": [entry[1].get("rmse") for entry in result.get("valid_history") or []]}


def plan(quick: bool, seeds: list[int] | None, only: list[str] | None) -> list[tuple[str, str, int]]:
    """``(part, model, seed)`` runs, most important first, so a stopped suite has the key rows.

    Full size: NRP-direct and MF on the first seed, NRP-direct without side information
    (Table 5), the other seeds of NRP-direct and MF, the four autoencoder models on the
    first seed (on every seed only when named in ``--only``), the other seeds of Table 5;
    ml-1m only with ``--only ml1m`` (one epoch of NRP-direct with [32, 16] encoders took
    432 s on our shared CPU; the paper's [1000, 500, 300, 100] encoders cost far more).
    """
    seeds = seeds or (FULL_SEEDS[:1] if quick else FULL_SEEDS)
    first, rest = seeds[:1], seeds[1:]
    direct = ["NRP", "BiasedMF"]
    encoders = ["NRPaSDAE", "ASDAE", "NRPDHA", "DHA"]
    if quick:
        jobs = [("table2", m, s) for s in first for m in direct + encoders]
        jobs += [("noside", "NRP", s) for s in first]
        jobs += [("ml1m", m, s) for s in first for m in direct]
    else:
        named = only is not None and any(m in only for m in AUTOENCODERS)
        jobs = [("table2", m, s) for s in first for m in direct] + [("noside", "NRP", s) for s in first]
        jobs += [("table2", m, s) for s in rest for m in direct]
        jobs += [("table2", m, s) for s in (seeds if named else first) for m in encoders]
        jobs += [("noside", "NRP", s) for s in rest]
        jobs += [("variants", label, s) for label in VARIANTS for s in seeds
                 if VARIANT_MODELS.get(label) not in AUTOENCODERS or s == seeds[0]]
        if only is not None and "ml1m" in only:  # hours per run on CPU: only when asked for
            jobs += [("ml1m", m, s) for s in seeds for m in direct]
            jobs += [("ml1m", m, s) for s in (seeds if named else first) for m in encoders]
        if only is not None and "ml1m-averaged" in only:
            jobs += [("ml1m-averaged", "NRP", s) for s in seeds]
    parts = [p for p in ("table2", "noside", "variants", *ML1M_PARTS) if only and p in only]
    models = [m for m in MODELS if only and m in only]
    variants = [label for label, key in VARIANT_KEYS.items() if only and key in only]
    if variants:
        return [(p, m, s) for p, m, s in jobs if p == "variants" and m in variants]
    return [(p, m, s) for p, m, s in jobs
            if (not parts or p in parts) and (not models or m in models or (p == "variants" and "NRP" in models))]


def settings_for(model: str, quick: bool, part: str = "table2") -> dict:
    if quick:
        return {"epochs": QUICK_EPOCHS, "stopping_step": QUICK_EPOCHS, **QUICK_SIZES}
    budget = ML1M_EPOCHS if part in ML1M_PARTS else FULL_EPOCHS
    return {"epochs": budget[model], "stopping_step": FULL_STOPPING}


def run_jobs(store: ResultStore, jobs: list[tuple[str, str, int]], quick: bool) -> None:
    for part, label, seed in jobs:
        model = VARIANT_MODELS.get(label, "NRP") if part == "variants" else label
        key = f"{part}/{VARIANT_KEYS.get(label, label)}/{seed}"
        if store.done(key):
            continue
        settings = {"seed": seed, **settings_for(model, quick, part), **VARIANTS.get(label, {})}
        if part in ML1M_PARTS:
            dataset = ensure_converted("movielens", "ml-1m", "ml-1m")
            preset = ML1M_AVERAGED_PRESET if part == "ml1m-averaged" else ML1M_PRESETS[model]
        else:
            dataset, preset = ensure_ml100k(), "nrp-ml-100k"
            if part == "noside":
                settings["use_side_info"] = False
        # an ml-1m NRP run takes hours: it keeps its checkpoints apart so a stopped run resumes
        folder = resume_folder(key, quick) if part in ML1M_PARTS else None
        record = summary(run_one(model, dataset, settings, preset=preset, resume_folder=folder))
        store.add(key, record | {"part": part, "model": model, "label": LABELS.get(label, label), "seed": seed,
                                 "dataset": dataset})
        write_table(store, quick)


def _agg(records: list[dict], key: str, scale: float = 1.0) -> str:
    values = [r[key] * scale for r in records if r.get(key) is not None]
    return mean_std(values)


def write_table(store: ResultStore, quick: bool) -> None:
    rows = []
    for part, dataset in (("table2", "ml-100k"), ("noside", "ml-100k"), ("variants", "ml-100k"),
                          ("ml1m", "ml-1m"), ("ml1m-averaged", "ml-1m")):
        for model in (VARIANTS if part == "variants" else MODELS):
            records = [r for r in store.records.values()
                       if r["part"] == part and r.get("label" if part == "variants" else "model") == model]
            if not records:
                continue
            paper = PAPER_TABLE2[dataset].get(model, ("", "", "", ""))
            if part == "noside":
                paper = (*PAPER_TABLE5.get(model, ("", "")), "", "")
            elif part == "variants":
                paper = PAPER_TABLE2[dataset][VARIANT_MODELS.get(model, "NRP")]
            params = f"{np.mean([r['n_params'] for r in records]) / 1e6:.2f}M"
            seconds = _agg(records, "sec_per_epoch").split(" ±")[0]
            epochs = "/".join(str(r["epochs_trained"]) for r in sorted(records, key=lambda r: r["seed"]))
            trained = VARIANT_MODELS.get(model, "NRP") if part == "variants" else model
            budget = {**settings_for(trained, quick, part), **VARIANTS.get(model, {})}["epochs"]
            label = LABELS.get(model, model) + (f" ({ML1M_AVERAGED_PRESET})" if part == "ml1m-averaged" else "")
            rows.append([dataset, "no" if part == "noside" else "yes", label, len(records),
                         _agg(records, "rmse"), _agg(records, "prec25", 100), _agg(records, "prec25_incl", 100),
                         _agg(records, "prec10", 100), _agg(records, "prec10_incl", 100),
                         _agg(records, "mae"), params, seconds, budget, epochs, paper[0], paper[1], paper[2], paper[3]])
    size = (f"quick (pipeline check only): {QUICK_EPOCHS} epoch, one seed, narrow networks {QUICK_SIZES}"
            if quick else
            f"full, an epoch budget per row (column 'epoch budget'; ml-100k {FULL_EPOCHS}, ml-1m "
            f"{ML1M_EPOCHS}), early stopping after {FULL_STOPPING} epochs without a better validation RMSE, "
            f"best validation checkpoint tested")
    notes = f"""
Size: {size}. Each seed draws its own random 80/10/10 split of all ratings and its own initial
weights (RecBole `RS` split, `RO` order); "± std" is the population std over the seeds.
precision@p% is Eq. 8 of the paper (each test user's rated test items ranked by predicted rating,
relevant = the top p% by true rating, k = ceil(p% of the user's test items)); Table 2's precision
column matches its p = 25% figures in Table 3. "prec" breaks ties in the true ratings by split order
(exactly k relevant items); "incl." counts every item rated at least the k-th highest true rating
as relevant. The paper does not say which; its 68-70% band is only reachable with the inclusive
reading (see recbole_ext/evaluator/rating_metrics.py). Seconds per epoch: our CPU (one thread,
OMP_NUM_THREADS=1, a shared 2-core machine), the paper's: a 12 GB GPU. Our parameter count is the
whole model; the paper splits it into (network, MF factors). The "no" side-info rows are compared
with Table 5 (NRP-direct only).

DHA and aSDAE (MF terms, Eq. 1) predict with mu + U_j V_k^T (mu: the mean training rating). Their U,V
step is per-rating SGD at 0.05 with Eq. 1's tie terms spread over each row's ratings, and their
network step is clipped at gradient norm 1 (recbole_ext/model/general_recommender/_autoencoders.py
says which detail is the paper's). A batch-mean U,V step at 0.1 without mu had left U V^T near zero
(test RMSE 3.5-3.7 after 3 epochs). Under the 3-epoch budget NRP-DHA / NRP-aSDAE were still improving,
so the NRP-X vs X rows do not settle Table 2's claim either way.

Variants (NRP-direct, same protocol and budget, every seed): "target masked" leaves the rating being
predicted out of both training input vectors (`mask_target_rating: True`). Without it a training
pair sees its own rating in the user's row and the item's column, which a test pair never does;
the paper does not say which it did. "batch 32" is Keras' default batch size (seed 2020 only:
unstable, 60 s per epoch). "weight average" validates, saves and tests an exponential moving
average of the weights (`weight_averaging: 0.999`, predictions clamped to 1-5); "+ input dropout"
also drops each training rating-vector entry with p = 0.25; "lr 5e-4" halves RMSprop's learning
rate (all three: preset `nrp-ml-100k-averaged`). None of these is in the paper. "MF, weight
average" gives BiasedMF (Table 6's SGD at 0.1) the same averaged weights; "MF, up to 300 epochs"
lets it run to early stopping; "NRP-DHA / NRP-aSDAE, up to 20 epochs" run the two autoencoder NRP
models past the table's 3-epoch budget to early stopping (first seed only). Validation RMSE per epoch
is in `runs.json` (`valid_history`).

Command: `OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python -m benchmarks nrp{' --quick' if quick else ''}`
(`--only table2 noside variants ml1m ml1m-averaged`, model names or variant keys `variant1`...; `--seeds` to change the seeds).
"""
    histories = unfinished_histories(store, quick)
    notes += runs_in_progress(histories)
    if not quick:
        plot_ml1m_curves(store, histories)
    header = ["dataset", "side info", "model", "seeds", "RMSE", "prec@25% (%)", "prec@25% incl. (%)",
              "prec@10% (%)", "prec@10% incl. (%)", "MAE",
              "params", "s/epoch (ours)", "epoch budget", "epochs", "paper RMSE", "paper prec (%)", "paper params",
              "paper s/epoch"]
    store.write_markdown("NRP family on MovieLens (seed 003, arXiv:2010.06070, Tables 2 and 5)",
                         header, rows, notes)


def resume_folder(key: str, quick: bool) -> Path:
    """Where run ``key`` keeps its checkpoints (--quick apart: its smaller layers cannot resume a
    full-size checkpoint)."""
    return _resume_root(quick) / key.replace("/", "-")


def _resume_root(quick: bool) -> Path:
    return RESUME_DIR / ("quick" if quick else "full")


def unfinished_histories(store: ResultStore, quick: bool) -> dict[str, list[float]]:
    """Validation RMSE by epoch of the ml-1m runs not finished yet, from their resume checkpoints."""
    from recbole_ext.checkpoint import load_checkpoint

    finished = {resume_folder(key, quick).name for key in store.records}
    histories = {}
    for folder in sorted(_resume_root(quick).glob("*")):
        newest = newest_checkpoint(folder)
        if newest is None or folder.name in finished:
            continue
        ckpt = load_checkpoint(newest, "cpu")
        history = [entry[1]["rmse"] for entry in ckpt.get("history", {}).get("valid_history", [])]
        if history:
            histories[folder.name] = history
    return histories


def runs_in_progress(histories: dict[str, list[float]]) -> str:
    if not histories:
        return ""
    lines = [f"- `{name}`: best validation RMSE {min(h):.4f} after epoch {h.index(min(h)) + 1}; "
             f"by epoch: {', '.join(f'{v:.4f}' for v in h)}" for name, h in histories.items()]
    return ("\nml-1m runs not finished when this table was written (`python -m benchmarks nrp --only <part>` "
            "resumes each from the checkpoint of its best epoch so far):\n" + "\n".join(lines) + "\n")


def plot_ml1m_curves(store: ResultStore, histories: dict[str, list[float]]) -> None:
    """Validation RMSE by epoch of the ml-1m NRP runs (finished or not) against MF and the paper."""
    curves = {resume_folder(key, False).name: r["valid_history"] for key, r in store.records.items()
              if r["part"] in ML1M_PARTS and r["model"] != "BiasedMF" and r.get("valid_history")}
    curves.update(histories)
    if not curves:
        return
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, history in sorted(curves.items()):
        part, model, seed = name.rsplit("-", 2)
        preset = ML1M_AVERAGED_PRESET if part == "ml1m-averaged" else ML1M_PRESETS[model]
        ax.plot(range(1, len(history) + 1), history, marker="o", markersize=3, label=f"{preset}, seed {seed}")
    mf = [r["valid_rmse"] for r in store.records.values() if r["part"] == "ml1m" and r["model"] == "BiasedMF"]
    if mf:
        ax.axhline(float(np.mean(mf)), color="grey", linestyle="--",
                   label=f"MF to convergence, best validation (mean of {len(mf)})")
    ax.axhline(0.851, color="black", linestyle=":", label="paper NRP-direct test RMSE (0.851)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation RMSE")
    ax.set_title("NRP-direct on ML-1M: validation RMSE by epoch")
    ax.legend(fontsize=7)
    save_figure(fig, store.path("ml1m-curves.png"))


def main(args) -> None:
    if args.only == ["table"]:  # rewrite the table from the stored records, training nothing
        write_table(ResultStore("nrp", "runs", quick=args.quick, resume=True), args.quick)
        return
    if args.only == ["speed"]:  # the training-speed comparison with the baseline commit
        from benchmarks import nrp_speed

        nrp_speed.main(["--quick"] if args.quick else nrp_speed.ARGUMENTS)
        return
    store = ResultStore("nrp", "runs", quick=args.quick, resume=args.resume)
    run_jobs(store, plan(args.quick, args.seeds, args.only), args.quick)
    write_table(store, args.quick)
