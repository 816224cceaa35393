"""The bad-input catalogue: what a user can get wrong, run as the user runs it.

Every case runs the CLI (or the converter CLI) in a subprocess from an empty working directory
and asserts: exit status 2, exactly one line on stderr that names the file and line or the key,
no traceback, and nothing new on disk (working directory, data folder, checkpoint folder).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, write_tiny_dataset

CLI = [sys.executable, str(REPO_ROOT / "run_recbole_ext.py")]
CONVERT = [sys.executable, "-m", "dataset_atomic"]
FAST = ["--epochs=1", "--show_progress=False", "--state=ERROR"]
KNI_DATA = ["--load_col={'inter': ['user_id', 'item_id', 'label'], 'kg': ['head_id', 'relation_id', "
            "'tail_id'], 'link': ['item_id', 'entity_id']}", "--train_neg_sample_args=None",
            "--eval_args={'split': {'RS': [0.6, 0.2, 0.2]}, 'order': 'RO', 'group_by': None, 'mode': 'labeled'}",
            "--metrics=['AUC', 'LogLoss']", "--valid_metric=AUC", "--max_degree=8", "--hop_n_sample=1,4",
            "--embedding_size=8"]


def snapshot(*roots: Path) -> dict[str, int | None]:
    """Every file (with its modification time) and folder under ``roots``."""
    found = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            if path.exists():
                found[str(path)] = None if path.is_dir() else path.stat().st_mtime_ns
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A data folder with the tiny dataset and broken variants of it, and a BPR checkpoint."""
    base = tmp_path_factory.mktemp("bad_inputs")
    data = write_tiny_dataset(base / "data")
    tiny = data / "tiny"

    def variant(name: str, **files: str | bytes) -> None:
        folder = data / name
        folder.mkdir()
        for suffix in ("inter", "user", "item", "kg", "link"):
            content = files.get(suffix, (tiny / f"tiny.{suffix}").read_bytes())
            target = folder / f"{name}.{suffix}"
            target.write_bytes(content if isinstance(content, bytes) else content.encode())

    inter = (tiny / "tiny.inter").read_text()
    header, *rows = inter.splitlines()
    variant("truncated", inter=inter + "196\t242\n")
    variant("fiverating", inter="\n".join([header, rows[0], "1\t2\tfive\t100\t1", *rows[1:]]) + "\n")
    variant("infrating", inter="\n".join([header, "1\t2\tinf\t100\t1", *rows]) + "\n")
    variant("untyped", inter="\n".join([re.sub(r":\w+", "", header), *rows]) + "\n")
    variant("commas", inter="\n".join(line.replace("\t", ",") for line in inter.splitlines()) + "\n")
    variant("empty", inter="")
    variant("headeronly", inter=header + "\n")
    variant("latin1", inter=inter.encode() + "3\t4\t5\t100\t1\tcaf\xe9\n".encode("latin-1"))
    variant("shortrow", inter="\n".join([header, rows[0], "7\t8\t4", *rows[1:]]) + "\n")
    variant("badtype", item="item_id:token\ttitle:int\n1\tx\n")
    variant("twocolkg", kg="head_id:token\ttail_id:token\ne1\tx1\n")
    variant("twicelinked", link=(tiny / "tiny.link").read_text() + "61\te1\n")
    variant("small", inter="\n".join([header] + [r for r in rows if int(r.split("\t")[0]) <= 20]) + "\n")
    parts = data / "parts"
    parts.mkdir()
    (parts / "parts.train.inter").write_text("\n".join([header, *rows[:300]]) + "\n")
    (parts / "parts.valid.inter").write_text("\n".join([header, *rows[300:350], "9\t2\tnine\t1\t1"]) + "\n")
    (parts / "parts.test.inter").write_text("\n".join([header, *rows[350:400]]) + "\n")

    work = base / "train"
    work.mkdir()
    saved = base / "saved"
    trained = subprocess.run([*CLI, "--model", "BPR", "--dataset", "tiny", f"--data_path={data}",
                              f"--checkpoint_dir={saved}", *FAST], cwd=work, capture_output=True, text=True,
                             timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    checkpoint = next(saved.glob("BPR-tiny-*.pth"))
    files = base / "files"
    files.mkdir()
    (files / "results.json").write_text(json.dumps({"model": "BPR", "test_result": {}}))
    (files / "empty.pth").write_bytes(b"")
    (files / "notes.txt").write_text("not a checkpoint\n")
    (files / "bad.yaml").write_text("epochs: 3\nlearning_rate: [0.1\n")
    (files / "grid.hyper").write_text("learning_rate choice [0.001,0.01,0.1]\n")
    ml = base / "raw-ml"
    ml.mkdir()
    (ml / "ratings.dat").write_text("1::1193::5::978300760\n1::661\n")
    (ml / "users.dat").write_text("1::F::1::10::48067\n")
    (ml / "movies.dat").write_text("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n")
    bx = base / "raw-bx"
    bx.mkdir()
    (bx / "ratings_final.txt").write_text("0\t1\t1\n0\t2\n")
    (bx / "kg_final.txt").write_text("1\t0\t5\n")
    return {"base": base, "data": data, "saved": saved, "checkpoint": checkpoint, "files": files,
            "ml": ml, "bx": bx}


def run_case(world, tmp_path, command: list[str]) -> subprocess.CompletedProcess:
    work = tmp_path / "work"
    work.mkdir()
    watched = (world["data"], world["saved"], world["files"], work)
    before = snapshot(*watched)
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    after = snapshot(*watched)
    assert after == before, f"files changed: {sorted(set(after) ^ set(before))}"
    return proc


def train(world, model: str, dataset: str, *extra: str) -> list[str]:
    given = {arg.split("=")[0] for arg in extra}
    return [*CLI, "--model", model, "--dataset", dataset, f"--data_path={world['data']}",
            f"--checkpoint_dir={world['saved']}", *[a for a in FAST if a.split("=")[0] not in given], *extra]


# (case id, command builder, what the one-line message must contain: a regex)
CASES = [
    # atomic files (the table first)
    ("truncated-last-row", lambda w: train(w, "BPR", "truncated"),
     r"truncated\.inter:\d+: expected 5 tab-separated columns, got 2"),
    ("non-numeric-rating", lambda w: train(w, "BPR", "fiverating"), r"fiverating\.inter:3: .*'rating'.*'five'"),
    ("infinite-rating", lambda w: train(w, "BPR", "infrating"), r"infrating\.inter:2: .*'rating'.*'inf'"),
    ("header-without-types", lambda w: train(w, "BPR", "untyped"), r"untyped\.inter:1: header column 1 must be 'name:type'"),
    ("comma-separated", lambda w: train(w, "BPR", "commas"), r"commas\.inter:1: .*"),
    ("empty-inter", lambda w: train(w, "BPR", "empty"), r"empty\.inter: .*empty"),
    ("header-only-inter", lambda w: train(w, "BPR", "headeronly"), r"headeronly\.inter: .*no data row"),
    ("latin1-byte", lambda w: train(w, "BPR", "latin1"), r"latin1\.inter:\d+: .*(UTF-8|utf-8)"),
    ("short-row-mid-file", lambda w: train(w, "BPR", "shortrow"), r"shortrow\.inter:3: expected 5 .*got 3"),
    ("unknown-field-type", lambda w: train(w, "BPR", "badtype", "--load_col=None"), r"badtype\.item:1: .*'name:type'"),
    ("kg-without-relation", lambda w: train(w, "KNI", "twocolkg", *KNI_DATA), r"twocolkg\.kg.*relation_id"),
    ("entity-linked-twice", lambda w: train(w, "KNI", "twicelinked", *KNI_DATA),
     r"twicelinked\.link:62: 'entity_id' 'e1' is linked a second time \(first on line 2\)"),
    ("bad-row-in-split-file", lambda w: train(w, "BPR", "parts", "--benchmark_filename=['train', 'valid', 'test']",
                                              "--load_col={'inter': ['user_id', 'item_id', 'rating']}"),
     r"parts\.valid\.inter:52: .*'rating'.*'nine'"),
    ("missing-dataset", lambda w: train(w, "BPR", "nosuchdata"), r"Dataset 'nosuchdata' not found"),
    # parameters (the table, then more)
    ("learning-rate-word-bpr", lambda w: train(w, "BPR", "tiny", "--learning_rate=fast"),
     r"'learning_rate' parameter of BPR must be a positive float\. Got 'fast'"),
    ("learning-rate-word-rnncce", lambda w: train(w, "RNNCCE", "tiny", "--learning_rate=fast"),
     r"'learning_rate' parameter of RNNCCE must be a positive float"),
    ("negative-embedding-size", lambda w: train(w, "BPR", "tiny", "--embedding_size=-4"),
     r"'embedding_size' parameter of BPR must be a positive int or None\. Got -4"),
    ("zero-batch-size", lambda w: train(w, "BPR", "tiny", "--train_batch_size=0"),
     r"'train_batch_size' parameter of BPR must be a positive int\. Got 0"),
    ("metrics-without-valid-metric", lambda w: train(w, "BPR", "tiny", "--metrics=['Recall']"),
     r"valid_metric 'MRR@10' must be one of the metrics \['Recall'\]"),
    ("valid-metric-cutoff-not-in-topk", lambda w: train(w, "BPR", "tiny", "--valid_metric=recall@20"),
     r"valid_metric 'recall@20' .*topk \[10\]"),
    ("zero-topk", lambda w: train(w, "BPR", "tiny", "--topk=0"), r"'topk' parameter of BPR"),
    ("bad-eval-split", lambda w: train(w, "BPR", "tiny", "--eval_args={'split': {'XX': [0.8, 0.2]}}"),
     r"'eval_args' parameter of BPR"),
    ("bad-negative-sampling", lambda w: train(w, "BPR", "tiny", "--train_neg_sample_args={'distribution': 'gauss'}"),
     r"'train_neg_sample_args' parameter of BPR"),
    ("negative-epochs", lambda w: train(w, "BPR", "tiny", "--epochs=-1"), r"'epochs' parameter of BPR"),
    ("negative-weight-decay", lambda w: train(w, "BPR", "tiny", "--weight_decay=-0.1"),
     r"'weight_decay' parameter of BPR must be a float >= 0"),
    ("unknown-cell", lambda w: train(w, "RNNCCE", "tiny", "--cell=rnn"),
     r"'cell' parameter of RNNCCE must be one of \['gru', 'lstm'\]\. Got 'rnn'"),
    ("kl-with-untied-output", lambda w: train(w, "RNNCCE", "tiny", "--output=untied", "--tying_loss=kl"),
     r"RNNCCE: tying_loss 'kl' needs output: tied"),
    ("compositions-above-anchors", lambda w: train(w, "LEGCF", "tiny", "--n_anchors=8", "--n_compositions=9"),
     r"LEGCF: n_compositions = 9 must be at most n_anchors = 8"),
    ("hop-sample-zero", lambda w: train(w, "KNI", "tiny", *KNI_DATA[:-2], "--hop_n_sample=1,0"),
     r"'hop_n_sample' parameter of KNI"),
    ("unknown-initialiser", lambda w: train(w, "BPR", "tiny", "--embedding_init=spectral"),
     r"'embedding_init' parameter of embedding_init must be one of"),
    ("zero-batch-budget", lambda w: train(w, "DLR2", "tiny", "--dlr2_batches_per_epoch=0"),
     r"'dlr2_batches_per_epoch' parameter of DLR2"),
    ("unknown-model", lambda w: [*CLI, "--model", "NoSuchModel", "--dataset", "tiny"], r"Unknown model 'NoSuchModel'"),
    ("unknown-preset", lambda w: train(w, "BPR", "tiny", "--preset", "nrp-ml-10m"), r"Unknown preset 'nrp-ml-10m'"),
    ("malformed-config-file", lambda w: train(w, "BPR", "tiny", "--config_files", str(w["files"] / "bad.yaml")),
     r"bad\.yaml:\d+:\d+: malformed yaml"),
    ("override-without-value", lambda w: [*CLI, "--model", "BPR", "--dataset", "tiny", "--epochs"],
     r"config override '--epochs' has no value"),
    # checkpoints
    ("resume-on-another-dataset", lambda w: train(w, "BPR", "small", "--resume", str(w["checkpoint"])),
     r"does not fit this run: it was trained on dataset 'tiny' \(41 users, 61 items\), this run's dataset "
     r"'small' has 21 users"),
    ("resume-a-results-json", lambda w: train(w, "BPR", "tiny", "--resume", str(w["files"] / "results.json")),
     r"results\.json is not a checkpoint: it holds JSON"),
    ("resume-json-trusted", lambda w: train(w, "BPR", "tiny", "--resume", str(w["files"] / "results.json"),
                                            "--trust-legacy-checkpoint"), r"results\.json is not a checkpoint"),
    ("resume-an-empty-file", lambda w: train(w, "BPR", "tiny", "--resume", str(w["files"] / "empty.pth")),
     r"empty\.pth is not a checkpoint: the file is empty"),
    ("resume-a-text-file", lambda w: train(w, "BPR", "tiny", "--resume", str(w["files"] / "notes.txt")),
     r"notes\.txt is not a checkpoint: it holds text"),
    ("resume-another-model", lambda w: train(w, "NeuMF", "tiny", "--resume", str(w["checkpoint"])),
     r"holds a BPR checkpoint; cannot resume model NeuMF"),
    # tuning
    ("ray-grid-below-max-evals", lambda w: train(w, "BPR", "tiny", "--tune", str(w["files"] / "grid.hyper"),
                                                 "--tool", "ray", "--max-evals", "2"),
     r"--max-evals 2 with --algo exhaustive --tool ray: Ray's grid search runs all 3 points"),
    ("missing-search-space", lambda w: train(w, "BPR", "tiny", "--tune", "NoSuchSpace"),
     r"NoSuchSpace: hyper-parameter file not found"),
    ("zero-max-evals", lambda w: train(w, "BPR", "tiny", "--tune", str(w["files"] / "grid.hyper"), "--max-evals", "0"),
     r"--max-evals must be a positive int"),
    # converters
    ("converter-truncated-ratings", lambda w: [*CONVERT, "movielens", "--input", str(w["ml"]),
                                               "--output", str(w["base"] / "out-ml")],
     r"ratings\.dat:2: .*"),
    ("converter-short-rating-row", lambda w: [*CONVERT, "ripplenet-kg", "--input", str(w["bx"]),
                                              "--output", str(w["base"] / "out-bx")],
     r"ratings_final\.txt:2: expected 3 tab-separated columns, got 2"),
    ("converter-missing-input", lambda w: [*CONVERT, "movielens", "--input", str(w["base"] / "nowhere"),
                                           "--output", str(w["base"] / "out-none")], r"nowhere"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case, command, message", CASES, ids=[case for case, _, _ in CASES])
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(world, tmp_path, case, command, message):
    proc = run_case(world, tmp_path, command(world))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, f"{case}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, f"{case}: expected one line on stderr, got:\n{proc.stderr[-3000:]}"
    assert lines[0].startswith("error: ") and re.search(message, lines[0]), lines[0]
    assert not (world["base"] / "out-ml").exists() and not (world["base"] / "out-bx").exists()


def test_catalogue_has_at_least_thirty_cases():
    assert len(CASES) >= 30 and len({case for case, _, _ in CASES}) == len(CASES)


@pytest.mark.slow
def test_link_rows_of_unknown_items_warn_with_count_and_ids(world, tmp_path):
    """RecBole drops them, so this is a warning (one line, named), and the run goes on."""
    data = world["data"]
    shutil.copytree(data / "tiny", tmp_path / "linked" / "linked")
    for path in (tmp_path / "linked" / "linked").iterdir():
        path.rename(path.with_name(path.name.replace("tiny.", "linked.")))
    link = tmp_path / "linked" / "linked" / "linked.link"
    link.write_text(link.read_text() + "998\tz998\n999\tz999\n")
    proc = subprocess.run([*CLI, "--model", "KNI", "--dataset", "linked", f"--data_path={tmp_path / 'linked'}",
                           f"--checkpoint_dir={tmp_path / 'saved'}", *FAST[:-1], "--state=WARNING", *KNI_DATA],
                          cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"linked\.link: 2 of 62 rows name an item that is in no interaction .*"
                     r"e\.g\. '998', '999'; RecBole's knowledge-graph dataset drops them", proc.stderr), proc.stderr[-3000:]
