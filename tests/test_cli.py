"""run_recbole_ext.py as a user runs it: a subprocess, exit codes and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

SCRIPT = str(REPO_ROOT / "run_recbole_ext.py")


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          timeout=timeout)


def test_unknown_model_exits_nonzero_with_one_line_error():
    proc = run_cli("--model", "NoSuchModel", "--dataset", "ml-100k")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Unknown model 'NoSuchModel'")


def test_close_names_are_suggested():
    proc = run_cli("--model", "lightgcn", "--dataset", "ml-100k")
    assert proc.returncode == 2 and "Did you mean: LightGCN" in proc.stderr


def test_list_models_lists_recbole_and_plugin_models():
    from recbole_ext.registry import PLUGIN_MODELS

    proc = run_cli("--list-models")
    assert proc.returncode == 0
    names = {line.split()[0]: line.split()[-1] for line in proc.stdout.splitlines()[1:]}
    assert names["BPR"] == "recbole" and names["SASRec"] == "recbole"
    for name in PLUGIN_MODELS:
        assert names[name] == "recbole-ext"


def test_malformed_override_is_a_usage_error():
    proc = run_cli("--model", "BPR", "--dataset", "ml-100k", "--epochs")
    assert proc.returncode == 2 and "has no value" in proc.stderr


def test_run_with_overrides_writes_results(tiny_dataset, tmp_path):
    data_path, name = tiny_dataset
    out = tmp_path / "res.json"
    proc = run_cli("--model", "BPR", "--dataset", name, f"--data_path={data_path}",
                   "--epochs=1", "--state=ERROR", "--show_progress=False",
                   f"--checkpoint_dir={tmp_path}", "--results", str(out),
                   "--metrics", "['Recall']", "--topk=[5]", "--valid_metric=Recall@5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test result: recall@5" in proc.stdout
    data = json.loads(out.read_text())
    assert data["config"]["metrics"] == ["Recall"] and "recall@5" in data["test_result"]


def test_bad_config_file_line_is_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 1\n  nested: [\n")
    proc = run_cli("--model", "BPR", "--dataset", "ml-100k", "--config_files", str(bad))
    assert proc.returncode == 2
    assert f"error: {bad}:2:" in proc.stderr


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tiny_dataset, tmp_path):
    data_path, name = tiny_dataset
    out = tmp_path / "ddp.json"
    proc = run_cli("--model", "BPR", "--dataset", name, f"--data_path={data_path}", "--nproc", "2",
                   "--epochs=1", "--state=ERROR", "--show_progress=False",
                   f"--checkpoint_dir={tmp_path}", "--results", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["world_size"] == 2 and data["timings"]["epochs_trained"] == 1
    assert data["config"]["single_spec"] is False


def test_resume_from_checkpoint_and_legacy_checkpoint_needs_trust(tiny_dataset, tmp_path):
    import torch

    data_path, name = tiny_dataset
    common = ["--model", "BPR", "--dataset", name, f"--data_path={data_path}", "--state=ERROR",
              "--show_progress=False", f"--checkpoint_dir={tmp_path}"]
    first = run_cli(*common, "--epochs=1", "--results", str(tmp_path / "a.json"))
    assert first.returncode == 0, first.stderr[-2000:]
    ckpt = json.loads((tmp_path / "a.json").read_text())["checkpoint"]
    resumed = run_cli(*common, "--epochs=2", "--resume", ckpt, "--results", str(tmp_path / "b.json"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    timings = json.loads((tmp_path / "b.json").read_text())["timings"]
    assert timings["resumed_at_epoch"] == 1 and timings["epochs_trained"] == 2

    legacy = tmp_path / "legacy.pth"
    state = torch.load(ckpt, weights_only=True)
    torch.save(state, legacy, pickle_protocol=4)  # as RecBole saves: not weights-only loadable
    refused = run_cli(*common, "--epochs=2", "--resume", str(legacy))
    assert refused.returncode == 2 and "--trust-legacy-checkpoint" in refused.stderr
    trusted = run_cli(*common, "--epochs=2", "--resume", str(legacy), "--trust-legacy-checkpoint")
    assert trusted.returncode == 0, trusted.stderr[-2000:]


@pytest.mark.slow
def test_demo_compares_and_recommends(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "recbole_ext.demo", "--epochs", "1"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BPR, RecBole's random init" in proc.stdout and "BPR, LEPORID init (recbole-ext)" in proc.stdout
    assert re.search(r"LEPORID initialisation: [+-]\d+% recall@10", proc.stdout)
    ranks = re.findall(r"^\s+(\d)\. item\s+\d+", proc.stdout, re.M)
    assert ranks == ["1", "2", "3", "4", "5"], proc.stdout[-2000:]


@pytest.mark.slow
def test_untied_rnncce_trains_without_naming_the_tying_loss(tiny_dataset, tmp_path):
    data_path, name = tiny_dataset
    out = tmp_path / "r.json"
    proc = run_cli("--model", "RNNCCE", "--dataset", name, f"--data_path={data_path}", "--output", "untied",
                   "--load_col={'inter': ['user_id', 'item_id', 'timestamp']}", "--MAX_ITEM_LIST_LENGTH=10",
                   "--embedding_size=8", "--hidden_size=8", "--epochs=1", "--state=ERROR", "--show_progress=False",
                   f"--checkpoint_dir={tmp_path}", "--results", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = json.loads(out.read_text())["config"]
    assert (config["output"], config["tying_loss"]) == ("untied", "none")
