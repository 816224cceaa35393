"""Last.FM HetRec 2011 as KGCN ships it (``user_artists.dat`` + ``kg.txt`` + ``item_index2entity_id.txt``) -> ripplenet-kg files.

Input directory (hwwang55/KGCN ``data/music/``):

- ``user_artists.dat``: header ``userID<TAB>artistID<TAB>weight``, then one row per
  (user, artist) with a listening count;
- ``item_index2entity_id.txt``: ``artistID<TAB>satori_id``; line ``i`` makes the artist item
  ``i`` and the Satori entity entity ``i`` (CRLF tolerated);
- ``kg.txt``: ``head_satori_id<TAB>relation_name<TAB>tail_satori_id`` (CRLF tolerated).

Re-implements KGCN's ``preprocess.py`` (WWW 2019, RippleNet CIKM 2018 uses the same
scheme): artists without an entity are dropped; a row with weight >= ``threshold``
(KGCN: 0 for music, i.e. all rows) is a positive; users are numbered by first appearance;
for each user, as many negatives as positives are drawn without replacement from the
items the user has no row for, using ``numpy.random.default_rng(seed)`` user by user.
Entities not in the item list and relations are numbered by first appearance in
``kg.txt``. Output is exactly what ``ripplenet-kg`` writes (``.inter`` with
``label:float``, ``.kg``, ``.link``).

Deviations from KGCN's script: the negatives come from a different random generator
(numpy ``default_rng`` instead of the legacy global ``np.random`` state), so label-0
rows differ from any published ``ratings_final.txt``; positives and the KG are
identical. Rows are written user by user, positives then negatives, each ascending, so
the output does not depend on Python set ordering.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from dataset_atomic._atomic import (
    Conversion,
    ConversionError,
    iter_records,
    parse_float,
    parse_int,
)
from dataset_atomic.ripplenet_kg import write_kg_dataset

DEFAULT_SEED = 555


def _read_item_list(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """artistID -> item index and satori id -> entity index, both by line order."""
    items: dict[str, int] = {}
    entities: dict[str, int] = {}
    for line, (artist, satori), text in iter_records(path, sep="\t", ncols=2):
        artist = str(parse_int(artist, path, line, "artist id"))
        if artist in items:
            raise ConversionError("duplicate artist id", path, line, text)
        if satori in entities:
            raise ConversionError("duplicate entity id", path, line, text)
        items[artist] = len(items)
        entities[satori] = len(entities)
    return items, entities


def _read_listening(path: Path, items: dict[str, int], threshold: float
                    ) -> tuple[dict[int, set[int]], dict[int, set[int]], int]:
    """Positive and below-threshold item sets per original user id; rows without entity."""
    positives: dict[int, set[int]] = {}
    negatives: dict[int, set[int]] = {}
    seen: dict[tuple[int, str], int] = {}
    unlinked = 0
    for line, (user, artist, weight), text in iter_records(
            path, sep="\t", ncols=3, header=("userID", "artistID", "weight")):
        uid = parse_int(user, path, line, "user id")
        artist = str(parse_int(artist, path, line, "artist id"))
        value = parse_float(weight, path, line, "weight")
        if (uid, artist) in seen:
            raise ConversionError(f"duplicate (user, artist) pair, first on line "
                                  f"{seen[(uid, artist)]}", path, line, text)
        seen[(uid, artist)] = line
        if artist not in items:
            unlinked += 1
            continue
        target = positives if value >= threshold else negatives
        target.setdefault(uid, set()).add(items[artist])
    return positives, negatives, unlinked


def _read_kg(path: Path, entities: dict[str, int]) -> list[tuple[int, int, int]]:
    entity_index = dict(entities)
    relations: dict[str, int] = {}
    triples = []
    seen: dict[tuple[int, int, int], int] = {}
    for line, (head, relation, tail), text in iter_records(path, sep="\t", ncols=3):
        ids = []
        for name in (head, tail):
            if name not in entity_index:
                entity_index[name] = len(entity_index)
            ids.append(entity_index[name])
        if relation not in relations:
            relations[relation] = len(relations)
        triple = (ids[0], relations[relation], ids[1])
        if triple in seen:
            raise ConversionError(f"duplicate triple, first on line {seen[triple]}", path, line, text)
        seen[triple] = line
        triples.append(triple)
    return triples


def convert(input_dir: str | os.PathLike, output_dir: str | os.PathLike, force: bool = False,
            seed: int = DEFAULT_SEED, threshold: float = 0.0,
            min_relation_triples: int = 0) -> dict[str, Any]:
    """Convert KGCN's Last.FM inputs into ``output_dir``; return the stats dict."""
    if min_relation_triples < 0:
        raise ConversionError(f"min_relation_triples must be >= 0; got {min_relation_triples}")
    root = Path(input_dir)
    options = {"threshold": threshold, "min_relation_triples": min_relation_triples}
    with Conversion("lastfm-hetrec", root, output_dir, force, options, seed=seed) as conv:
        if not root.is_dir():
            raise ConversionError("expected a directory with user_artists.dat, kg.txt and "
                                  "item_index2entity_id.txt", root)
        items, entities = _read_item_list(conv.source("item_index2entity_id.txt"))
        positives, below, unlinked = _read_listening(conv.source("user_artists.dat"), items,
                                                     threshold)
        triples = _read_kg(conv.source("kg.txt"), entities)
        rng = np.random.default_rng(seed)
        all_items = np.arange(len(items))
        ratings: list[tuple[int, int, int]] = []
        short = 0
        for user, (original, pos) in enumerate(positives.items()):
            excluded = pos | below.get(original, set())
            candidates = all_items[~np.isin(all_items, sorted(excluded))]
            size = min(len(pos), len(candidates))
            short += size < len(pos)
            negs = np.sort(rng.choice(candidates, size=size, replace=False))
            ratings += [(user, item, 1) for item in sorted(pos)]
            ratings += [(user, int(item), 0) for item in negs]
        write_kg_dataset(conv, ratings, triples, min_relation_triples)
        conv.stats["rows_without_entity"] = unlinked
        conv.stats["users_with_fewer_negatives_than_positives"] = short
    return conv.stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed of the negative sampling (default {DEFAULT_SEED}, as KGCN)")
    parser.add_argument("--threshold", type=float, default=0.0,
                        help="minimum listening count of a positive (KGCN music: 0)")
    parser.add_argument("--min-relation-triples", type=int, default=0, metavar="N",
                        help="drop KG relations with fewer than N triples; default 0")


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"seed": args.seed, "threshold": args.threshold,
            "min_relation_triples": args.min_relation_triples}
