"""Cost of validating atomic files before a run, against RecBole's own dataset load (ML-1M).

``recbole_ext.data.create_dataset`` checks every atomic file the run will load
(:mod:`recbole_ext.data.validation`) before RecBole's ``create_dataset`` reads them. This
measures, on MovieLens-1M (1,000,209 interactions), in two configurations:

- ``pairs``: BPR's default ``load_col`` (user and item ids of ``.inter``; the rating and
  timestamp columns are still checked, as warnings, since a later run may load them);
- ``all columns``: ``load_col: None`` (every column of ``.inter``, ``.user`` and ``.item``),

three timings, alternating their order from one repetition to the next:

- ``cold``: :func:`~recbole_ext.data.validation.validate_dataset_files` with an empty cache
  (the first run on a new or changed file; it writes the cache);
- ``warm``: the same call again, answered from the cache;
- ``create_dataset``: RecBole's own ``recbole.data.create_dataset`` (no validation).

One untimed round first puts the files in the page cache and imports everything.

Usage::

    python -m benchmarks validation [--quick]

Five repetitions (``--quick``: two). Writes ``benchmarks/results/validation/cost.{json,md}``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from benchmarks.common import DATASET_DIR, ResultStore, ensure_converted

SETTINGS = {"pairs": {}, "all columns": {"load_col": None}}


def _config(name: str, overrides: dict, scratch: Path):
    from recbole_ext import Config

    return Config(model="BPR", dataset=name, config_dict={
        "data_path": str(DATASET_DIR), "checkpoint_dir": str(scratch / "saved"), "state": "ERROR",
        "show_progress": False, "use_gpu": False, **overrides})


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def measure(repeats: int) -> dict:
    import numpy
    import pandas
    from recbole.data import create_dataset as recbole_create_dataset

    from recbole_ext.data import validation

    name = ensure_converted("movielens", "ml-1m", "ml-1m")
    scratch = Path(tempfile.mkdtemp(prefix="validation-cost-"))
    os.environ[validation.CACHE_ENV] = str(scratch / "cache")
    cache_file = validation.default_cache_file()
    results = {}
    for label, overrides in SETTINGS.items():
        config = _config(name, overrides, scratch)
        files = [str(check.path.name) for check in validation.planned_checks(config)]
        validation.validate_dataset_files(config)  # untimed: page cache, imports
        recbole_create_dataset(config)
        times: dict[str, list[float]] = {"cold": [], "warm": [], "create_dataset": []}
        for repeat in range(repeats):
            order = ["validation", "create_dataset"]
            for step in order if repeat % 2 == 0 else order[::-1]:
                if step == "create_dataset":
                    times["create_dataset"].append(_timed(recbole_create_dataset, config))
                    continue
                cache_file.unlink(missing_ok=True)
                times["cold"].append(_timed(validation.validate_dataset_files, config))
                times["warm"].append(_timed(validation.validate_dataset_files, config))
            print(f"[{label}] repeat {repeat + 1}/{repeats}: " + ", ".join(
                f"{key} {values[-1]:.3f} s" for key, values in times.items()), flush=True)
        results[label] = {"files": files, "load_col": overrides.get("load_col", "BPR default"),
                          "seconds": {k: [round(v, 4) for v in vals] for k, vals in times.items()}}
    stats = json.loads((DATASET_DIR / name / "stats.json").read_text())
    return {"dataset": name, "interactions": stats["interactions"], "repeats": repeats,
            "environment": {"python": platform.python_version(), "machine": platform.machine(),
                            "pandas": pandas.__version__, "numpy": numpy.__version__,
                            "cpus": os.cpu_count(),
                            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
            "settings": results}


def _median(values: list[float]) -> float:
    return statistics.median(values)


def write(store: ResultStore) -> None:
    payload = store.records["ml-1m"]
    rows = []
    for label, result in payload["settings"].items():
        seconds = result["seconds"]
        load = _median(seconds["create_dataset"])
        cells = [f"{1000 * _median(v):.{digits}f} ({1000 * min(v):.{digits}f}-"
                 f"{1000 * max(v):.{digits}f})" for v, digits in
                 ((seconds["cold"], 0), (seconds["warm"], 1), (seconds["create_dataset"], 0))]
        rows.append([label, ", ".join(result["files"]), *cells,
                     f"{100 * _median(seconds['cold']) / load:.0f}%",
                     f"{100 * _median(seconds['warm']) / load:.3f}%"])
    env = payload["environment"]
    notes = (f"{payload['dataset']}, {payload['interactions']:,} interactions; model BPR; "
             f"{payload['repeats']} repetitions, order alternating; milliseconds as median (min-max).\n\n"
             "`cold`: empty cache (first run on new or changed files); `warm`: the result cached by "
             "file size, mtime and inode; `create_dataset`: RecBole's own, without validation. "
             "`pairs` is BPR's default load_col (user and item ids), `all columns` is load_col None.\n\n"
             f"Measured with `python -m benchmarks validation` ({payload['repeats']} repetitions; Python "
             f"{env['python']}, {env['cpus']} CPUs visible, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}).")
    store.write_markdown("Atomic file validation cost (ML-1M)",
                         ["load_col", "files checked", "validation, cold", "validation, warm (cached)",
                          "RecBole create_dataset", "cold / load", "warm / load"], rows, notes)


def main(args) -> None:
    # RecBole 1.2.1's chained fillna warns on every load under pandas 2 (harmless).
    warnings.filterwarnings("ignore", category=FutureWarning)
    store = ResultStore("validation", "cost", quick=args.quick, resume=args.resume)
    if not store.done("ml-1m"):
        store.add("ml-1m", measure(2 if args.quick else 5))
    write(store)
