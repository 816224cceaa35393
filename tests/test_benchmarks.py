"""The reproduction harness end to end: the smoke suite on the tiny fixture, and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


def run_suite(tmp_path, data_root, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RECBOLE_EXT_BENCH_RESULTS": str(tmp_path / "results"),
           "RECBOLE_EXT_DATASET_DIR": str(data_root), "RECBOLE_EXT_SMOKE_DATASET": "tiny",
           "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "benchmarks", "smoke", "--quick", *extra],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_quick_suite_writes_results_and_resumes(tmp_path, tiny_dataset):
    data_root, _ = tiny_dataset
    first = run_suite(tmp_path, data_root, "--only", "BPR", "BiasedMF")
    assert first.returncode == 0, first.stderr[-2000:]
    results = tmp_path / "results"
    records = json.loads((results / "smoke_quick.json").read_text())["records"]
    assert set(records) == {"BPR/tiny/seed2020", "BiasedMF/tiny/seed2020"}
    assert "rmse" in records["BiasedMF/tiny/seed2020"]["test_result"]
    assert "recall@10" in records["BPR/tiny/seed2020"]["test_result"]
    table = (results / "smoke_quick.md").read_text()
    assert "| BPR/tiny/seed2020 |" in table
    assert (results / "smoke_quick.png").stat().st_size > 0

    second = run_suite(tmp_path, data_root, "--only", "BPR", "BiasedMF")
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("already recorded; skipped") == 2


def test_unknown_suite_is_rejected(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "no-such-suite"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "invalid choice: 'no-such-suite'" in proc.stderr


def test_result_stores_of_one_suite_merge_and_fresh_replaces(tmp_path, monkeypatch):
    import benchmarks.common as common

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    first, second = common.ResultStore("s"), common.ResultStore("s")  # two processes, one file
    first.add("a", {"x": 1})
    second.add("b", {"x": 2})
    assert set(json.loads((tmp_path / "s.json").read_text())["records"]) == {"a", "b"}
    assert common.ResultStore("s").done("a")
    fresh = common.ResultStore("s", resume=False)
    fresh.add("c", {"x": 3})
    assert set(json.loads((tmp_path / "s.json").read_text())["records"]) == {"c"}
    fresh.add("d", {"x": 4})
    assert set(json.loads((tmp_path / "s.json").read_text())["records"]) == {"c", "d"}
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*.tmp"))


def test_rnncce_selection_from_only_and_seeds():
    from argparse import Namespace

    from benchmarks.suites import rnncce

    select = rnncce.Selection(frozenset({"d100-tied"}), (2020, 2021))
    assert select.wants("d100-tied") and not select.wants("d100-untied")
    assert rnncce.Selection().wants("anything")
    # tau/gamma sweep labels: dim, tau and gamma parsed from the label; plain labels are no sweep
    sweep = rnncce.SWEEP_LABEL.fullmatch("d100-tied-t5g0.5")
    assert sweep and (int(sweep[1]), float(sweep[2]), float(sweep[3])) == (100, 5.0, 0.5)
    assert rnncce.SWEEP_LABEL.fullmatch("d100-tied") is None
    # run labels without a part name would silently run nothing: refused, naming the parts
    with pytest.raises(SystemExit, match="name at least one part"):
        rnncce.main(Namespace(only=["d100-tied"], seeds=None, quick=True, resume=True))
