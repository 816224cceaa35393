"""User-disjoint train/valid/test split of any timestamped ``.inter`` (Devooght & Bersini protocol).

Input: an atomic ``.inter`` file, or a dataset directory ``<d>`` holding ``<d>.inter`` (for
example the output of ``movielens``). Output: ``<name>.train.inter``,
``<name>.valid.inter`` and ``<name>.test.inter`` with the input's columns; train, valid and
test are **disjoint sets of users**, each keeping all of its interactions, sorted by time
within the user (users in order of first appearance). This is the protocol of
"Collaborative filtering with recurrent neural networks" (Devooght & Bersini, 2016,
rdevooght/sequence-based-recommendations ``preprocess.py``) used by RNN-CCE.

Steps: drop users with fewer than ``min_user_activity`` interactions, then items with
fewer than ``min_item_pop``, then users again (Devooght's order); draw the validation and
then the test users **without replacement** with ``numpy.random.default_rng(seed)``
(a permutation of the users in order of first appearance). ``valid_users`` and
``test_users`` are numbers of users when >= 1, fractions (floored) otherwise.

Defaults are Devooght's (val 0.1, test 0.1, min activity 2, min popularity 5, seed 1).
Deviation from Devooght's script: it draws users *with* replacement
(``np.random.choice`` default), which yields fewer distinct users than asked; here the
requested number is exact. kwonmha's RNN-CCE setting is ``--valid-users 500
--test-users 500 --seed 2 --min-user-activity 0 --min-item-pop 0``.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from dataset_atomic._atomic import (
    Conversion,
    ConversionError,
    interaction_stats,
    parse_fraction_or_count,
    validate_atomic_file,
)

DEFAULTS = {"valid_users": "0.1", "test_users": "0.1", "seed": 1, "min_user_activity": 2,
            "min_item_pop": 5}


def _inter_file(root: Path) -> Path:
    if root.is_file():
        return root
    path = root / f"{root.name}.inter"
    if not path.is_file():
        raise ConversionError(f"expected {path.name} in the directory (an atomic dataset)", root)
    return path


def _field_index(fields: list[str], name: str, path: Path) -> int:
    for index, spec in enumerate(fields):
        if spec.split(":")[0] == name:
            return index
    raise ConversionError(f"field '{name}' not in the header ({' '.join(fields)})", path, 1)


def _n_users(value: float | int, total: int, what: str) -> int:
    count = value if isinstance(value, int) else int(value * total)
    if count < 1:
        raise ConversionError(f"{what}={value} selects no user out of {total}")
    return count


def convert(input_path: str | os.PathLike, output_dir: str | os.PathLike, force: bool = False,
            valid_users: str | float | int = DEFAULTS["valid_users"],
            test_users: str | float | int = DEFAULTS["test_users"],
            seed: int = DEFAULTS["seed"], min_user_activity: int = DEFAULTS["min_user_activity"],
            min_item_pop: int = DEFAULTS["min_item_pop"], user_field: str = "user_id",
            item_field: str = "item_id", time_field: str = "timestamp") -> dict[str, Any]:
    """Split a timestamped ``.inter`` into user-disjoint benchmark files; return the stats."""
    valid_spec = parse_fraction_or_count(str(valid_users), "valid_users")
    test_spec = parse_fraction_or_count(str(test_users), "test_users")
    if min_user_activity < 0 or min_item_pop < 0:
        raise ConversionError("min_user_activity and min_item_pop must be >= 0")
    root = Path(input_path)
    options = {"valid_users": valid_spec, "test_users": test_spec,
               "min_user_activity": min_user_activity, "min_item_pop": min_item_pop,
               "user_field": user_field, "item_field": item_field, "time_field": time_field}
    with Conversion("devooght", root, output_dir, force, options, seed=seed) as conv:
        path = _inter_file(root)
        conv.source(path.name if root.is_dir() else path)
        fields = validate_atomic_file(path)["fields"]
        u_col = _field_index(fields, user_field, path)
        i_col = _field_index(fields, item_field, path)
        t_col = _field_index(fields, time_field, path)
        if fields[t_col].split(":")[1] != "float":
            raise ConversionError(f"time field '{time_field}' must be of type float", path, 1)
        with open(path, encoding="utf-8") as handle:
            next(handle)
            rows = [line.rstrip("\n").split("\t") for line in handle]
        before = len(rows)

        def keep_active(rows: list[list[str]]) -> list[list[str]]:
            counts = Counter(r[u_col] for r in rows)
            return [r for r in rows if counts[r[u_col]] >= min_user_activity]

        rows = keep_active(rows)
        popularity = Counter(r[i_col] for r in rows)
        rows = [r for r in rows if popularity[r[i_col]] >= min_item_pop]
        rows = keep_active(rows)
        by_user: dict[str, list[list[str]]] = {}
        for r in rows:
            by_user.setdefault(r[u_col], []).append(r)
        users = list(by_user)
        n_valid = _n_users(valid_spec, len(users), "valid_users")
        n_test = _n_users(test_spec, len(users), "test_users")
        if n_valid + n_test >= len(users):
            raise ConversionError(f"valid ({n_valid}) + test ({n_test}) users leave no training "
                                  f"user out of {len(users)} after filtering")
        order = np.random.default_rng(seed).permutation(len(users))
        assignment = {users[k]: "valid" for k in order[:n_valid]}
        assignment.update({users[k]: "test" for k in order[n_valid:n_valid + n_test]})
        splits: dict[str, list[list[str]]] = {"train": [], "valid": [], "test": []}
        for user in users:
            history = sorted(by_user[user], key=lambda r: float(r[t_col]))
            splits[assignment.get(user, "train")].extend(history)
        conv.stats["splits"] = {}
        for split, split_rows in splits.items():
            conv.write(f"{split}.inter", fields, split_rows)
            conv.stats["splits"][split] = {
                "users": len({r[u_col] for r in split_rows}),
                "items": len({r[i_col] for r in split_rows}),
                "interactions": len(split_rows)}
        conv.stats.update(interaction_stats(set(users), {r[i_col] for r in rows}, len(rows)))
        conv.stats["filtered_out_interactions"] = before - len(rows)
        conv.stats["benchmark_filename"] = ["train", "valid", "test"]
    return conv.stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--valid-users", default=DEFAULTS["valid_users"], metavar="N|FRAC",
                        help="validation users: a count >= 1 or a fraction (default 0.1)")
    parser.add_argument("--test-users", default=DEFAULTS["test_users"], metavar="N|FRAC",
                        help="test users: a count >= 1 or a fraction (default 0.1)")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="default 1")
    parser.add_argument("--min-user-activity", type=int, default=DEFAULTS["min_user_activity"],
                        help="drop users with fewer interactions (default 2)")
    parser.add_argument("--min-item-pop", type=int, default=DEFAULTS["min_item_pop"],
                        help="drop items with fewer interactions (default 5)")
    parser.add_argument("--user-field", default="user_id")
    parser.add_argument("--item-field", default="item_id")
    parser.add_argument("--time-field", default="timestamp")


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"valid_users": args.valid_users, "test_users": args.test_users, "seed": args.seed,
            "min_user_activity": args.min_user_activity, "min_item_pop": args.min_item_pop,
            "user_field": args.user_field, "item_field": args.item_field,
            "time_field": args.time_field}
