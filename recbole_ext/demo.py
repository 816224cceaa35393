"""``python -m recbole_ext.demo`` (``make demo``): what the plugin adds, in a few minutes on 2 cores.

On the ml-100k atomic files bundled with RecBole, it trains RecBole's BPR twice with the same
budget, once from RecBole's own random embeddings and once from LEPORID embeddings
(``embedding_init: leporid``, Zhang et al., KDD'21), prints the test metrics side by side,
then asks the LEPORID run's checkpoint for one user's top-5 through the recommend path
(:mod:`recbole_ext.recommend`). ``--model NAME`` trains any other model (ours or RecBole's) on
the same data instead and shows its top-5.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DATASET = "ml-100k"
USER = "196"
METRICS = ["Recall", "NDCG", "Hit"]
COLUMNS = ["recall@10", "ndcg@10", "hit@10"]
# LEPORID at the scale dot-product models like (properties/init/leporid.yaml)
LEPORID = {"embedding_init": "leporid", "embedding_init_std": 0.1, "embedding_init_dim": 64}


def base_config(epochs: int, checkpoint_dir: str) -> dict:
    # one validation, at the end: the demo compares budgets, not early-stopping schedules
    return {"epochs": epochs, "eval_step": epochs, "show_progress": False, "state": "ERROR",
            "checkpoint_dir": checkpoint_dir, "metrics": METRICS, "valid_metric": "ndcg@10"}


def train(label: str, model: str, config: dict) -> dict:
    from recbole_ext import run_recbole_ext

    print(f"training {label} ...", flush=True)
    start = time.perf_counter()
    result = run_recbole_ext(model=model, dataset=DATASET, config_dict=config)
    result["seconds"] = time.perf_counter() - start
    return result


def print_table(rows: list[tuple[str, dict]]) -> None:
    print(f"\n{'run':<34}" + "".join(f"{name:>11}" for name in COLUMNS) + f"{'seconds':>9}")
    for label, result in rows:
        test = result["test_result"]
        print(f"{label:<34}" + "".join(f"{test.get(name, float('nan')):>11.4f}" for name in COLUMNS)
              + f"{result['seconds']:>9.1f}")


def print_recommendations(checkpoint: str, title: str) -> None:
    from recbole_ext.recommend import RecommendError, recommend

    try:
        recs = recommend(checkpoint, [USER], topk=5)
    except RecommendError as err:
        print(f"\n{title}: {err}")
        return
    names = movie_titles()
    print(f"\n{title}: top-5 for user {USER} (items they rated in training are left out)")
    for row in recs.itertuples():
        print(f"  {row.rank}. item {row.item_id:>5}  score {row.score:8.4f}  {names.get(str(row.item_id), '')}")


def movie_titles() -> dict[str, str]:
    """ml-100k item id -> title, from the ``.item`` file bundled with RecBole."""
    import recbole

    path = Path(recbole.__file__).parent / "dataset_example" / DATASET / f"{DATASET}.item"
    titles = {}
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header = [name.split(":")[0] for name in lines[0].split("\t")]
    column = header.index("movie_title") if "movie_title" in header else None
    for line in lines[1:]:
        fields = line.split("\t")
        if column is not None and len(fields) > column:
            titles[fields[0]] = fields[column]
    return titles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recbole_ext.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="train this model instead of the BPR comparison")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 8; 3 with --model)")
    parser.add_argument("--checkpoint-dir", default="saved/demo")
    args = parser.parse_args(argv)
    if args.model:
        config = base_config(args.epochs or 3, args.checkpoint_dir)
        if args.model not in ("BPR",):  # a model's own metrics may differ (ratings, labels)
            config = {k: v for k, v in config.items() if k not in ("metrics", "valid_metric")}
        result = train(args.model, args.model, config)
        print(f"\n{args.model} on {DATASET}, {config['epochs']} epochs: test {result['test_result']}")
        print_recommendations(result["checkpoint"], args.model)
        return 0

    epochs = args.epochs or 8
    config = base_config(epochs, args.checkpoint_dir)
    plain = train("BPR, RecBole's random init", "BPR", config)
    leporid = train("BPR, LEPORID init (recbole-ext)", "BPR", config | LEPORID)
    print(f"\nBPR on {DATASET}, {epochs} epochs each, same seed and split (test split, full ranking):")
    print_table([("BPR, RecBole's random init", plain), ("BPR, LEPORID init (recbole-ext)", leporid)])
    gain = leporid["test_result"]["recall@10"] / max(plain["test_result"]["recall@10"], 1e-12) - 1
    print(f"\nLEPORID initialisation: {gain:+.0%} recall@10 at the same budget.")
    print_recommendations(leporid["checkpoint"], "BPR + LEPORID")
    return 0


if __name__ == "__main__":
    from recbole_ext.cli import quiet_warnings

    with quiet_warnings():
        sys.exit(main())
