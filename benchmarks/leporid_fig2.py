"""Fig. 2 simulator of the LEPORID paper: how far one extra edge moves a node's embedding.

Zhang et al., "Initialization Matters: Regularizing Manifold-informed Initialization for
Neural Recommendation Systems", KDD 2021 (arXiv 2106.04993), Fig. 2; official script
``codes/simulator_fig2.py`` of https://github.com/zhangynnancy/Leporid_DLR2.

On Barabási–Albert graphs (N = 100 nodes, M = 10 edges per new node) the embedding is
the ``dim`` (40) eigenvectors of the smallest eigenvalues of ``L = D̃ - W`` (the official
simulator's unnormalised Laplacian; ``--laplacian sym`` uses ``I - D̃^-1/2 W D̃^-1/2``),
trivial vector included, with ``D̃ = D`` for LE and ``D̃ = (1 - λ) D + λ max(D)`` for
LEPORID. For every node i (degree < N - 1) and ``repeats`` times, one edge from i to a
random non-neighbour is added, the embedding recomputed and ``||U'_i - U_i||`` recorded.
The paper's finding: low-degree nodes move far more; LEPORID's regularisation damps it.

Deviations from the official script: each new eigenvector's sign is aligned with the
original one before measuring (the official script leaves ARPACK/LAPACK's arbitrary sign
in, which adds sign-flip noise of norm up to 2); the extra edge never points at i itself
(the official candidate list may include i, a no-op self loop on the diagonal of W).

Usage::

    python -m benchmarks leporid --only fig2 [--quick]      # the suite part: results/leporid/fig2.*
    python -m benchmarks.leporid_fig2 [--graphs 50] [--repeats 30] [--lam 0.5] [--laplacian sym] [--quick]

Run on its own (to explore other settings), it writes ``fig2-<laplacian>[-quick].{png,json}``
under the git-ignored ``benchmarks/results/quick/leporid/``; the committed figure is the
suite's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import QUICK_SUBDIR, RESULTS_DIR, pyplot, save_figure


def barabasi_albert(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Adjacency of a Barabási–Albert graph: node t >= m links to m distinct earlier nodes,
    chosen with probability proportional to their degree (the first to nodes 0..m-1)."""
    adjacency = np.zeros((n, n))
    targets = list(range(m))
    repeated: list[int] = []
    for source in range(m, n):
        adjacency[source, targets] = adjacency[targets, source] = 1.0
        repeated.extend(targets)
        repeated.extend([source] * m)
        chosen: set[int] = set()
        while len(chosen) < m:
            chosen.add(int(repeated[rng.integers(len(repeated))]))
        targets = sorted(chosen)
    return adjacency


def laplacian_embeddings(adjacency: np.ndarray, dim: int, lam: float, kind: str) -> np.ndarray:
    """Smallest-eigenvalue eigenvectors of one graph or a stack of graphs ``[..., n, n]``."""
    degree = adjacency.sum(axis=-1)
    degree = (1.0 - lam) * degree + lam * degree.max(axis=-1, keepdims=True)
    if kind == "unnormalized":
        laplacian = -adjacency.copy()
        idx = np.arange(adjacency.shape[-1])
        laplacian[..., idx, idx] += degree
    else:
        scale = 1.0 / np.sqrt(degree)
        laplacian = np.eye(adjacency.shape[-1]) - scale[..., :, None] * adjacency * scale[..., None, :]
    _, vectors = np.linalg.eigh(laplacian)
    return vectors[..., :dim]


