"""Speed of ``run_recbole_ext.py --recommend --all-users`` against a loop over RecBole's case study.

Goal (issue 20, a benchmark, not a test): top-10 for all 6,040 ML-1M users from a BPR
checkpoint in under 10 s on 2 cores, loading included.

Every figure is the wall time of a whole subprocess (interpreter start, imports, checkpoint
and dataset loading, scoring, writing the CSV):

- ``recommend, cold``: no cache next to the checkpoint: the dataset is rebuilt with RecBole's
  ``create_dataset`` + ``data_preparation`` and the cache is written (the first call);
- ``recommend, cached``: the usual case, the cache written by the first call is read;
- ``recommend, --no-cache``: the dataset is rebuilt every time, no cache read or written;
- ``RecBole full_sort_topk loop``: what RecBole's FAQ answer amounts to: the data and model
  reloaded (``recbole_ext.load_data_and_model``: RecBole's own cannot read checkpoints on
  torch >= 2.6), then ``recbole.utils.case_study.full_sort_topk`` called once per user with
  the validation loader (whose history is the training split, the same items ``--recommend``
  leaves out) and the internal ids mapped to tokens, one CSV written. The same loop with 1,024
  users per call is reported too.

The benchmark also checks that both give the same top-10 lists.

Usage::

    python -m benchmarks recommend [--quick] [--fresh]

Five runs per variant (``--quick``: two); ``--fresh`` trains a new 1-epoch BPR checkpoint
instead of reusing the last one. Writes ``benchmarks/results/[quick/]recommend/speed.{json,md}``.
The suite (``benchmarks/suites/recommend.py``) calls :func:`measure`; this module also holds the
subprocess entry points the measurement starts (``python -m benchmarks.recommend_speed``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import CHECKPOINT_DIR as BENCHMARK_CHECKPOINTS
from benchmarks.common import DATASET_DIR, REPO_ROOT, ResultStore, ensure_converted, newest_checkpoint

CHECKPOINT_DIR = BENCHMARK_CHECKPOINTS / "recommend"
SCRIPT = REPO_ROOT / "run_recbole_ext.py"
TOPK = 10


def train_checkpoint(fresh: bool) -> str:
    """The newest BPR ML-1M checkpoint under ``saved/benchmarks/recommend`` (trained if none)."""
    existing = newest_checkpoint(CHECKPOINT_DIR, "BPR-ml-1m-*.pth")
    if existing and not fresh:
        return str(existing)
    from recbole_ext.quick_start import run_recbole_ext

    ensure_converted("movielens", "ml-1m", "ml-1m")
    result = run_recbole_ext(model="BPR", dataset="ml-1m", config_dict={
        "data_path": str(DATASET_DIR), "checkpoint_dir": str(CHECKPOINT_DIR), "epochs": 1,
        "use_gpu": False, "show_progress": False, "state": "ERROR"})
    return result["checkpoint"]


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    return seconds


def run_json(args: list[str], env: dict) -> dict:
    """Run this module in another process with ``args``; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.recommend_speed", *args], capture_output=True,
                          text=True, env=env, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def recommend_command(checkpoint: str, output: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), "--recommend", checkpoint, "--all-users", "--topk", str(TOPK),
            "--output", str(output), *extra]


def baseline(checkpoint: str, output: str, batch: int) -> None:
    """The RecBole case-study loop (run in its own process by :func:`main`)."""
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    import pandas as pd
    import torch
    from recbole.utils import init_seed
    from recbole.utils.case_study import full_sort_topk

    from recbole_ext.checkpoint import load_checkpoint, load_model_state
    from recbole_ext.config import config_from_checkpoint
    from recbole_ext.data import create_dataset, data_preparation
    from recbole_ext.quick_start import build_model

    # recbole_ext.load_data_and_model, step by step to time its parts
    start = time.perf_counter()
    ckpt = load_checkpoint(checkpoint)
    config = config_from_checkpoint(ckpt, {"state": "ERROR"})
    init_seed(config["seed"], config["reproducibility"])
    config_done = time.perf_counter()
    dataset = create_dataset(config)
    created = time.perf_counter()
    train_data, valid_data, _ = data_preparation(config, dataset)
    prepared = time.perf_counter()
    init_seed(config["seed"], config["reproducibility"])
    model = build_model(config, train_data._dataset)
    load_model_state(model, ckpt, checkpoint, config["dataset"])
    model.eval()
    loaded = time.perf_counter()
    uids = np.arange(1, dataset.user_num)
    users, items, scores = [], [], []
    with torch.no_grad():
        for begin in range(0, len(uids), batch):
            chunk = uids[begin:begin + batch]
            values, index = full_sort_topk(chunk, model, valid_data, k=TOPK)
            users.append(np.repeat(chunk, TOPK))
            items.append(index.numpy().ravel())
            scores.append(values.numpy().ravel())
    frame = pd.DataFrame({
        "user_id": dataset.id2token(dataset.uid_field, np.concatenate(users)),
        "rank": np.tile(np.arange(1, TOPK + 1), len(uids)),
        "item_id": dataset.id2token(dataset.iid_field, np.concatenate(items)),
        "score": np.concatenate(scores)})
    frame.to_csv(output, index=False)
    print(json.dumps({"load_seconds": loaded - start, "loop_seconds": time.perf_counter() - loaded,
                      "config_seconds": config_done - start, "create_dataset_seconds": created - config_done,
                      "data_preparation_seconds": prepared - created}))


