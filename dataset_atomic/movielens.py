"""MovieLens 100K / 1M (GroupLens raw files) -> ``.inter``, ``.user``, ``.item``.

Input directory, detected by its files:

- ml-100k: ``u.data`` (``user<TAB>item<TAB>rating<TAB>timestamp``), ``u.user``
  (``user|age|gender|occupation|zip``), ``u.item`` (``id|title|release date|video
  release date|IMDb URL|19 genre flags``), optional ``u.genre`` (``name|index``).
- ml-1m: ``ratings.dat`` or ``ratings.dat.gz`` (``UserID::MovieID::Rating::Timestamp``),
  ``users.dat`` (``UserID::Gender::Age::Occupation::Zip-code``), ``movies.dat``
  (``MovieID::Title::Genres`` with ``|``-separated genres).

Output fields follow RecBole's bundled ml-100k files: ``user_id:token item_id:token
rating:float timestamp:float``; ``.user`` ``user_id age gender occupation zip_code`` (all
tokens; ml-1m keeps its age/occupation codes); ``.item`` ``item_id:token
movie_title:token_seq release_year:token genre:token_seq``. The year is cut from the
title's trailing ``(YYYY)`` as in RecBole's ml-100k (ml-100k: from the release date when
the title has none); RecBole names the genre field ``class``, this project names it ``genre``.

Side files are optional (missing ones are skipped and noted in ``stats.json``); the
ratings are required. Text files are read as UTF-8 when they decode as UTF-8, else as
latin-1 (the GroupLens originals are latin-1).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from dataset_atomic._atomic import (
    Conversion,
    ConversionError,
    detect_encoding,
    format_number,
    interaction_stats,
    iter_records,
    parse_float,
    parse_int,
    token_text,
)

INTER_HEADER = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")
USER_HEADER = ("user_id:token", "age:token", "gender:token", "occupation:token",
               "zip_code:token")
ITEM_HEADER = ("item_id:token", "movie_title:token_seq", "release_year:token",
               "genre:token_seq")
# u.genre of ml-100k, used when that file is absent.
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
                 "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
                 "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


def _split_title(title: str) -> tuple[str, str]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", "1995")``; no year -> ``(title, "")``."""
    match = _TITLE_YEAR.match(title)
    if match:
        return token_text(match.group(1)), match.group(2)
    return token_text(title), ""


def _read_ratings(path: Path, sep: str, encoding: str) -> tuple[list[tuple[str, ...]], dict]:
    rows: list[tuple[str, ...]] = []
    seen: dict[tuple[int, int], int] = {}
    counts: dict[str, int] = {}
    t_min, t_max = float("inf"), float("-inf")
    for line, (user, item, rating, stamp), text in iter_records(path, sep=sep, ncols=4,
                                                                encoding=encoding):
        key = (parse_int(user, path, line, "user id"), parse_int(item, path, line, "item id"))
        value = parse_float(rating, path, line, "rating")
        time = parse_int(stamp, path, line, "timestamp")
        if key in seen:
            raise ConversionError(f"duplicate (user, item) pair, first on line {seen[key]}",
                                  path, line, text)
        seen[key] = line
        rating_text = format_number(value)
        counts[rating_text] = counts.get(rating_text, 0) + 1
        t_min, t_max = min(t_min, time), max(t_max, time)
        rows.append((str(key[0]), str(key[1]), rating_text, str(time)))
    extra = {"ratings": dict(sorted(counts.items(), key=lambda kv: float(kv[0]))),
             "timestamp_range": [int(t_min), int(t_max)]}
    return rows, extra


def _check_known(rows: list[tuple[str, ...]], column: int, known: dict[str, int], what: str,
                 ratings_path: Path, side_path: Path) -> None:
    """Every id used in the ratings must be described in the side file (if present)."""
    for number, row in enumerate(rows, start=1):
        if row[column] not in known:
            raise ConversionError(f"{what} id {row[column]} is not in {side_path.name}",
                                  ratings_path, number, "\t".join(row))


