"""C2F fine stage: soft threshold, S2 init and update, bridged propagation, checkpoints, memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbole_ext import prepare_run
from recbole_ext.checkpoint import load_checkpoint
from recbole_ext.model.general_recommender import _meta_embedding as me

TINY = {"embedding_size": 8, "n_anchors": 8, "n_fine_anchors": 6, "n_fine_compositions": 2,
        "sparse_pca_components": 4, "train_batch_size": 256, "metrics": ["Recall", "NDCG"],
        "topk": [5], "valid_metric": "NDCG@5",
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "alpha": 1.0,
                                  "dynamic": False, "candidate_num": 0}}


def pipeline(make_config, model: str = "C2F", **overrides):
    settings = TINY | overrides
    if model == "LEGCF":  # the fine keys belong to C2F only
        settings = {k: v for k, v in settings.items() if "fine" not in k and "pca" not in k}
    run = prepare_run(config_dict=make_config(model=model, **settings))
    return run.model, run.trainer, (run.train_data, run.valid_data, run.test_data)


def scripted_validation(trainer, scores):
    """Replace validation by a fixed sequence of scores."""
    scores = iter(scores)

    def valid_epoch(valid_data, show_progress=False):
        score = next(scores)
        return score, {"ndcg@5": score}

    trainer._valid_epoch = valid_epoch


def dense(index: torch.Tensor, weight: torch.Tensor, n_cols: int) -> torch.Tensor:
    return me.assignment_matrix(index, weight, n_cols).to_dense()


def test_soft_threshold_produces_exact_zeros():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
    out = me.soft_threshold(x, 1.0)
    assert out.tolist() == [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5]
    assert torch.equal(out == 0, x.abs() <= 1.0)  # exact zeros, not small values


def test_initial_fine_assignment_equals_dense_formula():
    rng = np.random.default_rng(3)
    n, c, c_f, ft = 12, 5, 4, 2
    s1_index, s1_weight = me.anchor_assignment(rng.integers(0, c, size=n), c, 2, 0.7, rng)
    partition = rng.integers(0, c_f, size=n)
    index, weight = me.fine_assignment_from_partition(s1_index, s1_weight, partition, c, c_f, 0.5, ft)
    # F: 0.5 on the own fine part, 0.5 / 3 on each of the other three
    f = torch.full((n, c_f), 0.5 / 3)
    f[torch.arange(n), torch.as_tensor(partition)] = 0.5
    expected_weight, expected_index = torch.topk(
        torch.softmax(dense(s1_index, s1_weight, c).T @ f, dim=1), ft, dim=1)
    torch.testing.assert_close(weight, expected_weight)
    torch.testing.assert_close(dense(index, weight, c_f), dense(expected_index, expected_weight, c_f))


def test_fine_update_equals_closed_form():
    gen = torch.Generator().manual_seed(0)
    h_rows, h_c, h_f = (torch.randn(20, 6, generator=gen, dtype=torch.float64),
                        torch.randn(5, 6, generator=gen, dtype=torch.float64),
                        torch.randn(4, 6, generator=gen, dtype=torch.float64))
    index, weight = me.fine_assignment_update(h_rows, h_c, h_f, ft=3)
    a1 = h_rows @ torch.linalg.pinv(h_c)  # [N, c]
    a2 = h_rows @ torch.linalg.pinv(h_f)  # [N, c_f]
    expected_weight, expected_index = torch.topk(torch.softmax(a1.T @ a2, dim=1), 3, dim=1)
    assert torch.equal(index, expected_index)
    torch.testing.assert_close(weight, expected_weight)


def test_sparse_pca_codebook_scatters_components_into_d_dims():
    rng = np.random.default_rng(0)
    coarse = np.random.default_rng(1).normal(size=(10, 12)).astype(np.float32)
    codebook = me.sparse_pca_codebook(coarse, n_fine=7, n_components=5, alpha=0.1, rng=rng)
    assert codebook.shape == (7, 12) and codebook.dtype == np.float32
    assert ((codebook != 0).sum(axis=1) <= 5).all()
    again = me.sparse_pca_codebook(coarse, 7, 5, 0.1, np.random.default_rng(0))
    np.testing.assert_array_equal(codebook, again)  # seeded: rows, SparsePCA and positions


def test_fine_propagation_matches_the_algebraic_form(make_config):
    model, _, _ = pipeline(make_config, stage=["coarse", "fine"], n_layers=2, bridge_weight=0.3,
                           soft_threshold=0.1)
    model.enter_stage("fine")
    with torch.no_grad():
        ego, h = model.propagate()
    n, c, g = model.n_entities, model.n_anchors, 0.3
    s1 = dense(model.assign_index, model.assign_weight, c)
    s2 = dense(model.fine_index, model.fine_weight, model.n_fine_anchors)
    fine = me.soft_threshold(model.fine_codebook.detach(), 0.1)
    graph = model.graph().to_dense()
    x = torch.cat([torch.tanh(s1 @ model.codebook.detach()),
                   g * s2 @ fine + (1 - g) * model.codebook.detach(), torch.tanh(fine)])
    layers = [x]
    for _ in range(2):
        x = graph @ x
        h_u, h_c, h_f = x[:n], x[n:n + c], x[n + c:]
        x = torch.cat([h_u - g * s1 @ h_c - (1 - 2 * g) * s1 @ s2 @ h_f,
                       (1 - g) * h_c - (1 - 2 * g) * s2 @ h_f, h_f])
        layers.append(x)
    torch.testing.assert_close(h, torch.stack(layers).mean(dim=0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ego, layers[0][:n])
    # G has the S2 blocks between anchors and fine anchors, symmetric
    assert torch.count_nonzero(graph[n:n + c, n + c:]) == torch.count_nonzero(s2)
    torch.testing.assert_close(graph, graph.T)


def test_one_run_trains_coarse_then_fine_from_the_coarse_update_checkpoint(make_config):
    model, trainer, (train_data, valid_data, _) = pipeline(
        make_config, stage="coarse,fine", epochs=4, eval_step=1, stopping_step=0)
    # coarse/fixed: 0.5 (best of the stage), 0.4 -> stop; coarse/update: 0.2 (its best), 0.1 -> stop
    # fine/fixed: 0.1, 0.2, 0.3, 0.25 (budget ends, no update sub-stage)
    scripted_validation(trainer, [0.5, 0.4, 0.2, 0.1, 0.1, 0.2, 0.3, 0.25])
    start = {}
    original_enter = model.enter_stage

    def enter(stage):
        if stage == "fine":  # the weights the fine stage starts from
            start.update(codebook=model.codebook.detach().clone(), index=model.assign_index.clone(),
                         weight=model.assign_weight.clone())
        original_enter(stage)

    model.enter_stage = enter
    trainer.fit(train_data, valid_data, saved=True)
    records = trainer.phase_records
    assert list(records) == ["coarse/fixed", "coarse/update", "fine/fixed"]
    # as the official fine stage: the coarse update sub-stage's best, though fixed scored higher
    saved = load_checkpoint(records["coarse/update"]["checkpoint"], "cpu")["state_dict"]
    torch.testing.assert_close(start["codebook"], saved["codebook"])
    assert torch.equal(start["index"], saved["assign_index"])
    torch.testing.assert_close(start["weight"], saved["assign_weight"])
    # the fine stage trains E_f and the biases only: E_c and S1 stay those of that checkpoint
    torch.testing.assert_close(model.codebook.detach(), saved["codebook"])
    assert torch.equal(model.assign_index, saved["assign_index"])
    assert model.is_fine and trainer.saved_model_file == records["fine/fixed"]["checkpoint"]
    assert trainer.best_valid_score == 0.3


def test_coarse_checkpoint_loads_into_a_fine_run(make_config):
    coarse, coarse_trainer, (train_data, valid_data, _) = pipeline(make_config, model="LEGCF",
                                                                   epochs=2, stopping_step=5)
    coarse_trainer.fit(train_data, valid_data, saved=True)
    checkpoint = coarse_trainer.saved_model_file
    fine, trainer, (train_data, valid_data, _) = pipeline(
        make_config, stage=["fine"], init_checkpoint=checkpoint, epochs=4, eval_step=1,
        stopping_step=0)
    scripted_validation(trainer, [0.2, 0.1, 0.3, 0.4])
    trainer.fit(train_data, valid_data, saved=True)
    # fine/fixed stops after 0.1; fine/update: S2 re-estimated, S1 never touched
    assert list(trainer.phase_records) == ["fine/fixed", "fine/update"]
    torch.testing.assert_close(fine.codebook.detach(), coarse.codebook.detach())
    assert torch.equal(fine.assign_index, coarse.assign_index)
    assert torch.equal(fine.assign_weight, coarse.assign_weight)
    assert fine.is_fine and not fine.codebook.requires_grad and fine.fine_codebook.requires_grad
    assert not torch.equal(fine.bias.detach(), coarse.bias.detach())  # biases are trained


def test_fine_run_without_or_with_a_mismatched_checkpoint_is_refused(make_config):
    with pytest.raises(ValueError, match=r"the 'init_checkpoint' parameter of C2F must name a coarse checkpoint"):
        pipeline(make_config, stage=["fine"])
    coarse, coarse_trainer, (train_data, valid_data, _) = pipeline(make_config, model="LEGCF",
                                                                   n_anchors=6, epochs=1)
    coarse_trainer.fit(train_data, valid_data, saved=True)
    fine, _, _ = pipeline(make_config, stage=["fine"], init_checkpoint=coarse_trainer.saved_model_file)
    with pytest.raises(ValueError, match=r"'codebook' has shape \(6, 8\), this model needs \(8, 8\)"):
        fine.load_coarse_checkpoint(coarse_trainer.saved_model_file)


def test_fine_memory_report_equals_hand_count(make_config):
    model, _, _ = pipeline(make_config, stage=["coarse", "fine"], n_compositions=2, soft_threshold=1.0)
    coarse_parts = model.memory_report()["parts"]
    assert set(coarse_parts) == {"codebook", "assignment", "bias"}
    model.enter_stage("fine")
    with torch.no_grad():  # 6 x 8 fine codebook with 5 entries above tau = 1
        model.fine_codebook.zero_()
        model.fine_codebook[0, :3] = torch.tensor([2.0, -1.5, 1.01])
        model.fine_codebook[4, 7] = -3.0
        model.fine_codebook[5, 1] = 1.2
        model.fine_codebook[3, 2] = 1.0  # |x| == tau: soft-thresholded to an exact 0
    report = model.memory_report()
    n = 41 + 61
    assert report["stage"] == "fine"
    assert report["parts"]["fine_codebook"] == {"params": 5, "nnz": 5, "bytes": 40}
    assert report["parts"]["fine_assignment"] == {"params": 16, "nnz": 16, "bytes": 128}  # c * ft
    expected = 8 * 8 * 4 + n * 2 * 8 + (n + 1) * 4 + 40 + 128
    assert report["embedding_bytes"] == expected
    assert report["embedding_params"] == 64 + 2 * n + n + 1 + 5 + 16
    assert report["lightgcn_bytes"] == n * 8 * 4
    assert report["bytes_ratio_vs_lightgcn"] == pytest.approx(expected / (n * 8 * 4))