def phases(checkpoint: str, output: str) -> None:
    """Where the time of a cached ``--recommend --all-users`` goes (run in its own process)."""
    start = time.perf_counter()
    import warnings

    warnings.filterwarnings("ignore")
    import recbole_ext.recommend as rec
    from recbole_ext.checkpoint import load_checkpoint
    from recbole_ext.config import config_from_checkpoint

    imported = time.perf_counter()
    config_from_checkpoint(load_checkpoint(checkpoint), {"state": "ERROR"})
    config_done = time.perf_counter()
    recommender = rec.Recommender.from_checkpoint(checkpoint)
    loaded = time.perf_counter()
    frame = recommender.recommend(topk=TOPK)
    ranked = time.perf_counter()
    rec.write_frame(frame, Path(output))
    print(json.dumps({"imports": imported - start, "config_rebuild": config_done - imported,
                      "load_with_cache_incl_config": loaded - config_done, "score_and_rank": ranked - loaded,
                      "write_csv": time.perf_counter() - ranked}))


def same_lists(ours: Path, theirs: Path) -> dict:
    """How many users get the same top-k from both (ties may swap; compared as item sets too)."""
    import pandas as pd

    a = pd.read_csv(ours, dtype={"user_id": str, "item_id": str})
    b = pd.read_csv(theirs, dtype={"user_id": str, "item_id": str})
    lists_a = a.groupby("user_id")["item_id"].apply(list)
    lists_b = b.groupby("user_id")["item_id"].apply(list)
    common = lists_a.index.intersection(lists_b.index)
    same_order = sum(lists_a[u] == lists_b[u] for u in common)
    same_set = sum(set(lists_a[u]) == set(lists_b[u]) for u in common)
    merged = a.merge(b, on=["user_id", "rank"], suffixes=("_ours", "_recbole"))
    return {"users": len(common), "same_order": int(same_order), "same_set": int(same_set),
            "max_score_difference": float((merged["score_ours"] - merged["score_recbole"]).abs().max())}


