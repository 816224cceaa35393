"""Real-data conversions checked against the counts in ``../shared/data/raw/SOURCES.md``.

Slow (about half a minute): converts the real MovieLens-1M, Book-Crossing, Last.FM and
Gowalla copies and loads the results with RecBole. Skipped when the raw folder is
absent (set ``RECBOLE_EXT_RAW_DATA`` to point elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dataset_atomic import lastfm_hetrec, lightgcn, movielens, ripplenet_kg

REPO_ROOT = Path(__file__).resolve().parent.parent
RAW = Path(os.environ.get("RECBOLE_EXT_RAW_DATA", REPO_ROOT.parent / "shared" / "data" / "raw"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not RAW.is_dir(), reason=f"raw datasets not found at {RAW} "
                       "(set RECBOLE_EXT_RAW_DATA)"),
]


def load_with_recbole(data_path: Path, name: str, model: str = "BPR", **config):
    from recbole_ext.config import Config
    from recbole_ext.data import create_dataset

    settings = {"data_path": str(data_path), "state": "ERROR", "show_progress": False}
    settings.update(config)
    return create_dataset(Config(model=model, dataset=name, config_dict=settings))


def test_ml_1m(tmp_path):
    stats = movielens.convert(RAW / "ml-1m", tmp_path / "ml-1m")
    # SOURCES.md: 6,040 users, 3,706 rated movies, 1,000,209 ratings, rating histogram
    assert (stats["users"], stats["items"], stats["interactions"]) == (6040, 3706, 1000209)
    assert stats["ratings"] == {"1": 56174, "2": 107557, "3": 261197, "4": 348971, "5": 226310}
    assert stats["timestamp_range"] == [956703932, 1046454590]
    assert stats["sources"]["ratings.dat.gz"] == \
        "286bf74147e03c483e5eaef1480df636c39c538c05201ac024f3c9caddd92b58"
    assert stats["files"]["ml-1m.item"]["rows"] == 3883
    assert stats["files"]["ml-1m.user"]["rows"] == 6040
    dataset = load_with_recbole(tmp_path, "ml-1m")  # default load_col: the .inter only
    assert (dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num) == (6040, 3706, 1000209)


def test_book_crossing(tmp_path):
    stats = ripplenet_kg.convert(RAW / "book-crossing-kg", tmp_path / "bx")
    # SOURCES.md: 17,860 users, 14,967 items, 69,873 + 69,873 rows; KG 151,500 / 25 / 77,903
    assert (stats["users"], stats["items"], stats["interactions"]) == (17860, 14967, 139746)
    assert stats["labels"]["counts"] == {"0": 69873, "1": 69873}
    assert (stats["kg"]["triples"], stats["kg"]["relations"], stats["kg"]["entities"]) == \
        (151500, 25, 77903)
    dataset = load_with_recbole(tmp_path, "bx", model="KGCN", load_col=None)
    assert (dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num) == (17860, 14967, 139746)
    assert dataset.entity_num - 1 == 77903 and len(dataset.kg_feat) == 151500
    # KNI's relation filter (kni_rnncce.md 1.4): 15 of 25 relations, 31 triples removed
    kni = ripplenet_kg.convert(RAW / "book-crossing-kg", tmp_path / "bx-kni",
                               min_relation_triples=100)
    assert (kni["kg"]["triples"], kni["kg"]["relations"], kni["kg"]["dropped_triples"]) == \
        (151469, 10, 31)


def test_lastfm_hetrec_reproduces_kgcn_preprocessing(tmp_path):
    stats = lastfm_hetrec.convert(RAW / "lastfm-kg" / "raw", tmp_path / "lf")
    # SOURCES.md / KGCN paper: 1,872 users, 3,846 items, 42,346 rows, 60 relations, 15,518 triples
    assert (stats["users"], stats["items"], stats["interactions"]) == (1872, 3846, 42346)
    assert (stats["kg"]["triples"], stats["kg"]["relations"], stats["kg"]["entities"]) == \
        (15518, 60, 9366)
    # The KG and the positive rows equal the published ratings_final/kg_final (negatives are random).
    ours_kg = (tmp_path / "lf" / "lf.kg").read_text().splitlines()[1:]
    assert ours_kg == (RAW / "lastfm-kg" / "kg_final.txt").read_text().splitlines()
    ours_pos = {tuple(line.split("\t")[:2]) for line in
                (tmp_path / "lf" / "lf.inter").read_text().splitlines()[1:] if line.endswith("\t1")}
    published = {tuple(line.split("\t")[:2]) for line in
                 (RAW / "lastfm-kg" / "ratings_final.txt").read_text().splitlines()
                 if line.endswith("\t1")}
    assert ours_pos == published


def test_gowalla(tmp_path):
    stats = lightgcn.convert(RAW / "gowalla", tmp_path / "gowalla", valid_from_test="1/3")
    # SOURCES.md: 29,858 users, 40,981 items, 810,128 train + 217,242 test
    assert (stats["users"], stats["items"], stats["interactions"]) == (29858, 40981, 1027370)
    assert stats["splits"]["train"]["interactions"] == 810128
    assert stats["splits"]["valid"]["interactions"] + stats["splits"]["test"]["interactions"] == 217242
    dataset = load_with_recbole(tmp_path, "gowalla", benchmark_filename=["train", "valid", "test"])
    assert (dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num) == (29858, 40981, 1027370)
