"""The GPU path in one command: ``make gpu-check`` (= ``python -m benchmarks gpu``).

Run it after ``make test``'s set-up on a machine with a CUDA GPU; ``make gpu-check`` first
replaces the CPU build of the pinned torch by its CUDA build where one is needed. Parts, each
recorded as ok / failed / skipped with its seconds and a one-line detail:

- ``environment``: torch, CUDA, the GPU's name and count;
- ``contract``: ``tests/test_model_contract.py`` and ``tests/test_device_agnostic.py`` with
  ``RECBOLE_EXT_TEST_GPU=1`` (every registered model trains, evaluates, checkpoints, reloads and
  resumes on ``cuda``; a checkpoint written on the GPU gives the same predictions on the CPU);
- ``smoke``: the ``smoke`` suite (its runs use the GPU when present);
- ``timing``: one training epoch plus one validation pass of each plugin model and its RecBole
  counterpart built on the same data in one process: KNI vs KGCN (Book-Crossing), C2F and LEGCF
  vs LightGCN (Gowalla, all users), RNNCCE vs GRU4Rec (ML-1M, Devooght split), NRP vs BiasedMF
  (ML-1M), DLR2 (ML-1M), and BPR with LEPORID initialisation (ML-1M, initialisation time
  included); each plugin epoch is also given as a ratio to its counterpart's;
- ``ddp``: a 2-process DDP run (on one GPU when only one is present: gloo, the processes share
  it; on two GPUs: nccl).

``--quick`` (about a minute): the tiny generated dataset for every ``timing`` pair, the smoke
suite's quick size, and the contract tests skipped. Without a GPU the suite runs what it can on
the CPU and says so in every row and in the table's first line. Results:
``benchmarks/results/[quick/]gpu/check.{json,md}`` (``RECBOLE_EXT_BENCH_RESULTS`` moves them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback

from benchmarks.common import DATASET_DIR, REPO_ROOT, ResultStore, base_run_config, ensure_converted

# label -> (model, dataset key, extra config); counterparts come right after their plugin model
PAIRS = {
    "KNI": ("KNI", "book-crossing", {}), "KGCN": ("KGCN", "book-crossing", {"labeled_protocol": True}),
    "C2F": ("C2F", "gowalla", {"stage": "coarse"}), "LEGCF": ("LEGCF", "gowalla", {}),
    "LightGCN": ("LightGCN", "gowalla", {}),
    "RNNCCE": ("RNNCCE", "ml-1m-devooght", {}), "GRU4Rec": ("GRU4Rec", "ml-1m-devooght", {}),
    "NRP": ("NRP", "ml-1m", {}), "BiasedMF": ("BiasedMF", "ml-1m", {}),
    "DLR2": ("DLR2", "ml-1m-implicit", {"dlr2_batches_per_epoch": 200}),
    "BPR+LEPORID": ("BPR", "ml-1m-implicit", {"embedding_init": "leporid", "embedding_init_std": 0.1,
                                              "embedding_size": 64}),
}
COUNTERPART = {"KNI": "KGCN", "C2F": "LightGCN", "LEGCF": "LightGCN", "RNNCCE": "GRU4Rec", "NRP": "BiasedMF"}
PRESETS = {"book-crossing": "kni-book-crossing", "gowalla": "c2f-gowalla", "ml-1m-devooght": "rnncce-ml-1m-d100-tied",
           "ml-1m": "nrp-ml-1m", "ml-1m-implicit": "leporid-ml-1m"}


def gpu_info() -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "gpus": torch.cuda.device_count()}
    if info["gpus"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def full_data(key: str) -> tuple[str, str | None]:
    """``(dataset, preset)`` of a timing pair's full-size data, converted on first use."""
    if key == "book-crossing":
        return ensure_converted("ripplenet-kg", "book-crossing-kg", "book-crossing-kni", min_relation_triples=100), PRESETS[key]
    if key == "gowalla":
        return ensure_converted("lightgcn", "gowalla", "gowalla", valid_from_test="1/3", seed=2020), PRESETS[key]
    ensure_converted("movielens", "ml-1m", "ml-1m")
    if key == "ml-1m-devooght":
        from benchmarks.suites.rnncce import ensure_devooght_ml1m

        return ensure_devooght_ml1m(None), PRESETS[key]
    return "ml-1m", PRESETS[key]