def main(argv: list[str] | None = None) -> int:
    """The subprocesses :func:`measure` starts: the RecBole loop, and the cached phases."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", nargs=3, metavar=("CHECKPOINT", "OUTPUT", "BATCH"))
    parser.add_argument("--phases", nargs=2, metavar=("CHECKPOINT", "OUTPUT"))
    args = parser.parse_args(argv)
    if args.baseline:
        baseline(args.baseline[0], args.baseline[1], int(args.baseline[2]))
    elif args.phases:
        phases(*args.phases)
    else:
        parser.error("run the measurement as `python -m benchmarks recommend`")
    return 0


def measure(n_runs: int, fresh: bool) -> dict:
    """Every variant ``n_runs`` times, round robin; the record of :func:`write_results`."""
    checkpoint = train_checkpoint(fresh)
    cache = Path(checkpoint + ".recommend-cache")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    load_at_start = os.getloadavg()
    runs: dict[str, list[float]] = {}
    loop_phases: dict[str, list[dict]] = {}
    cached_phases = []
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp) / "ours.csv", Path(tmp) / "theirs.csv"
        # round robin, so that the load of the shared machine weighs on every variant alike
        for _ in range(n_runs):
            cache.unlink(missing_ok=True)
            runs.setdefault("recommend, cold (dataset rebuilt, cache written)", []).append(
                timed(recommend_command(checkpoint, ours), env))
            runs.setdefault("recommend, cached", []).append(timed(recommend_command(checkpoint, ours), env))
            runs.setdefault("recommend, --no-cache (dataset rebuilt)", []).append(
                timed(recommend_command(checkpoint, ours, "--no-cache"), env))
            for batch, label in ((1, "RecBole full_sort_topk loop, 1 user per call"),
                                 (1024, "RecBole full_sort_topk loop, 1024 users per call")):
                start = time.perf_counter()
                out = run_json(["--baseline", checkpoint, str(theirs), str(batch)], env)
                runs.setdefault(label, []).append(time.perf_counter() - start)
                loop_phases.setdefault(label, []).append(out)
            cached_phases.append(run_json(["--phases", checkpoint, str(ours)], env))
        agreement = same_lists(ours, theirs)

    record = {
        "checkpoint": Path(checkpoint).name, "dataset": "ml-1m", "model": "BPR (1 epoch)", "topk": TOPK,
        "users": agreement["users"], "runs": {k: [round(v, 3) for v in vs] for k, vs in runs.items()},
        "baseline_phases": {k: [{p: round(s, 3) for p, s in r.items()} for r in rs]
                            for k, rs in loop_phases.items()},
        "cached_phases": [{p: round(v, 3) for p, v in r.items()} for r in cached_phases],
        "agreement": agreement, "cache_bytes": cache.stat().st_size if cache.exists() else None,
        "machine": {"cpus": os.cpu_count(), "omp_threads": env["OMP_NUM_THREADS"],
                    "python": platform.python_version(), "load_average_start": load_at_start,
                    "load_average_end": os.getloadavg()},
        "command": "python -m benchmarks recommend", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return record


def write_results(store: ResultStore) -> None:
    record = store.records["ml-1m"]
    lines = ["# Recommendations: top-10 for every ML-1M user from a BPR checkpoint", "",
             "Wall seconds of the whole process (interpreter start, imports, loading, scoring, "
             f"CSV of {record['users'] * record['topk']:,} rows); best and median of "
             f"{len(next(iter(record['runs'].values())))} runs, the variants taking turns.", "",
             "| variant | best s | median s | runs |", "|---|---|---|---|"]
    for label, values in record["runs"].items():
        ordered = sorted(values)
        lines.append(f"| {label} | {ordered[0]:.2f} | {ordered[len(ordered) // 2]:.2f} | "
                     f"{', '.join(f'{v:.2f}' for v in values)} |")
    lines += ["", "RecBole loop phases, seconds per run (reload = config + `create_dataset` + "
              "`data_preparation` + model; then the loop with the token mapping):", ""]
    for label, runs in record["baseline_phases"].items():
        lines.append(f"- {label}: " + "; ".join(
            f"reload {p['load_seconds']:.2f} (config {p['config_seconds']:.2f}, create_dataset "
            f"{p['create_dataset_seconds']:.2f}, data_preparation {p['data_preparation_seconds']:.2f}) "
            f"+ loop {p['loop_seconds']:.2f}" for p in runs))
    lines += ["", "Cached `--recommend` phases, seconds per run (in-process, so without the CLI's "
              "argument parsing; the config is rebuilt twice here to time it alone):", ""]
    for p in record["cached_phases"]:
        lines.append("- " + ", ".join(f"{name.replace('_', ' ')} {value:.2f}" for name, value in p.items()))
    agreement = record["agreement"]
    machine = record["machine"]
    lines += ["", f"Same top-10 as RecBole's case study (validation loader: training items left out): "
              f"{agreement['same_order']}/{agreement['users']} users in the same order, "
              f"{agreement['same_set']}/{agreement['users']} as sets; largest score difference "
              f"{agreement['max_score_difference']:.2e}.", "",
              f"Cache file: {record['cache_bytes']:,} bytes next to the checkpoint." if record["cache_bytes"]
              else "No cache file was written.", "",
              f"Machine: {machine['cpus']} CPUs, OMP_NUM_THREADS={machine['omp_threads']}, Python "
              f"{machine['python']}; load average (1, 5, 15 min) at the start "
              f"{', '.join(f'{x:.1f}' for x in machine['load_average_start'])}, at the end "
              f"{', '.join(f'{x:.1f}' for x in machine['load_average_end'])} "
              "(the machine is shared; figures are pessimistic).", "",
              f"Command: `{record['command']}` ({record['date']}); checkpoint: {record['checkpoint']}."]
    store.file("md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