def simulate(graphs: int, repeats: int, n: int, m: int, dim: int, lam: float, kind: str,
             seed: int) -> dict[str, list]:
    """Per node: ``(degree, mean change under LE, mean change under LEPORID)``."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(graphs):
        adjacency = barabasi_albert(n, m, rng)
        gold = {name: laplacian_embeddings(adjacency, dim, value, kind)
                for name, value in (("le", 0.0), ("leporid", lam))}
        degree = adjacency.sum(axis=1)
        for node in np.flatnonzero((degree > 0) & (degree < n - 1)):
            candidates = np.flatnonzero((adjacency[node] == 0) & (np.arange(n) != node))
            picks = rng.choice(candidates, size=repeats)
            perturbed = np.repeat(adjacency[None], repeats, axis=0)
            perturbed[np.arange(repeats), node, picks] = perturbed[np.arange(repeats), picks, node] = 1.0
            row = [float(degree[node])]
            for name, value in (("le", 0.0), ("leporid", lam)):
                new = laplacian_embeddings(perturbed, dim, value, kind)  # [repeats, n, dim]
                signs = np.sign(np.einsum("rnd,nd->rd", new, gold[name]))
                signs[signs == 0] = 1.0
                change = np.linalg.norm(new[:, node, :] * signs - gold[name][node], axis=1)
                row.append(float(change.mean()))
            rows.append(row)
    table = np.array(rows)
    return {"degree": table[:, 0].tolist(), "le": table[:, 1].tolist(), "leporid": table[:, 2].tolist()}


def summarise(result: dict[str, list]) -> dict[str, dict]:
    """Mean change per degree (and the low/high-degree quartile ratio) for each method."""
    degree = np.array(result["degree"])
    low, high = degree <= np.quantile(degree, 0.25), degree >= np.quantile(degree, 0.75)
    summary = {}
    for name in ("le", "leporid"):
        change = np.array(result[name])
        summary[name] = {
            "mean_change_low_degree_quartile": float(change[low].mean()),
            "mean_change_high_degree_quartile": float(change[high].mean()),
            "low_over_high": float(change[low].mean() / change[high].mean()),
            "spearman_degree_change": float(_spearman(degree, change)),
        }
    return summary


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rank = lambda v: np.argsort(np.argsort(v, kind="stable"), kind="stable").astype(float)  # noqa: E731
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def plot(result: dict[str, list], path: Path, title: str) -> None:
    plt = pyplot()

    degree = np.array(result["degree"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, color in (("le", "tab:red"), ("leporid", "tab:blue")):
        change = np.array(result[name])
        values = np.unique(degree)
        means = [change[degree == d].mean() for d in values]
        ax.scatter(degree, change, s=4, alpha=0.15, color=color)
        ax.plot(values, means, color=color, label=f"{name.upper()} (mean per degree)")
    ax.set_yscale("log")
    ax.set_xlabel("node degree before the extra edge")
    ax.set_ylabel("||U'_i - U_i||  (embedding change)")
    ax.set_title(title, fontsize=8)
    ax.legend()
    save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None, png: Path | None = None) -> dict:
    """Run the simulation; write its figure to ``png`` (standalone: a scratch folder, with the
    JSON beside it) and return settings, seconds, summary and per-node changes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graphs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--m", type=int, default=10)
    parser.add_argument("--dim", type=int, default=40)
    parser.add_argument("--lam", type=float, default=0.5)
    parser.add_argument("--laplacian", choices=["unnormalized", "sym"], default="unnormalized")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--quick", action="store_true", help="5 graphs x 10 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.graphs, args.repeats = 5, 10
    start = time.perf_counter()
    result = simulate(args.graphs, args.repeats, args.nodes, args.m, args.dim, args.lam, args.laplacian,
                      args.seed)
    seconds = time.perf_counter() - start
    title = (f"BA graphs N={args.nodes}, M={args.m}: {args.graphs} graphs x {args.repeats} extra edges\n"
             f"dim={args.dim}, {args.laplacian} Laplacian, LEPORID lambda={args.lam}")
    payload = {"settings": vars(args), "seconds": round(seconds, 1), "summary": summarise(result), "per_node": result}
    if png is None:
        scratch = RESULTS_DIR / QUICK_SUBDIR / "leporid"
        png = scratch / f"fig2-{args.laplacian}{'-quick' if args.quick else ''}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        png.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    plot(result, png, title)
    print(json.dumps({"seconds": payload["seconds"], "summary": payload["summary"]}, indent=1))
    return payload


if __name__ == "__main__":
    main()
