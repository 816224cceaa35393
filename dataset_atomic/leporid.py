"""LEPORID/DLR2 split files (``<name>_train.txt`` / ``_validate.txt`` / ``_test.txt``) -> benchmark split files.

Input directory holding the split files of one dataset, as in zhangynnancy/Leporid_DLR2
``dataset/<name>/`` (Zhang et al., KDD 2021): space-separated ``user item rating time``
lines, 0-based ids. Output: ``<name>.train.inter``, ``<name>.valid.inter`` and
``<name>.test.inter`` with ``user_id:token item_id:token rating:float timestamp:float``,
rows in file order.

A (user, item) pair may repeat with another time (Steam has re-purchases; counted in
``stats.json``); an identical repeated line is an error. All three files are required
unless ``partial=True``, which writes only the splits present (e.g. the public copy
ships only ``*_validate.txt``), useful for loader tests but not for training.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from dataset_atomic._atomic import (
    Conversion,
    ConversionError,
    format_number,
    interaction_stats,
    iter_records,
    parse_float,
    parse_int,
)

HEADER = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")
# raw suffix -> RecBole benchmark split name
SPLITS = {"train": "train", "validate": "valid", "test": "test"}


def _find_prefix(root: Path) -> str:
    prefixes = {p.name.rsplit("_", 1)[0] for suffix in SPLITS for p in root.glob(f"*_{suffix}.txt")}
    if not prefixes:
        raise ConversionError("no <name>_train.txt / _validate.txt / _test.txt files found", root)
    if len(prefixes) > 1:
        raise ConversionError(f"split files of several datasets found ({', '.join(sorted(prefixes))})",
                              root)
    return prefixes.pop()


def _read_split(path: Path) -> tuple[list[tuple[str, str, str, str]], int]:
    rows = []
    seen: dict[tuple[int, int, int], int] = {}
    pairs: set[tuple[int, int]] = set()
    repeated_pairs = 0
    for line, (user, item, rating, stamp), text in iter_records(path, sep=" ", ncols=4):
        u = parse_int(user, path, line, "user id")
        i = parse_int(item, path, line, "item id")
        r = parse_float(rating, path, line, "rating")
        t = parse_int(stamp, path, line, "time")
        if (u, i, t) in seen:
            raise ConversionError(f"duplicate row, first on line {seen[(u, i, t)]}", path, line, text)
        seen[(u, i, t)] = line
        repeated_pairs += (u, i) in pairs
        pairs.add((u, i))
        rows.append((str(u), str(i), format_number(r), str(t)))
    return rows, repeated_pairs


def convert(input_dir: str | os.PathLike, output_dir: str | os.PathLike, force: bool = False,
            partial: bool = False) -> dict[str, Any]:
    """Convert LEPORID split files into benchmark files; return the stats dict."""
    root = Path(input_dir)
    with Conversion("leporid", root, output_dir, force, {"partial": partial}) as conv:
        if not root.is_dir():
            raise ConversionError("expected a directory with <name>_train.txt etc.", root)
        prefix = _find_prefix(root)
        present = {s for s in SPLITS if (root / f"{prefix}_{s}.txt").is_file()}
        missing = [f"{prefix}_{s}.txt" for s in SPLITS if s not in present]
        if missing and not partial:
            raise ConversionError(f"missing {', '.join(missing)} (pass --partial to convert "
                                  "only the splits present)", root)
        users: set[str] = set()
        items: set[str] = set()
        total = 0
        conv.stats["splits"] = {}
        for raw, split in SPLITS.items():
            if raw not in present:
                continue
            rows, repeated = _read_split(conv.source(f"{prefix}_{raw}.txt"))
            conv.write(f"{split}.inter", HEADER, rows)
            split_users = {r[0] for r in rows}
            split_items = {r[1] for r in rows}
            users |= split_users
            items |= split_items
            total += len(rows)
            conv.stats["splits"][split] = {"users": len(split_users), "items": len(split_items),
                                           "interactions": len(rows),
                                           "repeated_user_item_pairs": repeated}
        conv.stats.update(interaction_stats(users, items, total))
        if missing:
            conv.stats["missing_splits"] = missing
    return conv.stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--partial", action="store_true",
                        help="convert only the split files present (loader tests only)")


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"partial": args.partial}
