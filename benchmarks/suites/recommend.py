"""Recommendations from a checkpoint: top-10 for every ML-1M user from a BPR checkpoint,
``--recommend`` against a loop over RecBole's ``full_sort_topk`` (issue 20's speed goal: under
10 s on 2 cores, loading included). The variants and how they are timed are described in
:mod:`benchmarks.recommend_speed`. ``--fresh`` also trains a new checkpoint.

Results: ``benchmarks/results/recommend/speed.{json,md}``.
"""

from __future__ import annotations

from benchmarks import recommend_speed
from benchmarks.common import ResultStore


def main(args) -> None:
    store = ResultStore("recommend", "speed", quick=args.quick, resume=args.resume)
    if not store.done("ml-1m"):
        store.add("ml-1m", recommend_speed.measure(2 if args.quick else 5, fresh=not args.resume))
    recommend_speed.write_results(store)
