"""Training speed of the NRP family: this checkout against a baseline commit, interleaved.

``python -m benchmarks nrp --only speed`` runs the committed measurement (the arguments below as
in ``results/nrp/speed.md``); ``python -m benchmarks.nrp_speed [--baseline-commit a6cd8fe |
--baseline-src DIR] [--pairs 3] [--steps 300] [--ae-steps 100] [--models NRP NRPaSDAE ...]
[--full-epoch] [--ml100k] [--check-epochs 2] [--quick]`` chooses them.

Every measurement is a fresh subprocess with ``OMP_NUM_THREADS=1`` that imports
``recbole_ext`` from one source tree (this checkout, or a ``git worktree`` of the
baseline commit made in a temporary folder), builds the preset's data, model and trainer,
runs a few warm-up steps and then times the trainer's own ``_train_epoch`` over the next
``--steps`` batches of the training loader (data loading, forward, backward, gradient
clipping and optimiser step, as in a real epoch). Old and new code alternate in ABBA
order (old-new, new-old, ...), so that a drift of the shared machine's speed hits both;
each pair gives one speed ratio and the table reports their median.

Parts (each on by default except where noted):

* ML-1M, ``nrp-ml-1m[-<model>]`` presets: old vs new, ``--steps`` steps per NRP-direct run
  and ``--ae-steps`` per autoencoder-model run, scaled to the epoch's number of batches
  (the table says so);
* ``--full-epoch``: one whole ML-1M training epoch of NRP-direct, new code, timed directly;
* ``--ml100k``: the ``nrp-ml-100k`` preset, a whole training epoch per run, old vs new;
* ``--check-epochs N``: N epochs of NRP-direct on ML-1M (same seed) on both trees, with the
  validation RMSE after every epoch, to show that the new code trains the same model.

Results: ``benchmarks/results/nrp/speed.{json,md}`` (``--quick``: under ``results/quick/``).
The worker builds the run by hand instead of with ``prepare_run`` because it also runs on the
baseline tree, which predates it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO_ROOT = HERE.parent.parent
# as benchmarks.common has it; not imported, because workers run this file inside the baseline tree
RESULTS_DIR = Path(os.environ.get("RECBOLE_EXT_BENCH_RESULTS", REPO_ROOT / "benchmarks" / "results"))

ARGUMENTS = ["--pairs", "3", "--steps", "300", "--ae-steps", "100", "--ml100k", "--full-epoch", "--check-epochs", "2"]
DEFAULT_BASELINE = "a6cd8fe"
ML1M_PRESETS = {"NRP": "nrp-ml-1m", "NRPaSDAE": "nrp-ml-1m-nrpasdae", "NRPDHA": "nrp-ml-1m-nrpdha",
                "ASDAE": "nrp-ml-1m-asdae", "DHA": "nrp-ml-1m-dha"}
WORKER = "__nrp_speed_worker__"
_BOOT = "import runpy, sys; runpy.run_path(sys.argv[1], run_name=%r)" % WORKER


# ---------------------------------------------------------------------------------------
# worker: runs inside the source tree under test (only recbole_ext APIs both trees have)
# ---------------------------------------------------------------------------------------

def _worker(spec: dict) -> dict:
    import itertools
    import warnings

    warnings.filterwarnings("ignore")
    import torch
    from recbole.utils import init_seed

    from recbole_ext.config import Config
    from recbole_ext.data import create_dataset, data_preparation
    from recbole_ext.quick_start import build_model
    from recbole_ext.registry import get_trainer

    settings = {"show_progress": False, "state": "ERROR", "use_gpu": False, "data_path": spec["data_path"],
                "checkpoint_dir": spec["scratch"], **spec.get("overrides", {})}
    config = Config(model=spec["model"], dataset=spec["dataset"], config_dict=settings, preset=spec["preset"])
    init_seed(config["seed"], config["reproducibility"])
    train, valid, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = build_model(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    out = {"threads": torch.get_num_threads(), "batches_per_epoch": len(train),
           "recbole_ext": str(Path(sys.modules["recbole_ext"].__file__).parent)}
    if spec["mode"] in ("steps", "epoch"):
        if spec["mode"] == "steps":
            trainer._train_epoch(itertools.islice(train, spec["warmup"]), 0)
        batches = itertools.islice(train, spec["steps"]) if spec["mode"] == "steps" else train
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer._train_epoch(batches, 1)
        out["seconds"], out["cpu_seconds"] = time.perf_counter() - start, time.process_time() - cpu_start
        out["steps"] = spec["steps"] if spec["mode"] == "steps" else len(train)
    else:  # "fit": train a few epochs, validating after each
        trainer.fit(train, valid, saved=False, verbose=False)
        out["valid"] = [[epoch, result.get("rmse")] for epoch, result in trainer.valid_history]
        out["train_epoch_seconds"] = trainer.epoch_seconds
        out["train_loss"] = [float(trainer.train_loss_dict[epoch]) for epoch in sorted(trainer.train_loss_dict)]
    return out


def _run_worker(src: Path, spec: dict) -> dict:
    """Run :func:`_worker` in a subprocess that imports ``recbole_ext`` from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as scratch:
        spec = {**spec, "scratch": scratch}
        proc = subprocess.run([sys.executable, "-c", _BOOT, str(HERE), json.dumps(spec)], cwd=src, env=env,
                              capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"nrp_speed worker failed in {src} for {spec}:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    imported = Path(result.pop("recbole_ext")).resolve()  # checked, not stored: a machine path
    if imported != (src / "recbole_ext").resolve():
        raise RuntimeError(f"worker imported recbole_ext from {imported}, expected {src}")
    return result


# ---------------------------------------------------------------------------------------
# orchestration
# ---------------------------------------------------------------------------------------

def _baseline_tree(commit: str, parent: Path) -> Path:
    """A detached ``git worktree`` of ``commit`` under ``parent`` (removed by :func:`_drop_tree`)."""
    path = parent / f"baseline-{commit}"
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(path), commit],
                   check=True, capture_output=True)
    return path


