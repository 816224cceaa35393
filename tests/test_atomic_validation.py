"""Atomic files are validated before RecBole reads them (recbole_ext.data.validation).

Every broken file must stop the run with one ``file:line: what was expected`` message, and
every file RecBole reads correctly must pass. Each case is a tiny generated dataset with
one defect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, base_config, write_tiny_dataset
from dataset_atomic._atomic import check_atomic_file
from recbole_ext import Config
from recbole_ext.data import AtomicFileError, create_dataset, validate_dataset_files
from recbole_ext.data import validation

NAME = "broken"
KG_LOAD = {"inter": ["user_id", "item_id"], "kg": ["head_id", "relation_id", "tail_id"],
           "link": ["item_id", "entity_id"]}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test starts with an empty validation cache of its own."""
    monkeypatch.setenv(validation.CACHE_ENV, str(tmp_path / "cache"))


def dataset(tmp_path: Path, **files: str | bytes) -> Path:
    """The tiny dataset, named ``broken``; ``files`` replace or add files by suffix
    (``inter`` is ``broken.inter``, ``valid_inter`` is ``broken.valid.inter``)."""
    root = write_tiny_dataset(tmp_path / "data", NAME)
    for suffix, content in files.items():
        path = root / NAME / f"{NAME}.{suffix.replace('_', '.')}"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    return root


def file_text(root: Path, suffix: str) -> str:
    return (root / NAME / f"{NAME}.{suffix}").read_text(encoding="utf-8")


def config(tmp_path: Path, root: Path, model: str = "BPR", **overrides) -> Config:
    return Config(config_dict=base_config(tmp_path, str(root), model=model, dataset=NAME,
                                          **overrides))


def check(tmp_path: Path, root: Path, model: str = "BPR", **overrides) -> list[str]:
    return validate_dataset_files(config(tmp_path, root, model, **overrides))


def inter_with(tmp_path: Path, row: str, at: int = 3) -> Path:
    """The tiny dataset whose ``.inter`` line ``at`` (1-based) is replaced by ``row``."""
    lines = (write_tiny_dataset(tmp_path / "orig", NAME) / NAME / f"{NAME}.inter").read_text()
    lines = lines.splitlines(keepends=True)
    lines[at - 1] = row
    return dataset(tmp_path, inter="".join(lines))


# ---------------------------------------------------------------------------- issue table

def test_truncated_last_row_is_an_error_naming_its_line(tmp_path):
    lines = file_text(dataset(tmp_path), "inter").count("\n")
    root = dataset(tmp_path, inter=file_text(dataset(tmp_path), "inter") + "196\t242")
    with pytest.raises(AtomicFileError, match=rf"broken\.inter:{lines + 1}: expected 5 "
                       r"tab-separated columns, got 2; the last line is incomplete, truncated "
                       r"file\? \('196\\t242'\)"):
        check(tmp_path, root)


def test_non_numeric_rating_is_an_error_when_loaded(tmp_path):
    root = inter_with(tmp_path, "1\t2\tfive\t100\t1\n")
    with pytest.raises(AtomicFileError,
                       match=r"broken\.inter:3: column 'rating' needs a finite number \('five'\)"):
        check(tmp_path, root, load_col={"inter": ["user_id", "item_id", "rating"]})


def test_non_numeric_rating_is_an_error_even_when_not_loaded(tmp_path):
    root = inter_with(tmp_path, "1\t2\tfive\t100\t1\n")
    with pytest.raises(AtomicFileError,
                       match=r"broken\.inter:3: column 'rating' needs a finite number \('five'\)"):
        check(tmp_path, root)  # BPR loads user_id and item_id only


def test_header_without_types_names_the_header(tmp_path):
    body = file_text(dataset(tmp_path), "inter").split("\n", 1)[1]
    root = dataset(tmp_path, inter="user_id\titem_id\trating\ttimestamp\tlabel\n" + body)
    with pytest.raises(AtomicFileError, match=r"broken\.inter:1: header column 1 must be "
                       r"'name:type' with type one of token, float, token_seq, float_seq"):
        check(tmp_path, root)


def test_comma_separated_file_suggests_the_separator(tmp_path):
    root = dataset(tmp_path, inter=file_text(dataset(tmp_path), "inter").replace("\t", ","))
    with pytest.raises(AtomicFileError, match=r"broken\.inter:1: header column 1 must be "
                       r"'name:type'.*contains comma, wrong separator\? \(field_separator is tab\)"):
        check(tmp_path, root)


def test_comma_separated_file_passes_with_field_separator_comma(tmp_path):
    root = dataset(tmp_path, inter=file_text(dataset(tmp_path), "inter").replace("\t", ","))
    assert check(tmp_path, root, field_separator=",") == []


