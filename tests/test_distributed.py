"""DDP beyond one process per rank on one machine, as a user launches it: two "machines" on the
loopback address (RecBole's --world_size/--ip/--port/--group_offset), and torchrun."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import REPO_ROOT

SCRIPT = str(REPO_ROOT / "run_recbole_ext.py")
KNI_SETTINGS = ["--load_col={'inter': ['user_id', 'item_id', 'label'], 'kg': ['head_id', 'relation_id', "
                "'tail_id'], 'link': ['item_id', 'entity_id']}", "--train_neg_sample_args=None",
                "--eval_args={'split': {'RS': [0.6, 0.2, 0.2]}, 'order': 'RO', 'group_by': None, "
                "'mode': 'labeled'}", "--metrics=['AUC', 'LogLoss']", "--valid_metric=AUC",
                "--max_degree=8", "--hop_n_sample=1,4", "--embedding_size=8", "--n_eval=4"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def common_args(tiny_dataset, tmp_path, model: str, *extra: str) -> list[str]:
    data_path, name = tiny_dataset
    return ["--model", model, "--dataset", name, f"--data_path={data_path}", "--epochs=1", "--state=ERROR",
            "--show_progress=False", f"--checkpoint_dir={tmp_path / 'saved'}", *extra]


def environment() -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def check_one_group(tmp_path, model: str) -> dict:
    results = sorted((tmp_path / "saved" / "results").glob("*.json"))
    assert len(results) == 1, f"expected one results file (global rank 0), got {results}"
    assert len(list((tmp_path / "saved").glob(f"{model}-*.pth"))) == 1
    data = json.loads(results[0].read_text())
    assert data["world_size"] == 2 and data["timings"]["epochs_trained"] == 1
    assert data["config"]["single_spec"] is False
    return data


def test_output_folders_do_not_race_between_ranks(make_config, monkeypatch):
    """RecBole creates ./log/<Model> and checkpoint_dir by "exists? else makedirs"; ranks that start
    together can both see "missing", and the loser's makedirs raises FileExistsError. Here every
    RecBole makedirs loses that race: the folder appears just before it runs."""
    import recbole.utils.utils as recbole_utils

    def makedirs_after_another_rank(path, *args, **kwargs):
        os.makedirs(path, exist_ok=True)
        raise FileExistsError(17, "File exists", path)

    monkeypatch.setattr(recbole_utils, "os", SimpleNamespace(path=os.path, makedirs=makedirs_after_another_rank))
    from recbole_ext import prepare_run

    run = prepare_run(config_dict=make_config(model="BPR", checkpoint_dir="saved/nested"))
    assert run.trainer is not None and os.path.isdir("saved/nested") and os.path.isdir("log/BPR")


@pytest.mark.slow
@pytest.mark.parametrize("model, extra", [("BPR", []), ("KNI", KNI_SETTINGS)])
def test_two_machines_on_loopback_train_as_one_group(tiny_dataset, tmp_path, model, extra):
    port = free_port()
    nodes = [subprocess.Popen([sys.executable, SCRIPT, *common_args(tiny_dataset, tmp_path, model, *extra),
                               "--nproc", "1", "--world_size", "2", "--ip", "127.0.0.1", "--port", str(port),
                               "--group_offset", str(offset)], cwd=tmp_path, env=environment(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for offset in (0, 1)]
    outputs = [node.communicate(timeout=900) for node in nodes]
    for node, (out, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    check_one_group(tmp_path, model)
    assert "test result:" in outputs[0][0]  # the machine with global rank 0 reports


@pytest.mark.slow
def test_torchrun_launch(tiny_dataset, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun not installed beside this interpreter")
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()), SCRIPT,
                           *common_args(tiny_dataset, tmp_path, "BPR")], cwd=tmp_path, env=environment(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_one_group(tmp_path, "BPR")
    assert proc.stdout.count("test result:") == 1


def test_world_size_must_hold_this_machines_ranks():
    from recbole_ext.quick_start import run_recbole_ext_distributed

    with pytest.raises(ValueError, match="smaller than --group_offset 2 \\+ --nproc 1"):
        run_recbole_ext_distributed(1, world_size=2, group_offset=2, port=1234)
    with pytest.raises(ValueError, match="spans several machines"):
        run_recbole_ext_distributed(1, world_size=2)
