"""Per-user item sequences (``user item item ...`` in time order) -> ``.inter`` with positions as time.

Input: a text file with one line per user, ``user item1 item2 ...``, space separated,
oldest item first (the S3Rec/ICLRec ``Beauty.txt`` layout, Zhou et al., CIKM 2020), or a
directory holding exactly one such ``*.txt`` (files named ``*_pairs.txt`` are ignored).

Output: ``<name>.inter`` with ``user_id:token item_id:token timestamp:float``, where the
timestamp is the 0-based position in the user's sequence, so RecBole's time ordering
(``eval_args.order: TO``) and sequential models see the original order. Rows are grouped
by user in file order. A user listed twice or a line without items is an error;
repeated items within a sequence are kept (re-consumption) and counted in ``stats.json``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from dataset_atomic._atomic import Conversion, ConversionError, interaction_stats, iter_records, parse_int

HEADER = ("user_id:token", "item_id:token", "timestamp:float")


def _find_file(root: Path) -> Path:
    if root.is_file():
        return root
    candidates = sorted(p for p in root.glob("*.txt") if not p.name.endswith("_pairs.txt"))
    if len(candidates) != 1:
        names = ", ".join(p.name for p in candidates) or "none"
        raise ConversionError(f"expected exactly one sequence file (*.txt) in the directory, "
                              f"found {names}; pass the file itself as --input", root)
    return candidates[0]


def convert(input_path: str | os.PathLike, output_dir: str | os.PathLike,
            force: bool = False) -> dict[str, Any]:
    """Convert a sequence file into ``<name>.inter``; return the stats dict."""
    root = Path(input_path)
    with Conversion("sequences", root, output_dir, force, {}) as conv:
        path = _find_file(root)
        conv.source(path.name if root.is_dir() else path)
        rows = []
        users: dict[int, int] = {}
        items: set[int] = set()
        repeats = 0
        lengths = []
        for line, columns, text in iter_records(path, sep=" ", min_cols=1):
            user = parse_int(columns[0], path, line, "user id")
            if user in users:
                raise ConversionError(f"user listed twice, first on line {users[user]}", path, line, text)
            users[user] = line
            if len(columns) == 1:
                raise ConversionError("user without items", path, line, text)
            sequence = [parse_int(c, path, line, "item id") for c in columns[1:]]
            repeats += len(sequence) - len(set(sequence))
            items.update(sequence)
            lengths.append(len(sequence))
            rows += [(str(user), str(item), str(pos)) for pos, item in enumerate(sequence)]
        conv.write("inter", HEADER, rows)
        conv.stats.update(interaction_stats(set(users), items, len(rows)))
        conv.stats["sequence_length"] = {"min": min(lengths), "max": max(lengths),
                                         "mean": round(sum(lengths) / len(lengths), 4)}
        conv.stats["repeated_items_within_sequences"] = repeats
    return conv.stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """sequences has no options beyond --input/--output/--force."""


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {}