@pytest.mark.parametrize("content, message", [
    ("", r"broken\.inter: empty file: no header"),
    ("user_id:token\titem_id:token\n", r"broken\.inter: no data rows after the header"),
])
def test_empty_inter_file(tmp_path, content, message):
    with pytest.raises(AtomicFileError, match=message):
        check(tmp_path, dataset(tmp_path, inter=content))


def test_latin1_byte_names_line_and_column(tmp_path):
    root = inter_with(tmp_path, "1\tMis\xe9rables\t3\t100\t1\n", at=2)
    path = root / NAME / f"{NAME}.inter"
    path.write_bytes(path.read_bytes().replace("é".encode("utf-8"), b"\xe9"))
    with pytest.raises(AtomicFileError, match=r"broken\.inter:2: not valid UTF-8 \(byte 0xe9\) "
                       r"at column 6; RecBole reads atomic files as UTF-8 \(config key 'encoding'\)"):
        check(tmp_path, root)
    assert check(tmp_path, root, encoding="latin-1") == []


def test_kg_without_relation_field_names_the_config_key(tmp_path):
    triples = file_text(dataset(tmp_path), "kg").splitlines()
    kg = "".join(f"{parts[0]}\t{parts[2]}\n" for parts in (t.split("\t") for t in triples))
    root = dataset(tmp_path, kg=kg)
    with pytest.raises(AtomicFileError, match=r"broken\.kg:1: needs the field 'relation_id' "
                       r"\(config key RELATION_ID_FIELD\); the header has head_id, tail_id"):
        check(tmp_path, root, model="KNI", load_col=KG_LOAD)


def test_kg_field_left_out_by_load_col(tmp_path):
    root = dataset(tmp_path)
    load_col = dict(KG_LOAD, kg=["head_id", "tail_id"])
    with pytest.raises(AtomicFileError, match=r"broken\.kg:1: needs the field 'relation_id' "
                       r"\(config key RELATION_ID_FIELD\), but load_col/unload_col leave it out"):
        check(tmp_path, root, model="KNI", load_col=load_col)


def test_link_rows_for_unknown_items_are_a_warning_with_count_and_ids(tmp_path):
    root = dataset(tmp_path, link=file_text(dataset(tmp_path), "link") + "998\tx1\n999\tx2\n")
    warnings = check(tmp_path, root, model="KNI", load_col=KG_LOAD)
    assert len(warnings) == 1
    assert ("broken.link: 2 of 62 rows name an item that is in no interaction (broken.inter), "
            "e.g. '998', '999'; RecBole's knowledge-graph dataset drops them") in warnings[0]


def test_items_without_link_report_the_interactions_recbole_drops(tmp_path):
    link = file_text(dataset(tmp_path), "link").splitlines(keepends=True)
    root = dataset(tmp_path, link="".join(link[:-2]))  # items 59 and 60 lose their link
    inter = file_text(root, "inter").splitlines()[1:]
    dropped = sum(1 for line in inter if line.split("\t")[1] in ("59", "60"))
    warnings = check(tmp_path, root, model="KNI", load_col=KG_LOAD)
    assert any(f"broken.inter: 2 of 60 items have no .link row to a KG entity, e.g. '59', '60'; "
               f"RecBole's knowledge-graph dataset drops their {dropped} of {len(inter)} "
               "interactions" in w for w in warnings), warnings


def test_link_entities_missing_from_the_kg_are_reported(tmp_path):
    root = dataset(tmp_path, link=file_text(dataset(tmp_path), "link").replace("\te60\n", "\tz60\n"))
    warnings = check(tmp_path, root, model="KNI", load_col=KG_LOAD)
    assert any("broken.link: 1 of 60 rows link to an entity that is in no .kg triple, e.g. "
               "'z60'" in w for w in warnings), warnings


# ---------------------------------------------------------------------------- more defects

@pytest.mark.parametrize("row, message", [
    ("1\t2\t3\t100\t1\textra\n", r"broken\.inter:3: expected 5 tab-separated columns, got 6"),
    ("\t2\t3\t100\t1\n", r"broken\.inter:3: empty id in column 'user_id'"),
    ("1\t2\tinf\t100\t1\n", r"broken\.inter:3: column 'rating' needs a finite number \('inf'\)"),
    ("1\t2\t1e400\t100\t1\n", r"broken\.inter:3: column 'rating' needs a finite number"),
    ('1\t"2\t3\t100\t1\n', r"broken\.inter:3: column 'item_id' starts with a double quote"),
    # pandas reads a float column of only booleans, but fails on one mixed with numbers
    ("1\t2\tTrue\t100\t1\n", r"broken\.inter:3: column 'rating' needs a finite number \('True'\)"),
    ("1 2 3 100 1\n", r"broken\.inter:3: expected 5 tab-separated columns, got 1; the line "
                      r"contains space, wrong separator\?"),
])
def test_malformed_row(tmp_path, row, message):
    root = inter_with(tmp_path, row)
    with pytest.raises(AtomicFileError, match=message):
        check(tmp_path, root, load_col={"inter": ["user_id", "item_id", "rating"]})


