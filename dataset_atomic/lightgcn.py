"""LightGCN/NGCF split (``train.txt`` + ``test.txt``, one line per user) -> benchmark split files.

Input directory with ``train.txt`` and ``test.txt``: each line is ``user item item ...``,
space separated, 0-based ids (Gowalla, Yelp2018, Amazon-book as published by NGCF and
LightGCN, He et al., SIGIR 2020). A line with only the user id is a user without items.

Output: ``<name>.train.inter`` and ``<name>.test.inter`` (``user_id:token item_id:token``,
rows in file order), for RecBole's ``benchmark_filename``. With ``valid_from_test=1/3``
a random ``ceil(n/3)`` (at least one) of each user's ``n`` test items moves into
``<name>.valid.inter``, as LEGCF and the C2F meta-embedding code do; the draw is
``numpy.random.default_rng(seed).choice`` user by user in ``test.txt`` order and the
moved items keep their order. Without it there is no validation file; use
``benchmark_filename: [train, test, test]`` only if you accept selecting on the test set
(what the LightGCN code does).

Errors: a user listed twice in a file, an item repeated within a line, and a (user, item)
pair in both train and test.
"""

from __future__ import annotations

import argparse
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dataset_atomic._atomic import Conversion, ConversionError, interaction_stats, iter_records, parse_int

HEADER = ("user_id:token", "item_id:token")
DEFAULT_SEED = 2020


def parse_fraction(text: str | float | Fraction | None) -> Fraction | None:
    """``"1/3"`` or ``0.25`` -> a Fraction in (0, 1); ``None``/``"0"`` -> None."""
    if text is None:
        return None
    try:
        value = Fraction(str(text))
    except (ValueError, ZeroDivisionError):
        raise ConversionError(f"valid_from_test must be a fraction like 1/3; got {text!r}") from None
    if value == 0:
        return None
    if not 0 < value < 1:
        raise ConversionError(f"valid_from_test must be in (0, 1); got {text!r}")
    return value


def read_user_lines(path: Path) -> list[tuple[int, list[int], int, str]]:
    """``(user, items, line number, start of the line)`` per line of a LightGCN file, validated."""
    users: dict[int, int] = {}
    rows = []
    for line, columns, text in iter_records(path, sep=" ", min_cols=1):
        user = parse_int(columns[0], path, line, "user id")
        if user in users:
            raise ConversionError(f"user listed twice, first on line {users[user]}", path, line, text)
        users[user] = line
        items = [parse_int(c, path, line, "item id") for c in columns[1:]]
        if len(set(items)) != len(items):
            repeated = next(i for i in items if items.count(i) > 1)
            raise ConversionError(f"item {repeated} repeated within the line", path, line, text)
        rows.append((user, items, line, text[:100]))
    return rows


def _split_stats(rows: list[tuple[int, list[int]]]) -> dict[str, int]:
    return {"users": sum(1 for _, items in rows if items),
            "items": len({i for _, items in rows for i in items}),
            "interactions": sum(len(items) for _, items in rows)}


def convert(input_dir: str | os.PathLike, output_dir: str | os.PathLike, force: bool = False,
            valid_from_test: str | float | None = None, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Convert a LightGCN-format directory into benchmark files; return the stats dict."""
    fraction = parse_fraction(valid_from_test)
    root = Path(input_dir)
    options = {"valid_from_test": str(fraction) if fraction else None}
    with Conversion("lightgcn", root, output_dir, force, options,
                    seed=seed if fraction else None) as conv:
        if not root.is_dir():
            raise ConversionError("expected a directory with train.txt and test.txt", root)
        train_path, test_path = conv.source("train.txt"), conv.source("test.txt")
        train = read_user_lines(train_path)
        test = read_user_lines(test_path)
        train_pairs = {(u, i) for u, items, _, _ in train for i in items}
        for user, items, line, text in test:
            for item in items:
                if (user, item) in train_pairs:
                    raise ConversionError(f"(user {user}, item {item}) is also in {train_path.name}",
                                          test_path, line, text)
        splits = {"train": [(u, items) for u, items, _, _ in train]}
        if fraction is None:
            splits["test"] = [(u, items) for u, items, _, _ in test]
        else:
            rng = np.random.default_rng(seed)
            valid_rows, test_rows = [], []
            for user, items, _, _ in test:
                if not items:
                    continue
                k = max(1, -(-len(items) * fraction.numerator // fraction.denominator))
                moved = set(rng.choice(len(items), size=k, replace=False).tolist())
                valid_rows.append((user, [i for p, i in enumerate(items) if p in moved]))
                test_rows.append((user, [i for p, i in enumerate(items) if p not in moved]))
            splits["valid"] = valid_rows
            splits["test"] = test_rows
        for split, rows in splits.items():
            conv.write(f"{split}.inter", HEADER,
                       ((str(u), str(i)) for u, items in rows for i in items))
        everything = [(u, items) for rows in splits.values() for u, items in rows]
        conv.stats.update(interaction_stats({u for u, items in everything if items},
                                            {i for _, items in everything for i in items},
                                            sum(len(items) for _, items in everything)))
        conv.stats["splits"] = {split: _split_stats(rows) for split, rows in splits.items()}
        conv.stats["benchmark_filename"] = list(splits) if fraction else ["train", "test", "test"]
    return conv.stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--valid-from-test", default=None, metavar="FRACTION",
                        help="move this fraction (e.g. 1/3; ceil, at least 1) of each user's "
                             "test items into a validation split")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed of the validation draw (default {DEFAULT_SEED})")


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"valid_from_test": args.valid_from_test, "seed": args.seed}
