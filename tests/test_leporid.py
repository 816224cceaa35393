"""LE / LEPORID initialiser: graph, Laplacian, eigenvectors, z-scoring, cache and hook."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recbole_ext import Config
from recbole_ext.data import create_dataset, data_preparation
from recbole_ext.model.init import apply_embedding_init, find_user_item_embeddings
from recbole_ext.model.init.leporid import (
    cached_embedding,
    leporid_embedding,
    normalized_laplacian,
    regularized_degree,
    similarity_graph,
    spectral_embedding,
    zscore_columns,
)
from recbole_ext.registry import get_model


def random_interactions(n_rows: int, n_cols: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_rows, n_cols)) < density).astype(float)
    dense[np.arange(n_rows), rng.integers(0, n_cols, n_rows)] = 1.0  # no empty row
    return sp.csr_matrix(dense)


def dense_reference(R: np.ndarray, topk: int, lam: float, dim: int) -> np.ndarray:
    """The official algorithm written densely and directly (loops, argsort, eigh)."""
    n = len(R)
    S = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                inter = np.sum(R[i] * R[j])
                union = np.sum(np.maximum(R[i], R[j]))
                S[i, j] = inter / union if union else 0.0
    W = np.zeros((n, n))
    for i in range(n):
        for j in np.argsort(S[i])[-topk:]:
            W[i, j], W[j, i] = S[i, j], S[j, i]
    np.fill_diagonal(W, 0.0)
    d = W.sum(axis=1)
    d = d + lam * (d.max() - d)
    L = np.eye(n) - W / np.sqrt(np.outer(d, d))
    _, vectors = np.linalg.eigh(L)
    vectors = vectors[:, :dim]
    return (vectors - vectors.mean(axis=0)) / vectors.std(axis=0)


def test_jaccard_and_cosine_by_hand():
    R = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1]], float))
    W = similarity_graph(R, topk=10).toarray()
    expected = np.array([[0, 1 / 3, 2 / 3, 0], [1 / 3, 0, 2 / 3, 0], [2 / 3, 2 / 3, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(W, expected, rtol=1e-6)
    cosine = similarity_graph(R, topk=10, similarity="cosine").toarray()
    assert cosine[0, 2] == pytest.approx(2 / np.sqrt(2 * 3), rel=1e-6)
    assert cosine[0, 1] == pytest.approx(1 / 2, rel=1e-6)


def test_topk_is_union_symmetrised():
    # node 0 has J=1/3 with node 1 and 2/3 with node 2; with top-1, 0 keeps only 2, but
    # node 1's best neighbour is node 0 (J=1/2 > 1/4), so the edge 0-1 survives the union.
    R = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], float))
    W = similarity_graph(R, topk=1).toarray()
    assert W[0, 2] == pytest.approx(2 / 3) and W[2, 0] == pytest.approx(2 / 3)
    assert W[0, 1] == pytest.approx(1 / 2) and W[1, 0] == pytest.approx(1 / 2)
    assert W[1, 2] == 0 and W[2, 1] == 0  # neither picks the other (J=1/3)


def test_le_and_leporid_differ_exactly_by_the_degree_formula():
    W = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 2], [0, 2, 0]], float))
    np.testing.assert_allclose(regularized_degree(W, 0.0), [1, 3, 2])
    np.testing.assert_allclose(regularized_degree(W, 0.5), [2, 3, 2.5])  # d + 0.5 (3 - d)
    le = normalized_laplacian(W, 0.0).toarray()
    leporid = normalized_laplacian(W, 0.5).toarray()
    assert le[0, 1] == pytest.approx(-1 / np.sqrt(1 * 3))
    assert leporid[0, 1] == pytest.approx(-1 / np.sqrt(2 * 3))
    assert leporid[1, 2] == pytest.approx(-2 / np.sqrt(3 * 2.5))
    np.testing.assert_allclose(np.diag(le), 1.0)
    np.testing.assert_allclose(np.diag(leporid), 1.0)
    # plain LE is singular (trivial eigenvalue 0), LEPORID's regularised L is not
    assert np.linalg.eigvalsh(le).min() == pytest.approx(0.0, abs=1e-12)
    assert np.linalg.eigvalsh(leporid).min() > 0.05


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_sparse_eigenvectors_satisfy_the_eigen_equation(lam):
    W = similarity_graph(random_interactions(80, 30, 0.15, seed=1), topk=10)
    vectors, values = spectral_embedding(W, dim=6, lam=lam, solver="arpack", tol=1e-12)
    L = normalized_laplacian(W, lam)
    np.testing.assert_allclose(L @ vectors, vectors * values, atol=1e-6)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(6), atol=1e-6)
    assert np.all(np.diff(values) >= 0)
    dense_values = np.linalg.eigvalsh(L.toarray())[:6]
    np.testing.assert_allclose(values, dense_values, atol=1e-6)
    if lam == 0.0:  # the trivial eigenvector (D^1/2 1) is kept, not dropped
        assert values[0] == pytest.approx(0.0, abs=1e-8)


def test_sign_is_deterministic_and_solvers_agree():
    W = similarity_graph(random_interactions(70, 25, 0.2, seed=2), topk=15)
    arpack, _ = spectral_embedding(W, dim=5, lam=0.5, solver="arpack", seed=0, tol=1e-12)
    again, _ = spectral_embedding(W, dim=5, lam=0.5, solver="arpack", seed=99, tol=1e-12)
    dense, _ = spectral_embedding(W, dim=5, lam=0.5, solver="dense")
    np.testing.assert_allclose(arpack, again, atol=1e-6)
    np.testing.assert_allclose(arpack, dense, atol=1e-6)
    pivot = np.argmax(np.abs(dense), axis=0)
    assert np.all(dense[pivot, np.arange(5)] > 0)


def test_sparse_pipeline_equals_dense_reference():
    # top-k truncation breaks Jaccard ties arbitrarily (hand-checked separately above), so
    # the end-to-end comparison keeps every neighbour
    R = random_interactions(40, 20, 0.25, seed=3)
    ours = leporid_embedding(R, dim=4, topk=40, lam=0.5, solver="arpack", tol=1e-12)
    reference = dense_reference(R.toarray(), topk=40, lam=0.5, dim=4)
    signs = np.sign(np.sum(ours * reference, axis=0))  # eigenvectors are defined up to sign
    np.testing.assert_allclose(ours, reference * signs, atol=1e-5)


def test_zscore_and_isolated_rows():
    dense = random_interactions(30, 12, 0.3, seed=4).toarray()
    dense[0] = 0.0  # RecBole's padding id 0
    dense[7] = 0.0  # a user with no training interaction
    dense[:, 11] = 0.0
    dense[9] = 0.0
    dense[9, 11] = 1.0  # only item 11, which nobody else has: no similar neighbour
    embedding = leporid_embedding(sp.csr_matrix(dense), dim=4, topk=10)
    for row in (0, 7, 9):
        np.testing.assert_array_equal(embedding[row], 0.0)
    rest = np.setdiff1d(np.arange(30), [0, 7, 9])
    np.testing.assert_allclose(embedding[rest].mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(embedding[rest].std(axis=0), 1.0, atol=1e-10)
    assert np.isfinite(embedding).all()


def test_zscore_columns_by_hand():
    x = np.array([[1.0, 5.0], [3.0, 5.0], [9.0, 9.0]])
    out = zscore_columns(x, rows=np.array([0, 1]))
    np.testing.assert_allclose(out, [[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])


def test_cache_round_trip_is_keyed_by_split(tmp_path):
    R = random_interactions(30, 15, 0.3, seed=5)
    params = dict(dim=3, topk=5, lam=0.5, similarity="jaccard")
    first, hit = cached_embedding(R, tmp_path, "toy", "user", **params)
    assert not hit
    second, hit = cached_embedding(R, tmp_path, "toy", "user", **params)
    assert hit
    np.testing.assert_array_equal(first, second)
    other = R.tolil()
    other[0, 14] = 1.0 - other[0, 14]
    _, hit = cached_embedding(other.tocsr(), tmp_path, "toy", "user", **params)
    assert not hit, "another training split must not reuse the cached file"
    assert len(list(tmp_path.glob("*.npy"))) == 2


def build(make_config, model: str, **overrides):
    config = Config(config_dict=make_config(model=model, **overrides))
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    model_obj = get_model(model)(config, train_data._dataset)
    return config, model_obj, train_data._dataset


def test_hook_sets_bpr_embeddings_from_the_training_split(make_config, tmp_path):
    config, model, train = build(make_config, "BPR", embedding_size=8, embedding_init="leporid",
                                 embedding_init_dim=8, embedding_init_cache_dir=str(tmp_path / "c"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = apply_embedding_init(model, train, config)
    assert report["layers"] == {"user_embedding": "user", "item_embedding": "item"}
    expected = leporid_embedding(train.inter_matrix(form="csr").T.tocsr(), dim=8, topk=1000, lam=0.5)
    torch.testing.assert_close(model.item_embedding.weight, torch.as_tensor(expected, dtype=torch.float32))
    assert not torch.equal(before["user_embedding.weight"], model.user_embedding.weight)
    assert model.user_embedding.weight.requires_grad  # embedding_init_freeze defaults to False


def test_hook_leaves_other_layers_alone_and_freezes(make_config, tmp_path):
    config, model, train = build(make_config, "NeuMF", mf_embedding_size=8, mlp_embedding_size=8,
                                 mlp_hidden_size=[8], embedding_init="le", embedding_init_dim=8,
                                 embedding_init_freeze=True, embedding_init_cache_dir=None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_embedding_init(model, train, config)
    embeddings = set(find_user_item_embeddings(model, train.user_num, train.item_num))
    assert embeddings == {"user_mf_embedding", "item_mf_embedding", "user_mlp_embedding", "item_mlp_embedding"}
    for key, value in model.state_dict().items():
        changed = not torch.equal(before[key], value)
        assert changed == (key.rsplit(".", 1)[0] in embeddings), key
    for name in embeddings:
        assert not getattr(model, name).weight.requires_grad


def test_width_mismatch_names_model_layer_and_sizes(make_config):
    config, model, train = build(make_config, "BPR", embedding_size=12, embedding_init="leporid",
                                 embedding_init_dim=8, embedding_init_cache_dir=None)
    with pytest.raises(ValueError, match=r"BPR\.user_embedding .*width 12 but embedding_init_dim is 8"):
        apply_embedding_init(model, train, config)


def test_std_rescales_the_z_scored_columns(make_config):
    config, model, train = build(make_config, "BPR", embedding_size=8, embedding_init="leporid",
                                 embedding_init_dim=8, embedding_init_std=0.1, embedding_init_cache_dir=None)
    apply_embedding_init(model, train, config)
    expected = leporid_embedding(train.inter_matrix(form="csr"), dim=8, topk=1000, lam=0.5)
    torch.testing.assert_close(model.user_embedding.weight, torch.as_tensor(0.1 * expected, dtype=torch.float32))
    config["embedding_init_std"] = 0.0
    with pytest.raises(ValueError, match="embedding_init_std"):
        apply_embedding_init(model, train, config)


def test_freezing_every_parameter_is_a_clear_error(make_config):
    config, model, train = build(make_config, "BPR", embedding_size=8, embedding_init="le",
                                 embedding_init_dim=8, embedding_init_freeze=True,
                                 embedding_init_cache_dir=None)
    with pytest.raises(ValueError, match=r"embedding_init_freeze=True leaves BPR nothing to train"):
        apply_embedding_init(model, train, config)


def test_bad_method_and_model_without_embeddings(make_config):
    config, model, train = build(make_config, "Pop", embedding_init="leporid", embedding_init_cache_dir=None)
    with pytest.raises(ValueError, match="Pop has no nn.Embedding"):
        apply_embedding_init(model, train, config)
    config["embedding_init"] = "svd"
    with pytest.raises(ValueError, match="'embedding_init' parameter of embedding_init must be one of"):
        apply_embedding_init(model, train, config)


def test_cli_runs_bpr_with_leporid(tiny_dataset, tmp_path):
    import json
    import subprocess
    import sys

    from conftest import REPO_ROOT

    data_path, name = tiny_dataset
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_recbole_ext.py"), "--model", "BPR", "--dataset", name,
         "--embedding_init", "leporid", "--embedding_size", "16", "--embedding_init_dim", "16",
         f"--data_path={data_path}", "--epochs=1", f"--checkpoint_dir={tmp_path}", "--state=ERROR",
         "--show_progress=False", f"--embedding_init_cache_dir={tmp_path / 'cache'}",
         "--results", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["config"]["embedding_init"] == "leporid"
    assert len(list((tmp_path / "cache").glob("tiny_*.npy"))) == 2  # users and items were computed