def test_byte_order_mark_is_an_error(tmp_path):
    root = dataset(tmp_path, inter="\ufeff" + file_text(dataset(tmp_path), "inter"))
    with pytest.raises(AtomicFileError, match=r"broken\.inter:1: the file starts with a "
                       r"byte-order mark"):
        check(tmp_path, root)


def test_every_benchmark_part_is_checked(tmp_path):
    inter = file_text(dataset(tmp_path), "inter").splitlines(keepends=True)
    header, rows = inter[0], inter[1:]
    root = dataset(tmp_path, train_inter=header + "".join(rows[:300]),
                   valid_inter=header + "".join(rows[300:400]) + "7\t8\n",
                   test_inter=header + "".join(rows[400:]))
    with pytest.raises(AtomicFileError, match=r"broken\.valid\.inter:102: expected 5"):
        check(tmp_path, root, benchmark_filename=["train", "valid", "test"])


def test_user_file_is_checked_only_when_loaded(tmp_path):
    user = file_text(dataset(tmp_path), "user") + "99\t18\n"
    root = dataset(tmp_path, user=user)
    assert check(tmp_path, root) == []  # BPR's load_col leaves the .user file out
    with pytest.raises(AtomicFileError, match=r"broken\.user:42: expected 5 tab-separated"):
        check(tmp_path, root, load_col={"inter": ["user_id", "item_id"], "user": ["user_id", "age"]})


def test_float_seq_parts_must_be_numbers(tmp_path):
    item = file_text(dataset(tmp_path), "item").splitlines()
    item = [item[0] + "\tvec:float_seq"] + [f"{line}\t0.5 1 -2" for line in item[1:]]
    item[4] = item[4].replace("0.5 1 -2", "0.5 x")
    root = dataset(tmp_path, item="\n".join(item) + "\n")
    with pytest.raises(AtomicFileError, match=r"broken\.item:5: column 'vec' needs finite "
                       r"numbers separated by ' ' \('0\.5 x'\)"):
        check(tmp_path, root, load_col=None)


def test_additional_feature_files_are_checked(tmp_path):
    root = dataset(tmp_path, net="source_id:token\ttarget_id:token\n1\t2\n3\n")
    with pytest.raises(AtomicFileError, match=r"broken\.net:3: expected 2 tab-separated"):
        check(tmp_path, root, additional_feat_suffix=["net"],
              load_col={"inter": ["user_id", "item_id"], "net": ["source_id", "target_id"]})


def test_create_dataset_raises_before_recbole_reads(tmp_path):
    root = inter_with(tmp_path, "1\t2\n")
    with pytest.raises(AtomicFileError, match=r"broken\.inter:3: expected 5"):
        create_dataset(config(tmp_path, root))
    assert issubclass(AtomicFileError, ValueError)  # the CLI prints it as one line, exit 2


# ---------------------------------------------------------------------------- what RecBole reads passes

def test_files_recbole_reads_correctly_pass_and_load_the_same_rows(tmp_path):
    """CRLF, no final newline, blank lines, missing floats, pandas' number spellings."""
    lines = file_text(dataset(tmp_path), "inter").splitlines()
    lines[2] = "1\t2\t\t100\t1"  # missing rating: RecBole fills in the mean
    lines[3] = "1\t3\tnan\t100\t1"
    lines[4] = "1\t4\t1_000\t100\t1"  # RecBole's Python reader takes Python's float()
    lines[5] = "1\t5\tNan\t100\t1"
    text = "\r\n".join(lines[:200]) + "\r\n\r\n  \r\n" + "\r\n".join(lines[200:])
    root = dataset(tmp_path, inter=text)
    assert check(tmp_path, root, load_col=None) == []
    report = check_atomic_file(root / NAME / f"{NAME}.inter", strict=False)
    recbole = create_dataset(config(tmp_path, root, load_col=None, filter_inter_by_user_or_item=False))
    assert report.rows == len(lines) - 1 == len(recbole.inter_feat)


