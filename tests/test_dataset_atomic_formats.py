"""Each dataset_atomic converter on hand-written fixtures: exact output, stats, RecBole round-trip.

Expected rows and counts below are worked out by hand from the files in
``tests/fixtures/raw/<format>/``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from dataset_atomic import (
    ConversionError,
    devooght,
    lastfm_hetrec,
    leporid,
    lightgcn,
    movielens,
    ripplenet_kg,
    sequences,
    validate_atomic_file,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "raw"


def rows(path: Path) -> list[list[str]]:
    """Data lines of an atomic file, split on tabs (header excluded)."""
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:]]


def header(path: Path) -> str:
    return path.read_text(encoding="utf-8").splitlines()[0]


def load_with_recbole(data_path: Path, name: str, model: str = "BPR", **config):
    """RecBole's dataset built from our output (through recbole_ext's file check)."""
    from recbole_ext.config import Config
    from recbole_ext.data import create_dataset

    settings = {"data_path": str(data_path), "state": "ERROR", "show_progress": False}
    settings.update(config)
    return create_dataset(Config(model=model, dataset=name, config_dict=settings))


def counts(dataset) -> tuple[int, int, int]:
    """(users, items, interactions) as RecBole counts them (minus the padding id)."""
    return dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num


# ---------------------------------------------------------------------------- movielens

def test_movielens_100k_rows_fields_and_latin1_titles(tmp_path):
    stats = movielens.convert(FIXTURES / "ml-100k", tmp_path / "ml100k")
    out = tmp_path / "ml100k"
    assert header(out / "ml100k.inter") == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    assert rows(out / "ml100k.inter")[0] == ["1", "10", "4", "881250949"]
    assert header(out / "ml100k.user") == \
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"
    assert rows(out / "ml100k.user")[1] == ["2", "53", "F", "other", "94043"]
    assert header(out / "ml100k.item") == \
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq"
    items = {r[0]: r[1:] for r in rows(out / "ml100k.item")}
    assert items["10"] == ["Toy Story", "1995", "Animation Children's Comedy"]
    # latin-1 'é' decoded, title year preferred over the 1996 release date
    assert items["30"] == ["Misérables, Les", "1995", "Drama Musical"]
    # no year in the title and no release date: empty token, genre 'unknown'
    assert items["40"] == ["unknown", "", "unknown"]
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 4, 7)
    assert stats["density"] == round(7 / 12, 8)
    assert stats["ratings"] == {"1": 1, "2": 1, "3": 2, "4": 2, "5": 1}
    assert stats["timestamp_range"] == [881250949, 881250955]


def test_movielens_1m_and_gzip_ratings_give_identical_files(tmp_path):
    plain = movielens.convert(FIXTURES / "ml-1m", tmp_path / "a" / "ml1m")
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES / "ml-1m", raw)
    data = (raw / "ratings.dat").read_bytes()
    (raw / "ratings.dat").unlink()
    with gzip.open(raw / "ratings.dat.gz", "wb") as handle:
        handle.write(data)
    gz = movielens.convert(raw, tmp_path / "b" / "ml1m")
    for suffix in ("inter", "user", "item"):
        assert (tmp_path / "a" / "ml1m" / f"ml1m.{suffix}").read_bytes() == \
            (tmp_path / "b" / "ml1m" / f"ml1m.{suffix}").read_bytes()
    assert list(gz["sources"]) == ["ratings.dat.gz", "users.dat", "movies.dat"]
    items = {r[0]: r[1:] for r in rows(tmp_path / "a" / "ml1m" / "ml1m.item")}
    assert items["3408"] == ["Misérables, Les", "1995", "Drama Musical"]
    # only the last "(YYYY)" is the year; the alternative title stays in the title
    assert items["2000"] == ["City of Lost Children, The (Cité des enfants perdus, La)", "1995",
                             "Adventure Sci-Fi"]
    users = {r[0]: r[1:] for r in rows(tmp_path / "a" / "ml1m" / "ml1m.user")}
    assert users["1"] == ["1", "F", "10", "48067"]  # age, gender, occupation, zip reordered
    assert (plain["users"], plain["items"], plain["interactions"]) == (3, 3, 5)


def test_movielens_rating_for_unknown_movie_is_an_error(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES / "ml-1m", raw)
    with open(raw / "ratings.dat", "a") as handle:
        handle.write("3::9999::4::978297001\n")
    with pytest.raises(ConversionError, match=r"ratings\.dat:6: movie id 9999 is not in movies\.dat"):
        movielens.convert(raw, tmp_path / "out" / "ml")
    assert not (tmp_path / "out" / "ml").exists()


def test_movielens_duplicate_pair_is_an_error(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES / "ml-1m", raw)
    with open(raw / "ratings.dat", "a") as handle:
        handle.write("1::661::4::978302110\n")
    with pytest.raises(ConversionError, match=r"ratings\.dat:6: duplicate \(user, item\) pair, first on line 2"):
        movielens.convert(raw, tmp_path / "ml")


def test_movielens_roundtrip_through_recbole(tmp_path):
    movielens.convert(FIXTURES / "ml-100k", tmp_path / "mlx")
    dataset = load_with_recbole(tmp_path, "mlx", load_col=None)
    # item 50 is in u.item but unrated: RecBole counts it through the .item file
    assert counts(dataset) == (3, 5, 7)
    assert set(dataset.item_feat.columns) == {"item_id", "movie_title", "release_year", "genre"}
    assert set(dataset.user_feat.columns) == {"user_id", "age", "gender", "occupation", "zip_code"}
    assert sorted(dataset.inter_feat["rating"].tolist()) == [1.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0]


# ---------------------------------------------------------------------------- ripplenet-kg

def test_ripplenet_kg_files_link_and_relation_filter(tmp_path):
    stats = ripplenet_kg.convert(FIXTURES / "ripplenet-kg", tmp_path / "rk",
                                 min_relation_triples=2)
    out = tmp_path / "rk"
    assert header(out / "rk.inter") == "user_id:token\titem_id:token\tlabel:float"
    assert rows(out / "rk.inter")[:2] == [["0", "0", "1"], ["0", "2", "0"]]  # CRLF stripped
    assert rows(out / "rk.link") == [[str(i), str(i)] for i in range(4)]
    # relation 2 has one triple (< 2): dropped; relations 0 (3 triples) and 1 (2) stay
    assert rows(out / "rk.kg") == [["0", "0", "4"], ["1", "0", "4"], ["2", "0", "5"],
                                   ["3", "1", "6"], ["0", "1", "5"]]
    assert stats["kg"] == {"triples": 5, "relations": 2, "entities": 7, "dropped_relations": [2],
                           "dropped_triples": 1, "linked_items_without_triples": 0}
    assert stats["labels"] == {"counts": {"0": 3, "1": 3}, "positive_fraction": 0.5}
    assert stats["items_in_item_list"] == 4


def test_ripplenet_kg_filter_can_orphan_an_item(tmp_path):
    stats = ripplenet_kg.convert(FIXTURES / "ripplenet-kg", tmp_path / "rk",
                                 min_relation_triples=3)
    # only relation 0 is left; item 3 only had a relation-1 triple
    assert stats["kg"]["triples"] == 3
    assert stats["kg"]["entities"] == 5  # 0, 1, 2, 4, 5
    assert stats["kg"]["linked_items_without_triples"] == 1


@pytest.mark.parametrize("line, message", [
    ("3\t7\t1", r"ratings_final\.txt:7: item id out of range: the item list has 4 items"),
    ("3\t1\t2", r"ratings_final\.txt:7: label must be 0 or 1"),
    ("x\t1\t1", r"ratings_final\.txt:7: user id is not an integer \('x'\)"),
    ("2\t1\t1", r"ratings_final\.txt:7: duplicate \(user, item\) pair, first on line 6"),
])
def test_ripplenet_kg_bad_rating_rows(tmp_path, line, message):
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES / "ripplenet-kg", raw)
    with open(raw / "ratings_final.txt", "a", newline="") as handle:
        handle.write(line + "\r\n")
    with pytest.raises(ConversionError, match=message):
        ripplenet_kg.convert(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_ripplenet_kg_duplicate_triple(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES / "ripplenet-kg", raw)
    with open(raw / "kg_final.txt", "a") as handle:
        handle.write("3\t1\t6\n")
    with pytest.raises(ConversionError, match=r"kg_final\.txt:7: duplicate triple, first on line 4"):
        ripplenet_kg.convert(raw, tmp_path / "out")


def test_ripplenet_kg_roundtrip_through_recbole(tmp_path):
    ripplenet_kg.convert(FIXTURES / "ripplenet-kg", tmp_path / "rk")
    dataset = load_with_recbole(tmp_path, "rk", model="KGCN", load_col=None)
    assert counts(dataset) == (3, 4, 6)
    assert dataset.entity_num - 1 == 7
    assert len(dataset.kg_feat) == 6
    assert sorted(dataset.inter_feat["label"].tolist()) == [0.0] * 3 + [1.0] * 3


# ---------------------------------------------------------------------------- lastfm-hetrec

def test_lastfm_hetrec_positives_negatives_and_kg(tmp_path):
    stats = lastfm_hetrec.convert(FIXTURES / "lastfm-hetrec", tmp_path / "lf")
    inter = rows(tmp_path / "lf" / "lf.inter")
    # user 2 -> 0 (artists 51, 52 -> items 0, 1; artist 99 has no entity), user 5 -> 1
    # (artist 53 -> item 2); user 7 only listened to 99 and disappears.
    positives = [r for r in inter if r[2] == "1"]
    assert positives == [["0", "0", "1"], ["0", "1", "1"], ["1", "2", "1"]]
    negatives = [r for r in inter if r[2] == "0"]
    # user 0 has 2 positives and only items 2, 3 left: both must be drawn
    assert [r for r in negatives if r[0] == "0"] == [["0", "2", "0"], ["0", "3", "0"]]
    user1_neg = [r for r in negatives if r[0] == "1"]
    assert len(user1_neg) == 1 and user1_neg[0][1] in {"0", "1", "3"}
    # satori ids 100..103 are entities 0..3 (= items), 200 and 201 are new (4, 5)
    assert rows(tmp_path / "lf" / "lf.kg") == [["0", "0", "4"], ["1", "0", "4"],
                                               ["2", "1", "5"], ["4", "2", "3"]]
    assert stats["rows_without_entity"] == 2
    assert stats["kg"]["relations"] == 3 and stats["kg"]["entities"] == 6
    assert stats["seed"] == 555


def test_lastfm_hetrec_header_is_checked(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES / "lastfm-hetrec", raw)
    text = (raw / "user_artists.dat").read_text().replace("userID\t", "user\t", 1)
    (raw / "user_artists.dat").write_text(text)
    with pytest.raises(ConversionError, match=r"user_artists\.dat:1: expected the header"):
        lastfm_hetrec.convert(raw, tmp_path / "out")


# ---------------------------------------------------------------------------- lightgcn

def test_lightgcn_valid_from_test_moves_ceil_third(tmp_path):
    stats = lightgcn.convert(FIXTURES / "lightgcn", tmp_path / "lg", valid_from_test="1/3",
                             seed=2020)
    out = tmp_path / "lg"
    assert rows(out / "lg.train.inter") == [["0", "0"], ["0", "1"], ["0", "2"], ["1", "2"],
                                            ["1", "3"], ["2", "1"]]
    valid = rows(out / "lg.valid.inter")
    test = rows(out / "lg.test.inter")
    per_user = {u: ([i for v, i in valid if v == u], [i for v, i in test if v == u])
                for u in "012"}
    # test sizes 3, 1, 6 -> ceil(n/3) = 1, 1, 2 moved to validation
    assert [len(per_user[u][0]) for u in "012"] == [1, 1, 2]
    assert [len(per_user[u][1]) for u in "012"] == [2, 0, 4]
    original = {"0": ["3", "4", "5"], "1": ["0"], "2": ["0", "2", "3", "4", "5", "6"]}
    for user, (moved, kept) in per_user.items():
        assert sorted(moved + kept, key=int) == original[user]
        # both parts keep the file order
        assert moved == [i for i in original[user] if i in moved]
        assert kept == [i for i in original[user] if i in kept]
    assert stats["splits"]["valid"] == {"users": 3, "items": len({i for _, i in valid}),
                                        "interactions": 4}
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 7, 16)
    assert stats["options"] == {"valid_from_test": "1/3"} and stats["seed"] == 2020


def test_lightgcn_without_validation_and_overlap_error(tmp_path):
    stats = lightgcn.convert(FIXTURES / "lightgcn", tmp_path / "lg")
    assert sorted(p.name for p in (tmp_path / "lg").iterdir()) == \
        ["lg.test.inter", "lg.train.inter", "stats.json"]
    assert stats["benchmark_filename"] == ["train", "test", "test"] and stats["seed"] is None
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES / "lightgcn", raw)
    (raw / "test.txt").write_text("0 3 4 5\n1 0 3\n")
    with pytest.raises(ConversionError, match=r"test\.txt:2: \(user 1, item 3\) is also in train\.txt"):
        lightgcn.convert(raw, tmp_path / "bad")


@pytest.mark.parametrize("value", ["3/2", "abc", "-1"])
def test_lightgcn_rejects_bad_fraction(tmp_path, value):
    with pytest.raises(ConversionError, match="valid_from_test"):
        lightgcn.convert(FIXTURES / "lightgcn", tmp_path / "lg", valid_from_test=value)


def test_lightgcn_roundtrip_through_recbole_benchmark_files(tmp_path):
    lightgcn.convert(FIXTURES / "lightgcn", tmp_path / "lg", valid_from_test="1/3")
    dataset = load_with_recbole(tmp_path, "lg", benchmark_filename=["train", "valid", "test"])
    assert counts(dataset) == (3, 7, 16)
    assert dataset.file_size_list == [6, 4, 6]


# ---------------------------------------------------------------------------- leporid

def test_leporid_splits_and_repeated_pairs(tmp_path):
    stats = leporid.convert(FIXTURES / "leporid", tmp_path / "lp")
    out = tmp_path / "lp"
    assert rows(out / "lp.valid.inter") == [["0", "2", "4", "200"], ["1", "0", "5", "201"]]
    assert stats["splits"]["test"] == {"users": 2, "items": 1, "interactions": 3,
                                       "repeated_user_item_pairs": 1}
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 4, 10)
    dataset = load_with_recbole(tmp_path, "lp", load_col=None,
                                benchmark_filename=["train", "valid", "test"])
    assert counts(dataset) == (3, 4, 10)


def test_leporid_missing_split_needs_partial(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(FIXTURES / "leporid" / "tiny_validate.txt", raw)
    with pytest.raises(ConversionError, match=r"missing tiny_train\.txt, tiny_test\.txt \(pass --partial"):
        leporid.convert(raw, tmp_path / "lp")
    stats = leporid.convert(raw, tmp_path / "lp", partial=True)
    assert stats["missing_splits"] == ["tiny_train.txt", "tiny_test.txt"]
    assert sorted(p.name for p in (tmp_path / "lp").iterdir()) == ["lp.valid.inter", "stats.json"]


def test_leporid_identical_repeated_line_is_an_error(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES / "leporid", raw)
    with open(raw / "tiny_train.txt", "a") as handle:
        handle.write("0 1 3 101\n")
    with pytest.raises(ConversionError, match=r"tiny_train\.txt:6: duplicate row, first on line 2"):
        leporid.convert(raw, tmp_path / "lp")


# ---------------------------------------------------------------------------- sequences

def test_sequences_positions_as_time(tmp_path):
    stats = sequences.convert(FIXTURES / "sequences", tmp_path / "sq")
    assert header(tmp_path / "sq" / "sq.inter") == "user_id:token\titem_id:token\ttimestamp:float"
    assert rows(tmp_path / "sq" / "sq.inter") == [
        ["1", "5", "0"], ["1", "6", "1"], ["1", "7", "2"], ["2", "6", "0"], ["2", "8", "1"],
        ["3", "5", "0"], ["3", "9", "1"], ["3", "5", "2"]]
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 5, 8)
    assert stats["repeated_items_within_sequences"] == 1
    assert stats["sequence_length"] == {"min": 2, "max": 3, "mean": round(8 / 3, 4)}
    dataset = load_with_recbole(tmp_path, "sq", load_col=None)
    assert counts(dataset) == (3, 5, 8)


def test_sequences_user_twice_is_an_error(tmp_path):
    bad = tmp_path / "seq.txt"
    bad.write_text("1 5 6\n2 7\n1 8\n")
    with pytest.raises(ConversionError, match=r"seq\.txt:3: user listed twice, first on line 1"):
        sequences.convert(bad, tmp_path / "sq")


# ---------------------------------------------------------------------------- devooght

def test_devooght_filters_and_user_disjoint_split(tmp_path):
    stats = devooght.convert(FIXTURES / "devooght" / "timed.inter", tmp_path / "dv",
                             valid_users="1", test_users="1", min_item_pop=2, seed=1)
    out = tmp_path / "dv"
    parts = {s: rows(out / f"dv.{s}.inter") for s in ("train", "valid", "test")}
    users = {s: {r[0] for r in part} for s, part in parts.items()}
    # u5 (1 interaction) and i9 (1 interaction) are filtered out; 5 users remain
    assert users["train"] | users["valid"] | users["test"] == {"u1", "u2", "u3", "u4", "u6"}
    assert len(users["valid"]) == 1 and len(users["test"]) == 1 and len(users["train"]) == 3
    assert not (users["train"] & users["valid"] or users["train"] & users["test"]
                or users["valid"] & users["test"])
    everything = [r for part in parts.values() for r in part]
    assert len(everything) == 11 and all(r[1] != "i9" for r in everything)
    # each user's history is chronological: u1 has i1@5, i2@3, i3@4 in the input
    u1 = [r for r in everything if r[0] == "u1"]
    assert u1 == [["u1", "i2", "3"], ["u1", "i3", "4"], ["u1", "i1", "5"]]
    assert stats["filtered_out_interactions"] == 2
    assert header(out / "dv.train.inter") == "user_id:token\titem_id:token\ttimestamp:float"
    dataset = load_with_recbole(tmp_path, "dv", benchmark_filename=["train", "valid", "test"])
    assert counts(dataset) == (5, 3, 11)


def test_devooght_fraction_and_too_many_users(tmp_path):
    stats = devooght.convert(FIXTURES / "devooght" / "timed.inter", tmp_path / "dv",
                             valid_users=0.2, test_users=0.2, min_item_pop=2)
    # floor(0.2 * 5) = 1 user each
    assert stats["splits"]["valid"]["users"] == 1 and stats["splits"]["test"]["users"] == 1
    with pytest.raises(ConversionError, match=r"valid \(3\) \+ test \(2\) users leave no training user"):
        devooght.convert(FIXTURES / "devooght" / "timed.inter", tmp_path / "dv2",
                         valid_users=3, test_users=2, min_item_pop=2)
    with pytest.raises(ConversionError, match="must be a whole number"):
        devooght.convert(FIXTURES / "devooght" / "timed.inter", tmp_path / "dv3", valid_users=1.5)


def test_devooght_needs_time_field(tmp_path):
    inter = tmp_path / "x.inter"
    inter.write_text("user_id:token\titem_id:token\nu1\ti1\n")
    with pytest.raises(ConversionError, match=r"x\.inter:1: field 'timestamp' not in the header"):
        devooght.convert(inter, tmp_path / "dv")


# ---------------------------------------------------------------------------- all formats

CASES = [
    (movielens.convert, FIXTURES / "ml-1m", {}),
    (ripplenet_kg.convert, FIXTURES / "ripplenet-kg", {"min_relation_triples": 2}),
    (lastfm_hetrec.convert, FIXTURES / "lastfm-hetrec", {"seed": 3}),
    (lightgcn.convert, FIXTURES / "lightgcn", {"valid_from_test": "1/3", "seed": 5}),
    (leporid.convert, FIXTURES / "leporid", {}),
    (sequences.convert, FIXTURES / "sequences", {}),
    (devooght.convert, FIXTURES / "devooght" / "timed.inter",
     {"valid_users": 1, "test_users": 1, "min_item_pop": 2, "seed": 4}),
]


@pytest.mark.parametrize("convert, source, options", CASES,
                         ids=[c[0].__module__.split(".")[-1] for c in CASES])
def test_deterministic_valid_and_traceable(tmp_path, convert, source, options):
    first = convert(source, tmp_path / "a" / "ds", **options)
    convert(source, tmp_path / "b" / "ds", **options)
    names = sorted(p.name for p in (tmp_path / "a" / "ds").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b" / "ds").iterdir())
    for name in names:  # byte-identical, stats.json included
        assert (tmp_path / "a" / "ds" / name).read_bytes() == (tmp_path / "b" / "ds" / name).read_bytes()
    stats = json.loads((tmp_path / "a" / "ds" / "stats.json").read_text())
    assert stats == first
    for filename, info in stats["files"].items():
        path = tmp_path / "a" / "ds" / filename
        assert validate_atomic_file(path)["rows"] == info["rows"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"]
    base = source if source.is_dir() else source.parent
    for name, digest in stats["sources"].items():
        assert hashlib.sha256((base / name).read_bytes()).hexdigest() == digest
    assert stats["converter_version"] == "0.1.0"


def test_seed_changes_sampled_output(tmp_path):
    a = lightgcn.convert(FIXTURES / "lightgcn", tmp_path / "a" / "lg", valid_from_test="1/3", seed=0)
    outputs = {(tmp_path / "a" / "lg" / "lg.valid.inter").read_text()}
    for seed in range(1, 6):
        lightgcn.convert(FIXTURES / "lightgcn", tmp_path / str(seed) / "lg",
                         valid_from_test="1/3", seed=seed)
        outputs.add((tmp_path / str(seed) / "lg" / "lg.valid.inter").read_text())
    assert len(outputs) > 1 and a["seed"] == 0


def test_movielens_truncated_gzip_is_an_error(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = "".join(f"{u}::{i}::3::978300000\n" for u in range(1, 40) for i in range(1, 200))
    packed = gzip.compress(lines.encode())
    (raw / "ratings.dat.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ConversionError, match=r"ratings\.dat\.gz: cannot read: Compressed file ended"):
        movielens.convert(raw, tmp_path / "ml")
    assert not (tmp_path / "ml").exists()
