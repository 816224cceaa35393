"""recbole-ext as a user installs it: the built wheel, installed away from the repository and run
from an empty directory, carries everything a run needs (presets, model defaults, converters)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this checkout, installed into a target folder (its dependencies are
    this interpreter's)."""
    root = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(REPO_ROOT)],
                   check=True, capture_output=True, timeout=600)
    wheel = next((root / "dist").glob("recbole_ext-*.whl"))
    target = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    return target


def run_installed(target: Path, workdir: Path, *args: str, console_script: bool = False):
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("RECBOLE_EXT_PROPERTIES", None)
    command = ([str(target / "bin" / "recbole-ext")] if console_script
               else [sys.executable, "-m", "recbole_ext"])
    return subprocess.run([*command, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_wheel_runs_from_an_empty_directory(installed, tmp_path):
    from recbole_ext.config import PROPERTIES_DIR

    where = subprocess.run([sys.executable, "-c", "import recbole_ext; print(recbole_ext.__file__)"],
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)},
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(installed), f"imported {where}, not the installed wheel"

    listed = run_installed(installed, tmp_path, "--list-presets", console_script=True)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert listed.stdout.split() == sorted(p.stem for p in (PROPERTIES_DIR / "paper").glob("*.yaml"))

    runs = [("--model", "NRP", "--dataset", "ml-100k", "--preset", "nrp-ml-100k", "--epochs=1"),
            ("--model", "BiasedMF", "--dataset", "ml-100k", "--epochs=1"),  # a plugin model's defaults
            ("--model", "BPR", "--dataset", "ml-100k", "--epochs=1")]     # a RecBole model
    for args in runs:
        proc = run_installed(installed, tmp_path, *args, "--show_progress=False")
        assert proc.returncode == 0, f"{args}: {proc.stderr[-3000:]}"
        assert "test result:" in proc.stdout
    # outputs land under the working directory
    assert len(list((tmp_path / "saved").glob("*.pth"))) == len(runs)
    assert len(list((tmp_path / "saved" / "results").glob("*.json"))) == len(runs)


@pytest.mark.slow
def test_wheel_carries_the_converters(installed, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dataset_atomic", "--help"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(installed)}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "movielens" in proc.stdout
