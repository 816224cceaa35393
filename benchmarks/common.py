"""Shared pieces of the benchmark suites: resumable result store, runs, data conversion."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# Each location can be moved by an environment variable (a scratch run, a shared data disk).
RESULTS_DIR = Path(os.environ.get("RECBOLE_EXT_BENCH_RESULTS", REPO_ROOT / "benchmarks" / "results"))
# --quick pipeline checks write here (git-ignored): their numbers are not results
QUICK_SUBDIR = "quick"
RAW_DATA = Path(os.environ.get("RECBOLE_EXT_RAW_DATA", REPO_ROOT.parent / "shared" / "data" / "raw"))
DATASET_DIR = Path(os.environ.get("RECBOLE_EXT_DATASET_DIR", REPO_ROOT / "dataset"))
CHECKPOINT_DIR = REPO_ROOT / "saved" / "benchmarks"


def use_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


class ResultStore:
    """Results of one part of a suite, saved as JSON after every run so an interrupted suite resumes.

    Args:
        suite: suite name (``python -m benchmarks <suite>``).
        part: the part of the suite; its files are ``benchmarks/results/<suite>/<part>.{json,md,png}``
            (``benchmarks/results/quick/<suite>/<part>.*`` for ``--quick``, a git-ignored folder).
        quick: the quick size writes to the ignored folder.
        resume: keep the records of an earlier run (False starts afresh).
    """

    def __init__(self, suite: str, part: str, quick: bool = False, resume: bool = True) -> None:
        self.suite, self.part = suite, part
        self.dir = (RESULTS_DIR / QUICK_SUBDIR if quick else RESULTS_DIR) / suite
        self.json_path = self.dir / f"{part}.json"
        self.records: dict[str, dict] = {}
        self._replace_file = not resume  # a fresh run drops the old records on its first save
        if resume and self.json_path.is_file():
            self.records = json.loads(self.json_path.read_text())["records"]

    def done(self, key: str) -> bool:
        return key in self.records

    def add(self, key: str, record: dict) -> None:
        self.records[key] = record
        self._save()
        print(f"[{self.suite}/{self.part}] {len(self.records)} runs recorded; last: {key}", flush=True)

    def path(self, name: str) -> Path:
        """A file of this suite's folder (created), e.g. another figure of the part."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir / name

    def file(self, extension: str) -> Path:
        """This part's own ``<part>.<extension>``."""
        return self.path(f"{self.part}.{extension}")

    def _lock_path(self) -> Path:
        """A lock file outside the results folder, one per result file."""
        import hashlib
        import tempfile

        digest = hashlib.sha1(str(self.json_path.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"recbole-ext-results-{digest}.lock"

    def _save(self) -> None:
        """Merge into the file under a lock: several processes may fill one suite's runs."""
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path(), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.json_path.is_file() and not self._replace_file:
                on_disk = json.loads(self.json_path.read_text())["records"]
                self.records = {**on_disk, **self.records}
            tmp = self.json_path.with_suffix(f".json.{os.getpid()}.tmp")
            payload = {"suite": self.suite, "part": self.part, "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "records": self.records}
            tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, self.json_path)
        self._replace_file = False

    def write_markdown(self, title: str, header: list[str], rows: Iterable[list[Any]],
                       notes: str = "") -> Path:
        """Write ``<part>.md``: a title, a table and free-text notes (commands, caveats)."""
        lines = [f"# {title}", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
        if notes:
            lines += ["", notes.strip()]
        path = self.file("md")
        path.write_text("\n".join(lines) + "\n")
        print(f"[{self.suite}/{self.part}] wrote {_shown(path)}", flush=True)
        return path


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (results may be moved)."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _fmt(cell: Any) -> str:
    if isinstance(cell, float):
        return f"{cell:.4f}"
    return "" if cell is None else str(cell)


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend: the suites run headless."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 110, **layout) -> Path:
    """Lay out (``layout``: ``tight_layout`` arguments), write and close a suite's figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout(**layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def mean_std(values: list[float]) -> str:
    """``0.8990 ± 0.0060`` (population std over seeds); a single value prints alone."""
    import numpy as np

    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def uniform_negatives(n: int) -> dict:
    """RecBole's ``train_neg_sample_args`` for ``n`` uniform negatives per positive."""
    return {"distribution": "uniform", "sample_num": n, "alpha": 1.0, "dynamic": False, "candidate_num": 0}


def base_run_config() -> dict:
    """Settings every benchmark run shares: GPU when present, no progress bars, checkpoints
    under ``saved/benchmarks``, data under ``DATASET_DIR``."""
    return {"use_gpu": use_gpu(), "show_progress": False, "state": "INFO",
            "checkpoint_dir": str(CHECKPOINT_DIR), "data_path": str(DATASET_DIR)}


def newest_checkpoint(folder: Path, pattern: str = "*.pth") -> Path | None:
    """The most recently written checkpoint of ``folder`` matching ``pattern`` (None when there is none)."""
    found = sorted(folder.glob(pattern), key=lambda path: path.stat().st_mtime)
    return found[-1] if found else None


def run_one(model: str, dataset: str, config_dict: dict | None = None, preset: str | None = None,
            config_file_list: list[str] | None = None, resume_folder: Path | None = None) -> dict:
    """One training run through ``run_recbole_ext`` (best-valid checkpoint tested).

    The GPU is used when present; on CPU, progress bars are off and logs go to ``log/``.
    ``resume_folder``: the run keeps its checkpoints there and, when one is already there
    (a run of hours stopped part-way), continues training from the newest.
    """
    from recbole_ext.quick_start import run_recbole_ext

    config = base_run_config() | (config_dict or {})
    resume_file = None
    if resume_folder is not None:
        config["checkpoint_dir"] = str(resume_folder)
        newest = newest_checkpoint(Path(resume_folder))
        resume_file = str(newest) if newest else None
    print(f"--> {model} on {dataset} (preset={preset}) {config_dict or ''}"
          f"{f' resuming {resume_file}' if resume_file else ''}", flush=True)
    start = time.perf_counter()
    result = run_recbole_ext(model=model, dataset=dataset, config_dict=config, preset=preset,
                             config_file_list=config_file_list, resume_file=resume_file)
    print(f"<-- {model}: test {result['test_result']} in {time.perf_counter() - start:.1f}s", flush=True)
    result.pop("config", None)  # the full config is in the per-run results JSON
    return result


def ensure_ml100k() -> str:
    """RecBole's bundled ml-100k atomic files (.inter, .user, .item) under ``dataset/ml-100k``.

    Files already there are kept (an older copy may hold the interactions only).
    """
    import recbole

    source = Path(recbole.__file__).parent / "dataset_example" / "ml-100k"
    target = DATASET_DIR / "ml-100k"
    target.mkdir(parents=True, exist_ok=True)
    for suffix in ("inter", "user", "item"):
        if not (target / f"ml-100k.{suffix}").is_file():
            shutil.copy(source / f"ml-100k.{suffix}", target / f"ml-100k.{suffix}")
    return "ml-100k"


def ensure_converted(fmt: str, raw_subdir: str, name: str, **options: Any) -> str:
    """Convert ``RAW_DATA/raw_subdir`` with ``dataset_atomic <fmt>`` into ``dataset/<name>`` once.

    Returns the dataset name. Raises FileNotFoundError naming the raw folder if absent.
    """
    import importlib

    output = DATASET_DIR / name
    if (output / "stats.json").is_file():
        return name
    raw = RAW_DATA / raw_subdir
    if not raw.exists():
        raise FileNotFoundError(f"raw data for {name} not found at {raw} (set RECBOLE_EXT_RAW_DATA)")
    module = importlib.import_module(f"dataset_atomic.{fmt.replace('-', '_')}")
    print(f"converting {raw} -> {output} ({fmt})", flush=True)
    module.convert(raw, output, **options)
    return name