def _drop_tree(path: Path) -> None:
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)


def _ensure_data(quick: bool) -> Path:
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.common import DATASET_DIR, ensure_converted, ensure_ml100k

    ensure_converted("movielens", "ml-1m", "ml-1m")
    ensure_ml100k()
    return DATASET_DIR.resolve()


def _interleaved(trees: dict[str, Path], spec: dict, pairs: int, log: list) -> dict:
    """``pairs`` old/new pairs of one measurement in ABBA order: the worker results per side."""
    runs: dict[str, list] = {"old": [], "new": []}
    for index in range(pairs):
        order = ("old", "new") if index % 2 == 0 else ("new", "old")
        for side in order:
            result = _run_worker(trees[side], spec)
            runs[side].append(result)
            line = (f"{spec['model']:>9} {spec['dataset']:>8} {side}: {result['steps']} steps, "
                    f"{result['cpu_seconds'] / result['steps'] * 1000:.1f} CPU ms/step, "
                    f"{result['seconds'] / result['steps'] * 1000:.1f} wall ms/step")
            print(line, flush=True)
            log.append(line)
    return runs


def _summary(runs: dict) -> dict:
    """Per-step times (CPU and wall, ms) of every run, per-pair ratios old/new and medians."""
    batches = next(r["batches_per_epoch"] for rs in runs.values() for r in rs)
    out = {"batches_per_epoch": batches, "runs": runs}
    for clock, key in (("cpu", "cpu_seconds"), ("wall", "seconds")):
        per_step = {side: [r[key] / r["steps"] for r in rs] for side, rs in runs.items() if rs}
        for side, values in per_step.items():
            out[f"{side}_{clock}_ms_per_step"] = [v * 1000 for v in values]
            out[f"{side}_{clock}_epoch_seconds"] = statistics.median(values) * batches
        if "old" in per_step:
            out[f"{clock}_ratios"] = [o / n for o, n in zip(per_step["old"], per_step["new"])]
            out[f"{clock}_ratio_median"] = statistics.median(out[f"{clock}_ratios"])
    return out


