"""dataset_atomic core: strict reading and validation, safe output, the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_atomic import ConversionError, ripplenet_kg, validate_atomic_file
from dataset_atomic._atomic import Conversion, detect_encoding, iter_records

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "raw"
BROKEN = FIXTURES / "broken"


# ---------------------------------------------------------------------------- broken inputs

@pytest.mark.parametrize("case, message", [
    ("truncated", r"broken/truncated/ratings_final\.txt:3: expected 3 tab-separated columns, "
                  r"got 2; the last line is incomplete, truncated file\? \('2\\t0'\)"),
    ("bad_separator", r"broken/bad_separator/ratings_final\.txt:1: expected 3 tab-separated "
                      r"columns, got 1; the line contains space, wrong separator\? \('0 0 1'\)"),
    ("non_utf8", r"broken/non_utf8/kg_final\.txt:2: not valid utf-8 text \(byte 0xff at column 5\)"),
    ("empty", r"broken/empty/ratings_final\.txt: empty file: no data lines"),
])
def test_broken_input_names_file_line_and_text_and_writes_nothing(tmp_path, case, message):
    output = tmp_path / "dataset" / "x"
    with pytest.raises(ConversionError, match=message):
        ripplenet_kg.convert(BROKEN / case, output)
    assert not (tmp_path / "dataset").exists()  # not even the parent it had to create


def test_blank_line_inside_file_is_an_error_but_trailing_blank_lines_are_not(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("1\t2\n\n3\t4\n")
    with pytest.raises(ConversionError, match=r"f\.txt:2: empty line in the middle"):
        list(iter_records(path, sep="\t", ncols=2))
    path.write_text("1\t2\n3\t4\n\n\n")
    assert [cols for _, cols, _ in iter_records(path, sep="\t", ncols=2)] == [["1", "2"], ["3", "4"]]


def test_doubled_separator_is_an_empty_column(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("0 1  2\n")
    with pytest.raises(ConversionError, match=r"f\.txt:1: empty column 3"):
        list(iter_records(path, sep=" ", min_cols=1))


def test_detect_encoding(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Misérables".encode("latin-1"))
    utf8 = tmp_path / "utf8.txt"
    utf8.write_bytes("Misérables".encode("utf-8"))
    assert detect_encoding(latin) == "latin-1"
    assert detect_encoding(utf8) == "utf-8"


# ---------------------------------------------------------------------------- validator

GOOD = "user_id:token\titem_id:token\trating:float\ttitle:token_seq\n1\t2\t3.5\ta b\n"


@pytest.mark.parametrize("content, message", [
    (GOOD.replace("\n", "\r\n"), r"x\.inter:1: CRLF line ending"),
    (GOOD.rstrip("\n"), r"x\.inter:2: missing final newline"),
    (GOOD.replace("3.5", "nan"), r"x\.inter:2: column 'rating' needs a finite number \('nan'\)"),
    (GOOD.replace("3.5", "—"), r"x\.inter:2: column 'rating' needs a finite number"),
    (GOOD.replace("rating:float", "rating:int"), r"x\.inter:1: header column 3 must be 'name:type'"),
    (GOOD.replace("item_id:token", "user_id:token"), r"x\.inter:1: duplicate field names"),
    (GOOD + "1\t2\t3\n", r"x\.inter:3: expected 4 tab-separated columns, got 3"),
    (GOOD + "\t2\t3\tc\n", r"x\.inter:3: empty id in column 'user_id'"),
    ("", r"x\.inter: empty file"),
])
def test_validate_atomic_file_rejects(tmp_path, content, message):
    path = tmp_path / "x.inter"
    path.write_bytes(content.encode("utf-8"))
    with pytest.raises(ConversionError, match=message):
        validate_atomic_file(path)


def test_validate_atomic_file_accepts_and_counts(tmp_path):
    path = tmp_path / "x.inter"
    path.write_text(GOOD + "3\t4\t1\t\n", encoding="utf-8")  # empty token_seq is allowed
    assert validate_atomic_file(path) == {
        "fields": ["user_id:token", "item_id:token", "rating:float", "title:token_seq"], "rows": 2}


def test_validate_atomic_file_rejects_non_utf8(tmp_path):
    path = tmp_path / "x.item"
    path.write_bytes(b"item_id:token\ttitle:token_seq\n1\tMis\xe9rables\n")
    with pytest.raises(ConversionError, match=r"x\.item:2: not valid UTF-8 \(byte 0xe9\)"):
        validate_atomic_file(path)


# ---------------------------------------------------------------------------- safe output

def test_existing_output_is_kept_without_force_and_replaced_with_force(tmp_path):
    output = tmp_path / "rk"
    output.mkdir()
    (output / "precious.txt").write_text("keep me")
    with pytest.raises(ConversionError, match=r"rk: output already exists; pass --force"):
        ripplenet_kg.convert(FIXTURES / "ripplenet-kg", output)
    assert (output / "precious.txt").read_text() == "keep me"
    ripplenet_kg.convert(FIXTURES / "ripplenet-kg", output, force=True)
    assert sorted(p.name for p in output.iterdir()) == ["rk.inter", "rk.kg", "rk.link", "stats.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rk"]  # no temp or backup left


def test_failed_force_run_keeps_the_old_output(tmp_path):
    output = tmp_path / "rk"
    ripplenet_kg.convert(FIXTURES / "ripplenet-kg", output)
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    with pytest.raises(ConversionError):
        ripplenet_kg.convert(BROKEN / "truncated", output, force=True)
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rk"]


def test_interrupted_conversion_leaves_nothing(tmp_path):
    output = tmp_path / "out" / "ds"
    with pytest.raises(KeyboardInterrupt):
        with Conversion("test", FIXTURES / "sequences", output, False, {}) as conv:
            conv.write("inter", ["user_id:token", "item_id:token"], [["1", "2"]])
            assert any(p.name.startswith(".ds.partial-") for p in output.parent.iterdir())
            raise KeyboardInterrupt
    assert not (tmp_path / "out").exists()


def test_written_values_may_not_break_the_format(tmp_path):
    with pytest.raises(ConversionError, match="value contains a tab or newline"):
        with Conversion("test", FIXTURES / "sequences", tmp_path / "ds", False, {}) as conv:
            conv.write("item", ["item_id:token", "title:token_seq"], [["1", "a\tb"]])
    assert not (tmp_path / "ds").exists()


def test_output_name_must_be_a_dataset_name(tmp_path):
    with pytest.raises(ConversionError, match="not a usable dataset name"):
        ripplenet_kg.convert(FIXTURES / "ripplenet-kg", tmp_path / "my data")


# ---------------------------------------------------------------------------- command line

def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "dataset_atomic", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_cli_converts_and_prints_summary(tmp_path):
    result = run_cli("ripplenet-kg", "--input", str(FIXTURES / "ripplenet-kg"),
                     "--output", str(tmp_path / "rk"), "--min-relation-triples", "2")
    assert result.returncode == 0, result.stderr
    assert "users 3  items 4  interactions 6" in result.stdout
    assert "KG triples 5  relations 2  entities 7" in result.stdout
    assert (tmp_path / "rk" / "stats.json").is_file()
    again = run_cli("ripplenet-kg", "--input", str(FIXTURES / "ripplenet-kg"),
                    "--output", str(tmp_path / "rk"))
    assert again.returncode == 2
    assert again.stderr.strip().endswith("output already exists; pass --force (force=True) to replace it")


def test_cli_input_error_is_one_line_without_traceback(tmp_path):
    result = run_cli("ripplenet-kg", "--input", str(BROKEN / "non_utf8"),
                     "--output", str(tmp_path / "dataset" / "x"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: ") and "kg_final.txt:2: not valid utf-8 text" in lines[0]
    assert not (tmp_path / "dataset").exists()


def test_cli_bad_option_value_is_an_input_error(tmp_path):
    result = run_cli("lightgcn", "--input", str(FIXTURES / "lightgcn"),
                     "--output", str(tmp_path / "lg"), "--valid-from-test", "2")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: valid_from_test must be in (0, 1); got '2'"


def test_cli_system_error_is_one_line_with_status_1(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    result = run_cli("sequences", "--input", str(FIXTURES / "sequences"),
                     "--output", str(blocker / "sq"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not_a_dir" in lines[0]