def _convert_100k(conv: Conversion, root: Path) -> None:
    ratings_path = conv.source("u.data")
    rows, extra = _read_ratings(ratings_path, "\t", "utf-8")
    conv.stats["variant"] = "ml-100k"
    if (root / "u.user").is_file():
        path = conv.source("u.user")
        users: dict[str, int] = {}
        user_rows = []
        encoding = detect_encoding(path)
        for line, (user, age, gender, occupation, zip_code), text in iter_records(
                path, sep="|", ncols=5, encoding=encoding):
            uid = str(parse_int(user, path, line, "user id"))
            if uid in users:
                raise ConversionError(f"duplicate user, first on line {users[uid]}", path, line, text)
            users[uid] = line
            user_rows.append((uid, token_text(age), token_text(gender), token_text(occupation),
                              token_text(zip_code)))
        _check_known(rows, 0, users, "user", ratings_path, path)
        conv.write("user", USER_HEADER, user_rows)
    genres = list(ML100K_GENRES)
    if (root / "u.genre").is_file():
        path = conv.source("u.genre")
        genres = []
        for line, (name, index), text in iter_records(path, sep="|", ncols=2,
                                                      encoding=detect_encoding(path)):
            if parse_int(index, path, line, "genre index") != len(genres):
                raise ConversionError(f"genre index must be {len(genres)}", path, line, text)
            genres.append(token_text(name).replace(" ", "_"))
    if (root / "u.item").is_file():
        path = conv.source("u.item")
        items: dict[str, int] = {}
        item_rows = []
        for line, columns, text in iter_records(path, sep="|", ncols=5 + len(genres),
                                                encoding=detect_encoding(path), allow_empty=True):
            iid = str(parse_int(columns[0], path, line, "item id"))
            if iid in items:
                raise ConversionError(f"duplicate item, first on line {items[iid]}", path, line, text)
            items[iid] = line
            flags = columns[5:]
            if any(flag not in ("0", "1") for flag in flags):
                raise ConversionError("genre flags must be 0 or 1", path, line, text)
            title, year = _split_title(columns[1])
            release = columns[2].strip()
            if not year and re.fullmatch(r"\d{1,2}-[A-Za-z]{3}-\d{4}", release):
                year = release[-4:]
            genre = " ".join(g for g, flag in zip(genres, flags) if flag == "1")
            item_rows.append((iid, title, year, genre))
        _check_known(rows, 1, items, "item", ratings_path, path)
        conv.write("item", ITEM_HEADER, item_rows)
    conv.write("inter", INTER_HEADER, rows)
    _finish(conv, rows, extra, root, ("u.user", "u.item"))


def _convert_1m(conv: Conversion, root: Path) -> None:
    name = "ratings.dat" if (root / "ratings.dat").is_file() else "ratings.dat.gz"
    ratings_path = conv.source(name)
    rows, extra = _read_ratings(ratings_path, "::", "utf-8")
    conv.stats["variant"] = "ml-1m"
    if (root / "users.dat").is_file():
        path = conv.source("users.dat")
        users: dict[str, int] = {}
        user_rows = []
        for line, (user, gender, age, occupation, zip_code), text in iter_records(
                path, sep="::", ncols=5, encoding=detect_encoding(path)):
            uid = str(parse_int(user, path, line, "user id"))
            if uid in users:
                raise ConversionError(f"duplicate user, first on line {users[uid]}", path, line, text)
            users[uid] = line
            user_rows.append((uid, token_text(age), token_text(gender), token_text(occupation),
                              token_text(zip_code)))
        _check_known(rows, 0, users, "user", ratings_path, path)
        conv.write("user", USER_HEADER, user_rows)
    if (root / "movies.dat").is_file():
        path = conv.source("movies.dat")
        items: dict[str, int] = {}
        item_rows = []
        for line, (movie, title, genres), text in iter_records(
                path, sep="::", ncols=3, encoding=detect_encoding(path)):
            iid = str(parse_int(movie, path, line, "movie id"))
            if iid in items:
                raise ConversionError(f"duplicate movie, first on line {items[iid]}", path, line, text)
            items[iid] = line
            clean_title, year = _split_title(title)
            genre = " ".join(token_text(g).replace(" ", "_") for g in genres.split("|") if g)
            item_rows.append((iid, clean_title, year, genre))
        _check_known(rows, 1, items, "movie", ratings_path, path)
        conv.write("item", ITEM_HEADER, item_rows)
    conv.write("inter", INTER_HEADER, rows)
    _finish(conv, rows, extra, root, ("users.dat", "movies.dat"))


def _finish(conv: Conversion, rows: list[tuple[str, ...]], extra: dict, root: Path,
            side_files: tuple[str, str]) -> None:
    users = {row[0] for row in rows}
    items = {row[1] for row in rows}
    conv.stats.update(interaction_stats(users, items, len(rows)))
    conv.stats.update(extra)
    missing = [name for name in side_files if not (root / name).is_file()]
    if missing:
        conv.stats["skipped_missing_side_files"] = missing


def convert(input_dir: str | os.PathLike, output_dir: str | os.PathLike,
            force: bool = False) -> dict[str, Any]:
    """Convert an ml-100k or ml-1m directory into ``output_dir``; return the stats dict."""
    root = Path(input_dir)
    with Conversion("movielens", root, output_dir, force, options={}) as conv:
        if not root.is_dir():
            raise ConversionError("expected a MovieLens directory", root)
        if (root / "u.data").is_file():
            _convert_100k(conv, root)
        elif (root / "ratings.dat").is_file() or (root / "ratings.dat.gz").is_file():
            _convert_1m(conv, root)
        else:
            raise ConversionError(
                "no MovieLens ratings found: expected u.data (ml-100k) or ratings.dat / "
                "ratings.dat.gz (ml-1m)", root)
    return conv.stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """movielens has no options beyond --input/--output/--force."""


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {}
