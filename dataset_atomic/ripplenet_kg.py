"""RippleNet/KGCN preprocessed data (``ratings_final.txt`` + ``kg_final.txt``) -> ``.inter``, ``.kg``, ``.link``.

Input directory:

- ``ratings_final.txt``: ``user<TAB>item<TAB>label`` with label 1 (rated) or 0 (a sampled
  unrated item), 0-based ids; CRLF tolerated.
- ``kg_final.txt``: ``head<TAB>relation<TAB>tail`` (0-based entity and relation ids).
- optional ``item_index2entity_id*.txt`` (one line per item): when present its line count
  is the number of items and a rated item id beyond it is an error.

In this format items *are* the first entities (item ``i`` is entity ``i``), so ``.link``
maps every rated item to the entity with the same number. Output: ``.inter``
(``user_id:token item_id:token label:float``, source order), ``.kg``
(``head_id:token relation_id:token tail_id:token``, source order), ``.link``
(``item_id:token entity_id:token``, ascending). ``min_relation_triples=N`` drops the
relations with fewer than N triples (KNI uses 100, ``process_kg_data(threshold=100)``).
Duplicate rating pairs and duplicate triples are errors. Book-Crossing and Last.FM ship
in this format (RippleNet, CIKM 2018; KGCN, WWW 2019).
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path
from typing import Any

from dataset_atomic._atomic import (
    Conversion,
    ConversionError,
    interaction_stats,
    iter_records,
    label_balance,
    parse_int,
)

INTER_HEADER = ("user_id:token", "item_id:token", "label:float")
KG_HEADER = ("head_id:token", "relation_id:token", "tail_id:token")
LINK_HEADER = ("item_id:token", "entity_id:token")


def write_kg_dataset(conv: Conversion, ratings: list[tuple[int, int, int]],
                     triples: list[tuple[int, int, int]], min_relation_triples: int) -> None:
    """Write ``.inter``/``.kg``/``.link`` and their statistics into ``conv``.

    Args:
        conv: the open conversion.
        ratings: ``(user, item, label)`` rows, already validated, in output order.
        triples: ``(head, relation, tail)`` rows, already validated, in output order.
        min_relation_triples: relations with fewer triples are dropped (0 keeps all).
    """
    per_relation = Counter(relation for _, relation, _ in triples)
    kept_relations = {r for r, n in per_relation.items() if n >= min_relation_triples}
    kept = [t for t in triples if t[1] in kept_relations]
    items = sorted({item for _, item, _ in ratings})
    entities = {h for h, _, _ in kept} | {t for _, _, t in kept}

    conv.write("inter", INTER_HEADER,
               ((str(u), str(i), str(label)) for u, i, label in ratings))
    conv.write("kg", KG_HEADER, ((str(h), str(r), str(t)) for h, r, t in kept))
    conv.write("link", LINK_HEADER, ((str(i), str(i)) for i in items))

    conv.stats.update(interaction_stats({u for u, _, _ in ratings}, set(items), len(ratings)))
    conv.stats["labels"] = label_balance(label for _, _, label in ratings)
    conv.stats["kg"] = {
        "triples": len(kept),
        "relations": len(kept_relations),
        "entities": len(entities),
        "dropped_relations": sorted(set(per_relation) - kept_relations),
        "dropped_triples": len(triples) - len(kept),
        "linked_items_without_triples": sum(1 for i in items if i not in entities),
    }


def read_ratings(path: Path, n_items: int | None) -> list[tuple[int, int, int]]:
    """Validated ``(user, item, label)`` rows of a ``ratings_final.txt``."""
    rows = []
    seen: dict[tuple[int, int], int] = {}
    for line, (user, item, label), text in iter_records(path, sep="\t", ncols=3):
        u = parse_int(user, path, line, "user id")
        i = parse_int(item, path, line, "item id")
        if n_items is not None and i >= n_items:
            raise ConversionError(f"item id out of range: the item list has {n_items} items "
                                  f"(ids 0..{n_items - 1})", path, line, text)
        if label not in ("0", "1"):
            raise ConversionError("label must be 0 or 1", path, line, text)
        if (u, i) in seen:
            raise ConversionError(f"duplicate (user, item) pair, first on line {seen[(u, i)]}",
                                  path, line, text)
        seen[(u, i)] = line
        rows.append((u, i, int(label)))
    return rows


def read_triples(path: Path) -> list[tuple[int, int, int]]:
    """Validated ``(head, relation, tail)`` rows of a ``kg_final.txt``."""
    rows = []
    seen: dict[tuple[int, int, int], int] = {}
    for line, (head, relation, tail), text in iter_records(path, sep="\t", ncols=3):
        triple = (parse_int(head, path, line, "head entity id"),
                  parse_int(relation, path, line, "relation id"),
                  parse_int(tail, path, line, "tail entity id"))
        if triple in seen:
            raise ConversionError(f"duplicate triple, first on line {seen[triple]}", path, line, text)
        seen[triple] = line
        rows.append(triple)
    return rows


def _count_items(path: Path) -> int:
    """Number of items in an ``item_index2entity_id*.txt`` (validated: two columns)."""
    return sum(1 for _ in iter_records(path, sep="\t", ncols=2))


def convert(input_dir: str | os.PathLike, output_dir: str | os.PathLike, force: bool = False,
            min_relation_triples: int = 0) -> dict[str, Any]:
    """Convert a RippleNet-format directory into ``output_dir``; return the stats dict."""
    if min_relation_triples < 0:
        raise ConversionError(f"min_relation_triples must be >= 0; got {min_relation_triples}")
    root = Path(input_dir)
    options = {"min_relation_triples": min_relation_triples}
    with Conversion("ripplenet-kg", root, output_dir, force, options) as conv:
        if not root.is_dir():
            raise ConversionError("expected a directory with ratings_final.txt and kg_final.txt",
                                  root)
        item_lists = sorted(p.name for p in root.glob("item_index2entity_id*.txt"))
        if len(item_lists) > 1:
            raise ConversionError(f"several item lists found ({', '.join(item_lists)}); "
                                  "keep one", root)
        n_items = _count_items(conv.source(item_lists[0])) if item_lists else None
        ratings = read_ratings(conv.source("ratings_final.txt"), n_items)
        triples = read_triples(conv.source("kg_final.txt"))
        write_kg_dataset(conv, ratings, triples, min_relation_triples)
        if n_items is not None:
            conv.stats["items_in_item_list"] = n_items
    return conv.stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-relation-triples", type=int, default=0, metavar="N",
                        help="drop KG relations with fewer than N triples (KNI: 100); default 0")


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"min_relation_triples": args.min_relation_triples}