def test_multi_character_field_separator(tmp_path):
    text = file_text(dataset(tmp_path), "inter").replace("\t", "::")
    root = dataset(tmp_path, inter=text)
    assert check(tmp_path, root, field_separator="::") == []
    recbole = create_dataset(config(tmp_path, root, field_separator="::"))
    assert len(recbole.inter_feat) == text.count("\n") - 1
    lines = text.splitlines(keepends=True)
    lines[1] = lines[1].replace("\n", "::9\n")
    root = dataset(tmp_path, inter="".join(lines))
    with pytest.raises(AtomicFileError, match=r"broken\.inter:2: expected 5 '::'-separated "
                       r"columns, got 6"):
        check(tmp_path, root, field_separator="::")


def test_seq_separator_applies_to_float_seq(tmp_path):
    item = file_text(dataset(tmp_path), "item").splitlines()
    item = [item[0] + "\tvec:float_seq"] + [f"{line}\t0.5,1" for line in item[1:]]
    root = dataset(tmp_path, item="\n".join(item) + "\n")
    assert check(tmp_path, root, load_col=None, seq_separator=",") == []
    with pytest.raises(AtomicFileError, match=r"broken\.item:2: column 'vec' needs finite "
                       r"numbers separated by ' ', here and in 59 more rows \('0\.5,1'\)"):
        check(tmp_path, root, load_col=None)


# ---------------------------------------------------------------------------- cache

def test_results_are_cached_until_the_file_changes(tmp_path, monkeypatch):
    root = inter_with(tmp_path, "1\t2\t5\t100\t1\n")
    assert check(tmp_path, root) == []
    cache_file = validation.default_cache_file()
    assert cache_file == tmp_path / "cache" / "atomic_validation.json" and cache_file.is_file()
    calls = []
    real = validation.check_atomic_file
    monkeypatch.setattr(validation, "check_atomic_file",
                        lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    assert check(tmp_path, root) == []  # answered from the cache
    assert calls == []
    inter = root / NAME / f"{NAME}.inter"
    inter.write_text(inter.read_text().replace("1\t2\t5\t100", "1\t2\tfive\t100"))
    with pytest.raises(AtomicFileError, match="'five'"):  # a changed file is checked again
        check(tmp_path, root)
    assert calls == [inter]
    inter.write_text(inter.read_text().replace("five", "4"))
    assert check(tmp_path, root) == [] and len(calls) == 2
    check(tmp_path, root, load_col=None)  # other loaded fields: checked again
    assert len(calls) == 5  # .inter, .user, .item


def test_kg_cross_check_is_cached_with_its_warnings(tmp_path, monkeypatch):
    root = dataset(tmp_path, link=file_text(dataset(tmp_path), "link") + "999\tx1\n")
    first = check(tmp_path, root, model="KNI", load_col=KG_LOAD)
    assert any("'999'" in w for w in first)
    calls = []
    real = validation.check_atomic_file
    monkeypatch.setattr(validation, "check_atomic_file",
                        lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    assert check(tmp_path, root, model="KNI", load_col=KG_LOAD) == first
    assert calls == []
    (root / NAME / f"{NAME}.link").write_text(file_text(root, "link").replace("999\tx1\n", ""))
    assert check(tmp_path, root, model="KNI", load_col=KG_LOAD) == []
    assert sorted(p.suffix for p in calls) == [".inter", ".kg", ".link"]  # values re-read


def test_unwritable_cache_directory_is_ignored(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv(validation.CACHE_ENV, str(blocker / "cache"))
    with pytest.raises(AtomicFileError, match=r"broken\.inter:3: expected 5"):
        check(tmp_path, inter_with(tmp_path, "1\t2\n"))
    assert check(tmp_path, dataset(tmp_path)) == []


def test_corrupt_cache_file_is_ignored(tmp_path):
    validation.default_cache_file().parent.mkdir(parents=True)
    validation.default_cache_file().write_text("{not json")
    assert check(tmp_path, dataset(tmp_path)) == []
    assert "entries" in json.loads(validation.default_cache_file().read_text())


def test_default_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv(validation.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert validation.default_cache_file() == tmp_path / "xdg" / "recbole_ext" / "atomic_validation.json"


# ---------------------------------------------------------------------------- command line

def test_cli_reports_a_broken_file_in_one_line(tmp_path):
    root = inter_with(tmp_path, "196\t242\n")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_recbole_ext.py"), "--model", "BPR", "--dataset",
         NAME, f"--data_path={root}", "--epochs=1", "--state=ERROR",
         f"--checkpoint_dir={tmp_path / 'saved'}"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == (
        f"error: {root / NAME / (NAME + '.inter')}:3: expected 5 tab-separated columns, got 2 "
        "('196\\t242')")