def tiny_data() -> str:
    """The generated test fixture (tests/conftest.py) under the dataset folder."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from conftest import write_tiny_dataset

    if not (DATASET_DIR / "tiny" / "tiny.inter").is_file():
        write_tiny_dataset(DATASET_DIR)
    return "tiny"


def tiny_settings(model: str) -> dict:
    """The contract test's settings for ``model`` on the tiny fixture (KGCN: KNI's labelled ones)."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from contract_settings import MODEL_OVERRIDES
    from test_model_contract import FAMILY_DEFAULTS, RANKING

    from recbole_ext import get_model

    if model == "KGCN":  # pairwise on KNI's labelled split: positives only, sampled negatives
        return {**MODEL_OVERRIDES["KNI"], "train_neg_sample_args": {
            "distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False, "candidate_num": 0}}
    return {**FAMILY_DEFAULTS.get(get_model(model).type, RANKING), **MODEL_OVERRIDES.get(model, {})}


def time_epoch(label: str, quick: bool) -> dict:
    """One training epoch and one validation pass of ``label``'s model, synchronised seconds."""
    import torch

    from recbole_ext.quick_start import prepare_run

    model, data_key, extra = PAIRS[label]
    if quick:
        dataset, preset, settings = tiny_data(), None, {**tiny_settings(model), **{
            k: v for k, v in extra.items() if k not in ("dlr2_batches_per_epoch",)}}
        if label == "BPR+LEPORID":
            settings["embedding_init_dim"] = settings["embedding_size"] = 8
    else:
        (dataset, preset), settings = full_data(data_key), dict(extra)
    config = base_run_config() | {"state": "ERROR", "epochs": 1, "dataset": dataset} | settings
    start = time.perf_counter()
    run = prepare_run(model, dataset, preset=preset, config_dict=config)
    build = time.perf_counter() - start
    trainer, sync = run.trainer, torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    start = time.perf_counter()
    trainer._train_epoch(run.train_data, 0, show_progress=False)
    sync()
    epoch = time.perf_counter() - start
    start = time.perf_counter()
    trainer._valid_epoch(run.valid_data, show_progress=False)
    sync()
    valid = time.perf_counter() - start
    record = {"model": model, "dataset": dataset, "device": str(run.config["device"]), "build_s": round(build, 3),
              "epoch_s": round(epoch, 3), "valid_s": round(valid, 3), "epoch_plus_valid_s": round(epoch + valid, 3)}
    if run.init_report:
        record["init_s"] = round(run.init_report["seconds"], 3)
    return record


def run_part(store: ResultStore, key: str, action) -> None:
    start = time.perf_counter()
    try:
        status, detail, extra = "ok", *action()
    except Exception as err:  # noqa: BLE001 - every failure is recorded; the script goes on
        status, detail, extra = "failed", f"{type(err).__name__}: {err}".splitlines()[0][:300], {
            "traceback": traceback.format_exc(limit=6)}
    if status == "ok" and detail.startswith("skipped"):
        status = "skipped"
    store.add(key, {"status": status, "seconds": round(time.perf_counter() - start, 1), "detail": detail, **extra})


def contract_tests(on_gpu: bool) -> tuple[str, dict]:
    if not on_gpu:
        return "skipped: no GPU (the CPU contract tests run in `make test`)", {}
    env = {**os.environ, "RECBOLE_EXT_TEST_GPU": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_model_contract.py",
                           "tests/test_device_agnostic.py"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=1800)
    summary = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    if proc.returncode != 0:
        raise RuntimeError(f"pytest exit {proc.returncode}: {summary}")
    return summary, {}


def smoke(quick: bool) -> tuple[str, dict]:
    env = {**os.environ, "RECBOLE_EXT_SMOKE_DATASET": tiny_data() if quick else "ml-100k",
           "RECBOLE_EXT_DATASET_DIR": str(DATASET_DIR)}
    # the tiny fixture has no timestamps for RNNCCE's sequences: the quick size checks the other two
    extra = ["--quick", "--only", "BPR", "BiasedMF"] if quick else []
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "smoke", "--fresh", *extra],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"smoke suite exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    return f"smoke suite ({'quick' if quick else 'full'} size) passed", {}


def ddp(on_gpu: bool, n_gpus: int) -> tuple[str, dict]:
    from recbole_ext.quick_start import run_recbole_ext_distributed

    dataset = tiny_data()
    config = base_run_config() | {"state": "ERROR", "epochs": 1, "dataset": dataset}
    result = run_recbole_ext_distributed(2, model="BPR", dataset=dataset, config_dict=config)
    how = ("2 GPUs, nccl" if n_gpus >= 2 else "2 processes sharing one GPU, gloo") if on_gpu else "CPU, gloo"
    return f"2-process DDP ({how}): world size {result['world_size']}, test {result['test_result']}", {
        "world_size": result["world_size"]}


def main(args) -> None:
    info = gpu_info()
    on_gpu = info["gpus"] > 0
    store = ResultStore("gpu", "check", quick=args.quick, resume=False)
    store.add("environment", {"status": "ok", "seconds": 0.0, **info, "detail": (
        f"{info['gpu']} x{info['gpus']}, torch {info['torch']}, CUDA {info['cuda_build']}" if on_gpu else
        f"no GPU: torch {info['torch']} (CUDA build: {info['cuda_build']}); everything below ran on the CPU")})
    run_part(store, "contract", lambda: contract_tests(on_gpu))
    run_part(store, "smoke", lambda: smoke(args.quick))
    for label in args.only or PAIRS:
        run_part(store, f"timing/{label}", lambda label=label: (f"{label} timed", time_epoch(label, args.quick)))
    run_part(store, "ddp", lambda: ddp(on_gpu, info["gpus"]))
    write_table(store, on_gpu, args.quick)
    failed = [key for key, rec in store.records.items() if rec["status"] == "failed"]
    print(f"gpu check: {len(store.records) - len(failed)} of {len(store.records)} parts ok or skipped"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    if failed:
        raise SystemExit(1)


def write_table(store: ResultStore, on_gpu: bool, quick: bool) -> None:
    records = store.records
    order = ["environment", "contract", "smoke", *(f"timing/{label}" for label in PAIRS), "ddp"]
    rows = []
    for key, rec in sorted(records.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99):
        if key.startswith("timing/") and rec["status"] == "ok":
            label = key.split("/", 1)[1]
            other = records.get(f"timing/{COUNTERPART.get(label)}")
            ratio = (f"{rec['epoch_plus_valid_s'] / other['epoch_plus_valid_s']:.2f}x {COUNTERPART[label]}"
                     if other and other["status"] == "ok" and other.get("epoch_plus_valid_s") else "")
            detail = (f"{rec['dataset']} on {rec['device']}: epoch {rec['epoch_s']} s + valid {rec['valid_s']} s"
                      + (f" (init {rec['init_s']} s)" if "init_s" in rec else ""))
            rows.append([key, rec["status"], f"{rec['seconds']:.1f}", detail, ratio])
        else:
            rows.append([key, rec["status"], f"{rec['seconds']:.1f}", rec["detail"], ""])
    where = records["environment"]["detail"]
    notes = (f"{'Quick size (tiny generated data): a pipeline check, not a timing.' if quick else 'Full size.'} "
             f"{where}. Ratio: the plugin model's epoch + validation seconds over its RecBole counterpart's, "
             "built on the same data in this run. Command: `make gpu-check"
             + (" ARGS=--quick" if quick else "") + "` (`python -m benchmarks gpu`).")
    store.write_markdown("GPU check" if on_gpu else "GPU check (no GPU: CPU only)",
                         ["part", "status", "seconds", "detail", "epoch + valid vs counterpart"], rows, notes)