def _minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f} min"


def _list(values, fmt: str) -> str:
    return ", ".join(fmt.format(v) for v in values or [])


def write_tables(store: dict, command: str) -> Path:
    """``speed.json`` (every run) and ``speed.md`` (the tables) under ``benchmarks/results/nrp``."""
    results = (RESULTS_DIR / "quick" if store["quick"] else RESULTS_DIR) / "nrp"
    results.mkdir(parents=True, exist_ok=True)
    record = {key: value for key, value in store.items() if key != "quick"}
    (results / "speed.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    lines = ["# NRP family: training speed, new code vs baseline", "",
             f"Command: `{command}`", "",
             f"Baseline `{store['baseline']}`, new `{store['new']}`, started {store['started']}. One thread "
             "(`OMP_NUM_THREADS=1`), every run a fresh process, old and new alternating (ABBA). "
             "CPU time is the process's own (`time.process_time`); wall time also counts the waits "
             "of a shared, oversubscribed machine.", "",
             "| model | data | timed | old CPU ms/step | new CPU ms/step | old epoch (CPU) | new epoch (CPU) "
             "| speed-up per pair (CPU) | median (CPU) | median (wall) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for entry in store["measurements"].values():
        lines.append(
            f"| {entry['model']} | {entry['dataset']} | {entry['how']} "
            f"| {_list(entry.get('old_cpu_ms_per_step'), '{:.0f}')} | {_list(entry.get('new_cpu_ms_per_step'), '{:.0f}')} "
            f"| {_minutes(entry.get('old_cpu_epoch_seconds'))} | {_minutes(entry.get('new_cpu_epoch_seconds'))} "
            f"| {_list(entry.get('cpu_ratios'), '{:.2f}x')} "
            f"| {'' if 'cpu_ratio_median' not in entry else format(entry['cpu_ratio_median'], '.2f') + 'x'} "
            f"| {'' if 'wall_ratio_median' not in entry else format(entry['wall_ratio_median'], '.2f') + 'x'} |")
    if "full_epoch" in store:
        full = store["full_epoch"]
        lines += ["", f"Whole ML-1M training epoch of NRP-direct, new code, timed directly: "
                      f"{full['cpu_seconds']:.0f} CPU s, {full['seconds']:.0f} wall s ({full['steps']} batches)."]
    if "check" in store:
        lines += ["", "NRP-direct on ML-1M (`nrp-ml-1m`, seed 2020): summed training loss and validation RMSE "
                      "after each epoch, old and new code:", "",
                  "| epoch | old loss | new loss | old valid RMSE | new valid RMSE | RMSE new - old |",
                  "|---|---|---|---|---|---|"]
        old, new = store["check"]["old"], store["check"]["new"]
        for index, ((epoch, a), (_, b)) in enumerate(zip(old["valid"], new["valid"])):
            lines.append(f"| {epoch} | {old['train_loss'][index]:.4f} | {new['train_loss'][index]:.4f} "
                         f"| {a:.6f} | {b:.6f} | {b - a:+.1e} |")
    lines += ["", "Rows timed over N steps give the median per-step time of N steps (after warm-up "
                  "steps) times the epoch's number of batches; 'epoch' rows time whole training epochs."]
    path = results / "speed.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path.relative_to(REPO_ROOT)}", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nrp_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-commit", default=DEFAULT_BASELINE, help="commit to compare against")
    parser.add_argument("--baseline-src", type=Path, help="a checkout of the baseline (instead of a worktree)")
    parser.add_argument("--pairs", type=int, default=3, help="old/new pairs per measurement")
    parser.add_argument("--steps", type=int, default=300, help="timed training steps per ML-1M NRP run")
    parser.add_argument("--ae-steps", type=int, default=100,
                        help="timed training steps per ML-1M run of the autoencoder models")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before the timed ones")
    parser.add_argument("--models", nargs="+", default=list(ML1M_PRESETS), choices=list(ML1M_PRESETS))
    parser.add_argument("--new-only", nargs="*", default=[], metavar="MODEL",
                        help="models timed on the new code only (no old runs)")
    parser.add_argument("--full-epoch", action="store_true", help="one whole NRP ML-1M epoch, new code")
    parser.add_argument("--ml100k", action="store_true", help="whole ml-100k epochs of NRP, old vs new")
    parser.add_argument("--check-epochs", type=int, default=0, help="epochs of the RMSE check (0: none)")
    parser.add_argument("--quick", action="store_true", help="few steps, one pair: checks the pipeline")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.steps, args.ae_steps, args.warmup = 1, 5, 3, 2
    command = "python -m benchmarks.nrp_speed " + " ".join(argv if argv is not None else sys.argv[1:])
    data = _ensure_data(args.quick)
    scratch = Path(tempfile.mkdtemp(prefix="nrp-speed-"))
    baseline = args.baseline_src.resolve() if args.baseline_src else _baseline_tree(args.baseline_commit, scratch)
    trees = {"old": baseline, "new": REPO_ROOT}
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    store = {"baseline": args.baseline_src.name if args.baseline_src else args.baseline_commit,
             "new": head + (" + uncommitted changes" if dirty else ""), "command": command,
             "started": time.strftime("%Y-%m-%d %H:%M:%S"), "measurements": {}, "log": [],
             "suite": "nrp", "part": "speed", "quick": args.quick}
    try:
        base = {"data_path": str(data), "warmup": args.warmup}
        for model in args.models:
            steps = args.steps if model == "NRP" else args.ae_steps
            spec = {**base, "model": model, "dataset": "ml-1m", "preset": ML1M_PRESETS[model],
                    "mode": "steps", "steps": steps}
            if model in args.new_only:
                runs = {"new": [_run_worker(trees["new"], spec) for _ in range(args.pairs)]}
            else:
                runs = _interleaved(trees, spec, args.pairs, store["log"])
            store["measurements"][f"{model}-ml-1m"] = {"model": model, "dataset": "ml-1m",
                                                     "how": f"{steps} steps, scaled", **_summary(runs)}
            write_tables(store, command)
        if args.ml100k:
            spec = {**base, "model": "NRP", "dataset": "ml-100k", "preset": "nrp-ml-100k", "mode": "epoch"}
            runs = _interleaved(trees, spec, args.pairs, store["log"])
            store["measurements"]["NRP-ml-100k"] = {"model": "NRP", "dataset": "ml-100k", "how": "epoch",
                                                  **_summary(runs)}
            write_tables(store, command)
        if args.full_epoch:
            spec = {**base, "model": "NRP", "dataset": "ml-1m", "preset": "nrp-ml-1m", "mode": "epoch"}
            store["full_epoch"] = _run_worker(trees["new"], spec)
            print(f"NRP ml-1m whole epoch (new): {store['full_epoch']['cpu_seconds']:.1f} CPU s", flush=True)
            write_tables(store, command)
        if args.check_epochs:
            spec = {**base, "model": "NRP", "dataset": "ml-1m", "preset": "nrp-ml-1m", "mode": "fit",
                    "overrides": {"epochs": args.check_epochs, "eval_step": 1, "metric_decimal_place": 10}}
            store["check"] = {side: _run_worker(trees[side], spec) for side in ("old", "new")}
            write_tables(store, command)
    finally:
        if not args.baseline_src:
            _drop_tree(baseline)
    write_tables(store, command)
    return 0


if __name__ == WORKER:
    result = _worker(json.loads(sys.argv[2]))
    print("RESULT " + json.dumps(result), flush=True)
elif __name__ == "__main__":
    sys.exit(main())
