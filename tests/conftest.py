"""Shared fixtures: a tiny generated atomic dataset and a fast base config."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
RAW_DATA = REPO_ROOT.parent / "shared" / "data" / "raw"

N_USERS, N_ITEMS, N_EXTRA_ENTITIES = 40, 60, 30
AGES = ["18", "25", "35", "45"]
OCCUPATIONS = ["student", "engineer", "artist", "doctor", "writer"]
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]
WORDS = ["the", "last", "night", "red", "river", "star", "city", "dream", "war", "love"]

warnings.filterwarnings("ignore", category=FutureWarning)


def write_tiny_dataset(root: Path, name: str = "tiny", seed: int = 7) -> Path:
    """Write ``<root>/<name>/<name>.{inter,user,item,kg,link}`` and return ``root``.

    40 users x 60 items, 8-20 interactions per user with ratings 1-5, increasing
    timestamps and a 0/1 ``label`` (1 for ratings >= 4); users and items carry side
    features; every item links to an entity of a small KG with 3 relations, plus a fourth
    that links three of its entities to new ones, which no item reaches in one hop.
    """
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    popularity = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.6
    popularity /= popularity.sum()
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float\tlabel:float"]
    for user in range(1, N_USERS + 1):
        count = int(rng.integers(8, 21))
        items = rng.choice(np.arange(1, N_ITEMS + 1), size=count, replace=False, p=popularity)
        start = 1_000_000 + user * 10_000
        for step, item in enumerate(items):
            rating = int(rng.integers(1, 6))
            lines.append(f"{user}\t{item}\t{rating}\t{start + step * 60}\t{int(rating >= 4)}")
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")

    users = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    for user in range(1, N_USERS + 1):
        users.append(f"{user}\t{rng.choice(AGES)}\t{rng.choice(['M', 'F'])}\t"
                     f"{rng.choice(OCCUPATIONS)}\t{rng.integers(10000, 10010)}")
    (folder / f"{name}.user").write_text("\n".join(users) + "\n")

    items = ["item_id:token\ttitle:token_seq\tgenre:token_seq"]
    for item in range(1, N_ITEMS + 1):
        title = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4)), replace=False))
        genre = " ".join(rng.choice(GENRES, size=int(rng.integers(1, 3)), replace=False))
        items.append(f"{item}\t{title}\t{genre}")
    (folder / f"{name}.item").write_text("\n".join(items) + "\n")

    links = ["item_id:token\tentity_id:token"]
    links += [f"{item}\te{item}" for item in range(1, N_ITEMS + 1)]
    (folder / f"{name}.link").write_text("\n".join(links) + "\n")
    triples = ["head_id:token\trelation_id:token\ttail_id:token"]
    for item in range(1, N_ITEMS + 1):
        for _ in range(int(rng.integers(1, 4))):
            relation = rng.choice(["genre_of", "directed_by", "starring"])
            tail = f"x{rng.integers(1, N_EXTRA_ENTITIES + 1)}"
            triples.append(f"e{item}\t{relation}\t{tail}")
    # entities that no item reaches in one KG hop (no one-hop item neighbourhood holds them)
    triples += [f"x{extra}\tinfluenced_by\ty{extra}" for extra in (1, 2, 3)]
    (folder / f"{name}.kg").write_text("\n".join(dict.fromkeys(triples)) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> tuple[str, str]:
    """(data_path, dataset name) of the generated ``tiny`` dataset."""
    root = write_tiny_dataset(tmp_path_factory.mktemp("atomic"))
    return str(root), "tiny"


def base_config(tmp_path: Path, data_path: str, **overrides) -> dict:
    """A config dict for fast runs on the tiny dataset; ``overrides`` win."""
    config = {
        "data_path": data_path,
        "dataset": "tiny",
        "epochs": 1,
        "train_batch_size": 64,
        "eval_batch_size": 256,
        "checkpoint_dir": str(tmp_path / "saved"),
        "state": "ERROR",
        "show_progress": False,
        "use_gpu": os.environ.get("RECBOLE_EXT_TEST_GPU") == "1",  # the GPU check runs the tests on cuda
        "seed": 2020,
        "reproducibility": True,
    }
    config.update(overrides)
    return config


@pytest.fixture
def make_config(tmp_path, tiny_dataset):
    """``make_config(**overrides)`` -> base config dict on the tiny dataset."""
    data_path, _ = tiny_dataset

    def factory(**overrides) -> dict:
        return base_config(tmp_path, data_path, **overrides)

    return factory


@pytest.fixture(autouse=True)
def _isolate_cwd_and_argv(tmp_path, monkeypatch):
    """RecBole writes ./log and ./log_tensorboard, the file validation its cache: keep them in
    the test's temp dir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_EXT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
