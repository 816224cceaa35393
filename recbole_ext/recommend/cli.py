"""``run_recbole_ext.py --recommend``: options, input files and output files."""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import pandas as pd

from recbole_ext.recommend.recommender import Recommender, RecommendError


def add_recommend_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``--recommend`` options to ``run_recbole_ext.py``'s parser."""
    group = parser.add_argument_group(
        "recommendations", "top-k items per user, or pair scores, from a saved checkpoint "
        "(external ids of the atomic files; see the recbole_ext.recommend docstring)")
    group.add_argument("--recommend", metavar="CHECKPOINT", help="checkpoint to recommend from")
    who = group.add_mutually_exclusive_group()
    who.add_argument("--users", nargs="+", metavar="USER", help="external user ids")
    who.add_argument("--users-file", metavar="FILE", help="file of user ids, one per line")
    who.add_argument("--all-users", action="store_true", help="every user of the dataset")
    who.add_argument("--pairs", metavar="FILE",
                     help="score the (user_id, item_id) rows of a CSV/TSV file with a header "
                          "instead (predicted ratings for rating models)")
    # a string, because without --recommend ``--topk=[10]`` is RecBole's config key
    group.add_argument("--topk", metavar="K", default=None, help="items per user (default 10)")
    group.add_argument("--output", metavar="FILE",
                       help="write .csv or .jsonl (one JSON object per row); default: CSV on stdout")
    group.add_argument("--include-seen", action="store_true",
                       help="keep the items of the user's history (training items; sequential: the input)")
    group.add_argument("--exclude-known", action="store_true",
                       help="also leave out the user's validation and test interactions")
    group.add_argument("--no-cache", action="store_true",
                       help="neither read nor write <CHECKPOINT>.recommend-cache")


def recommend_main(args: argparse.Namespace, overrides: dict | None = None) -> int:
    """Run the ``--recommend`` command; returns the exit status. Errors raise ValueError subclasses."""
    if not args.recommend:
        raise RecommendError("--users/--users-file/--all-users/--pairs need --recommend CHECKPOINT")
    topk = _parse_topk(args.topk)
    output = Path(args.output) if args.output else None
    if output is not None and output.suffix.lower() not in (".csv", ".jsonl"):
        raise RecommendError(f"--output {output}: the file name must end in .csv or .jsonl")
    if args.pairs:
        pairs = read_pairs(args.pairs)
    elif args.users:
        users = args.users
    elif args.users_file:
        users = read_users(args.users_file)
    elif not args.all_users:
        raise RecommendError("--recommend needs --users U1 U2 ..., --users-file FILE, --all-users or --pairs FILE")
    start = time.perf_counter()
    recommender = Recommender.from_checkpoint(args.recommend, overrides,
                                              trust_legacy=args.trust_legacy_checkpoint,
                                              cache=not args.no_cache)
    if args.pairs:
        frame = recommender.score_pairs(pairs)
        what = f"{len(frame)} pair scores"
    else:
        frame = recommender.recommend(None if args.all_users else users, topk,
                                      include_seen=args.include_seen, exclude_known=args.exclude_known,
                                      show_progress=args.all_users)
        what = f"top-{topk} of {frame['user_id'].nunique()} users ({int(frame['cold_start'].sum())} " \
               "cold-start rows)"
    write_frame(frame, output)
    sys.stdout.flush()
    where = f" to {output}" if output else ""
    print(f"{what}{where} in {time.perf_counter() - start:.2f}s", file=sys.stderr)
    return 0


def _parse_topk(value: str | None) -> int:
    if value is None:
        return 10
    try:
        topk = int(value)
    except ValueError:
        topk = 0
    if topk < 1:
        raise RecommendError(f"--topk must be a positive int, got '{value}'")
    return topk


def read_users(path: str | os.PathLike) -> list[str]:
    """User ids of a file, one per line; blank lines, '#' comments and a ``user_id`` header skipped."""
    lines = _read_text(path).splitlines()
    users = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if users and users[0].split(":")[0] == "user_id":
        users = users[1:]
    if not users:
        raise RecommendError(f"{path}: no user ids (expected one id per line)")
    return users


def read_pairs(path: str | os.PathLike) -> pd.DataFrame:
    """(user, item) rows of a CSV or TSV file whose header names ``user_id`` and ``item_id``
    (RecBole's ``user_id:token`` form is accepted)."""
    text = _read_text(path)
    first = text.splitlines()[0] if text.strip() else ""
    sep = "\t" if "\t" in first else ","
    frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    frame.columns = [str(c).split(":")[0].strip() for c in frame.columns]
    missing = [c for c in ("user_id", "item_id") if c not in frame.columns]
    if missing:
        raise RecommendError(f"{path}:1: the header must name user_id and item_id; got "
                             f"{', '.join(frame.columns) or 'nothing'}")
    return frame[["user_id", "item_id"]]


def _read_text(path: str | os.PathLike) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    return path.read_text()


def write_frame(frame: pd.DataFrame, output: Path | None) -> None:
    """Write ``frame`` as CSV (stdout when ``output`` is None) or JSON lines, atomically."""
    if output is None:
        frame.to_csv(sys.stdout, index=False)
        return
    text = (frame.to_json(orient="records", lines=True) if output.suffix.lower() == ".jsonl"
            else frame.to_csv(index=False))
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, output)  # a reader never sees a half-written file
    finally:
        tmp.unlink(missing_ok=True)
