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
    results = tmp_path / "results" / "quick" / "smoke"  # --quick output: the ignored folder
    records = json.loads((results / "runs.json").read_text())["records"]
    assert set(records) == {"BPR/tiny/seed2020", "BiasedMF/tiny/seed2020"}
    assert "rmse" in records["BiasedMF/tiny/seed2020"]["test_result"]
    assert "recall@10" in records["BPR/tiny/seed2020"]["test_result"]
    table = (results / "runs.md").read_text()
    assert "| BPR/tiny/seed2020 |" in table
    assert (results / "runs.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["quick"]

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
    first, second = common.ResultStore("s", "p"), common.ResultStore("s", "p")  # two processes, one file
    first.add("a", {"x": 1})
    second.add("b", {"x": 2})
    path = tmp_path / "s" / "p.json"  # results/<suite>/<part>.json
    assert set(json.loads(path.read_text())["records"]) == {"a", "b"}
    assert common.ResultStore("s", "p").done("a")
    fresh = common.ResultStore("s", "p", resume=False)
    fresh.add("c", {"x": 3})
    assert set(json.loads(path.read_text())["records"]) == {"c"}
    fresh.add("d", {"x": 4})
    assert set(json.loads(path.read_text())["records"]) == {"c", "d"}
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["p.json"]  # no lock or temp file left


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


def test_every_committed_result_file_belongs_to_a_suite_part():
    """results/<suite>/<part>.{json,md,png}: a suite that exists, and a JSON naming its suite and part."""
    import subprocess as sp

    from benchmarks.__main__ import available_suites

    tracked = sp.run(["git", "ls-files", "benchmarks/results"], cwd=REPO_ROOT, capture_output=True,
                     text=True, check=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    for name in tracked:
        parts = name.split("/")
        assert len(parts) == 4 and parts[2] in available_suites(), f"{name}: not results/<suite>/<part>.*"
        assert parts[3].rsplit(".", 1)[1] in {"json", "md", "png"}, name
        if name.endswith(".json"):
            payload = json.loads((REPO_ROOT / name).read_text())
            assert (payload["suite"], payload["part"]) == (parts[2], parts[3][:-5]), name


@pytest.mark.slow
def test_gpu_check_quick_runs_what_it_can_without_a_gpu(tmp_path):
    import torch

    env = {**os.environ, "RECBOLE_EXT_BENCH_RESULTS": str(tmp_path / "results"),
           "RECBOLE_EXT_DATASET_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "gpu", "--quick"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    records = json.loads((tmp_path / "results" / "quick" / "gpu" / "check.json").read_text())["records"]
    from benchmarks.suites.gpu import PAIRS

    assert set(records) == {"environment", "contract", "smoke", "ddp", *(f"timing/{label}" for label in PAIRS)}
    assert all(rec["status"] in ("ok", "skipped") for rec in records.values()), records
    table = (tmp_path / "results" / "quick" / "gpu" / "check.md").read_text()
    if not torch.cuda.is_available():
        assert table.startswith("# GPU check (no GPU: CPU only)") and records["contract"]["status"] == "skipped"
        assert records["ddp"]["world_size"] == 2


def test_a_run_stopped_part_way_resumes_from_its_folder(tmp_path, tiny_dataset, monkeypatch):
    """Long benchmark runs (NRP on ml-1m) keep checkpoints apart and continue where they stopped."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    monkeypatch.chdir(tmp_path)  # the run's log/ and saved/ folders
    from benchmarks import common

    data_root, name = tiny_dataset
    monkeypatch.setattr(common, "DATASET_DIR", data_root)
    folder = tmp_path / "resume" / "ml1m-BiasedMF-2020"
    settings = {"seed": 2020, "stopping_step": 5, "checkpoint_dir": str(tmp_path)}
    first = common.run_one("BiasedMF", name, {**settings, "epochs": 1}, resume_folder=folder)
    assert first["timings"]["resumed_at_epoch"] == 0 and len(list(folder.glob("*.pth"))) == 1
    from recbole_ext.checkpoint import load_checkpoint

    saved = load_checkpoint(next(folder.glob("*.pth")), "cpu")
    assert saved["best_valid_result"] == first["best_valid_result"]
    second = common.run_one("BiasedMF", name, {**settings, "epochs": 3}, resume_folder=folder)
    assert second["timings"]["resumed_at_epoch"] == 1
    # the whole history, not only the epochs after the resume
    assert second["timings"]["epochs_trained"] == 3 and len(second["valid_history"]) == 3
    assert second["timings"]["train_epoch_seconds"][0] == first["timings"]["train_epoch_seconds"][0]


def test_recommend_speed_entry_points_agree_with_recommend(make_config, tmp_path, capsys, monkeypatch):
    """The subprocesses of ``python -m benchmarks recommend`` (RecBole's case-study loop and the
    cached phases) run on a checkpoint and give the lists ``recommend`` gives."""
    import pandas as pd

    from recbole_ext import run_recbole_ext
    from recbole_ext.recommend import recommend

    monkeypatch.syspath_prepend(str(REPO_ROOT))
    from benchmarks import recommend_speed

    checkpoint = run_recbole_ext(config_dict=make_config(model="BPR"))["checkpoint"]
    recbole_loop, cached = tmp_path / "recbole.csv", tmp_path / "ours.csv"
    recommend_speed.baseline(checkpoint, str(recbole_loop), 7)
    recommend_speed.phases(checkpoint, str(cached))
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()[-2:]]
    assert printed[0]["create_dataset_seconds"] > 0 and printed[1]["score_and_rank"] > 0
    ours = recommend(checkpoint, topk=recommend_speed.TOPK)
    assert len(pd.read_csv(cached)) == len(ours)
    assert recommend_speed.same_lists(cached, recbole_loop)["same_set"] == ours["user_id"].nunique()
