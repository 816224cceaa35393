"""LEGCF: sparse assignment, expanded graph, closed-form update, memory count, two-stage trainer."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from recbole_ext import prepare_run
from recbole_ext.model.general_recommender import _meta_embedding as me

TINY = {"embedding_size": 8, "n_anchors": 8, "train_batch_size": 256, "metrics": ["Recall", "NDCG"],
        "topk": [5], "valid_metric": "NDCG@5",
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "alpha": 1.0,
                                  "dynamic": False, "candidate_num": 0}}


def pipeline(make_config, model: str = "LEGCF", **overrides):
    run = prepare_run(config_dict=make_config(model=model, **(TINY | overrides)))
    return run.model, run.trainer, (run.train_data, run.valid_data, run.test_data)


def test_anchor_assignment_has_t_distinct_entries_with_partition_first():
    partition = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4] * 20)
    index, weight = me.anchor_assignment(partition, n_anchors=5, t=3, anchor_weight=0.6,
                                         rng=np.random.default_rng(0))
    assert index.shape == weight.shape == (200, 3)
    assert torch.equal(index[:, 0], torch.as_tensor(partition))
    assert all(len(set(row.tolist())) == 3 for row in index)  # t distinct anchors per row
    assert torch.all((index >= 0) & (index < 5))
    torch.testing.assert_close(weight[:, 0], torch.full((200,), 0.6))
    torch.testing.assert_close(weight[:, 1:], torch.full((200, 2), 0.2))


def test_assignment_with_t_equal_to_c_uses_every_anchor():
    index, weight = me.anchor_assignment(np.array([2, 0, 1]), n_anchors=3, t=3, anchor_weight=0.5,
                                         rng=np.random.default_rng(1))
    assert sorted(index[0].tolist()) == [0, 1, 2]
    torch.testing.assert_close(weight.sum(dim=1), torch.ones(3))


def test_model_assignment_has_exactly_t_nonzeros_per_row(make_config):
    model, _, _ = pipeline(make_config, n_compositions=3)
    dense_rows = model.assignment().to_dense()  # tiny: 102 x 8
    assert dense_rows.shape == (model.n_entities, 8)
    assert torch.equal((dense_rows != 0).sum(dim=1), torch.full((model.n_entities,), 3))
    torch.testing.assert_close(dense_rows.sum(dim=1), torch.ones(model.n_entities))


def test_metis_partition_cuts_two_cliques_apart():
    import scipy.sparse as sp

    # two 4-cliques joined by one edge: METIS must separate them
    edges = [(a, b) for block in (range(4), range(4, 8)) for a in block for b in block if a != b]
    edges += [(3, 4), (4, 3)]
    rows, cols = zip(*edges)
    adj = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(8, 8))
    part = me.metis_partition(adj, 2, seed=0)
    assert len(set(part[:4])) == 1 and len(set(part[4:])) == 1 and part[0] != part[4]


def test_expanded_graph_normalisation_by_hand():
    # entities u0, u1, i0 (edges u0-i0, u1-i0); anchors a0, a1; S: u0->a0 (1), u1->a1 (1), i0->a0 (1)
    import scipy.sparse as sp

    adj = me.bipartite_adjacency(sp.coo_matrix(([1.0, 1.0], ([0, 1], [0, 0])), shape=(2, 1)), 2, 1)
    adj_indices, adj_values = me.sym_normalize_coo(adj)
    index = torch.tensor([[0], [1], [0]])
    graph = me.expanded_graph(adj_indices, adj_values, 5, [(0, 3, index, torch.ones(3, 1))]).to_dense()
    r = 1 / math.sqrt(2)  # Â(u, i0) = 1/sqrt(1 * 2)
    # row sums of [[Â, S], [Sᵀ, 0]]: u0 = r + 1, u1 = r + 1, i0 = 2r + 1, a0 = 2, a1 = 1
    deg = torch.tensor([r + 1, r + 1, 2 * r + 1, 2.0, 1.0])
    expected = torch.zeros(5, 5)
    for a, b, v in [(0, 2, r), (1, 2, r), (0, 3, 1.0), (1, 4, 1.0), (2, 3, 1.0)]:
        expected[a, b] = expected[b, a] = v / math.sqrt(deg[a] * deg[b])
    torch.testing.assert_close(graph, expected)


def test_update_rule_equals_closed_form(monkeypatch):
    h_anchors = torch.diag(torch.tensor([1.0, 2.0, 4.0]))  # pinv = diag(1, 1/2, 1/4)
    h_rows = torch.tensor([[2.0, 2.0, 12.0], [3.0, 0.0, -4.0]])  # coefficients [2,1,3], [3,0,-1]
    monkeypatch.setattr(me, "_UPDATE_CHUNK_ROWS", 1)  # every row in its own chunk
    index, weight = me.topk_pinv_assignment(h_rows, h_anchors, t=2)
    assert index.tolist() == [[2, 0], [0, 1]]
    torch.testing.assert_close(weight, torch.tensor([[3.0, 2.0], [3.0, 0.0]]))


def test_model_update_matches_pinv_of_propagated_rows(make_config):
    model, _, _ = pipeline(make_config, n_compositions=2)
    with torch.no_grad():
        _, h = model.propagate()
    coefficients = h[:model.n_entities] @ torch.linalg.pinv(h[model.n_entities:])
    expected_weight, expected_index = torch.topk(coefficients, 2, dim=1)
    model.update_assignment()
    assert torch.equal(model.assign_index, expected_index)
    torch.testing.assert_close(model.assign_weight, expected_weight.clamp_min(0))
    assert model._graph is None  # G is rebuilt from the new S on next use


def test_loss_is_bpr_plus_scaled_l2_on_ego_rows(make_config):
    model, _, (train_data, _, _) = pipeline(make_config, l2_penalty_factor=5.0)
    batch = next(iter(train_data))
    loss = model.calculate_loss(batch)
    ego, h = model.propagate()
    u = batch["user_id"]
    p, n = batch["item_id"] + model.n_users, batch["neg_item_id"] + model.n_users
    bpr = torch.nn.functional.softplus((h[u] * h[n]).sum(1) + model.bias[n]
                                       - (h[u] * h[p]).sum(1) - model.bias[p]).mean()
    reg = (ego[u].pow(2).sum() + ego[p].pow(2).sum() + ego[n].pow(2).sum()) / len(u)
    torch.testing.assert_close(loss, bpr + 5.0e-4 * reg)


def test_gradients_are_clipped_by_value(make_config):
    model, _, (train_data, _, _) = pipeline(make_config, clip_grad_value=1.0e-3)
    (model.calculate_loss(next(iter(train_data))) * 1000).backward()
    assert model.codebook.grad.abs().max() <= 1.0e-3 + 1e-9
    assert model.codebook.grad.abs().max() == pytest.approx(1.0e-3)


def test_full_sort_equals_predict(make_config):
    model, _, (_, _, test_data) = pipeline(make_config)
    model.eval()
    batch = next(iter(test_data))[0]
    with torch.no_grad():
        scores = model.full_sort_predict(batch).view(len(batch), -1)
        users = batch["user_id"]
        item = torch.full_like(users, 7)
        from recbole.data.interaction import Interaction

        direct = model.predict(Interaction({"user_id": users, "item_id": item}))
    torch.testing.assert_close(scores[:, 7], direct)


def test_memory_report_equals_hand_count(make_config):
    model, _, _ = pipeline(make_config, n_compositions=2)
    report = model.memory_report()
    n = 41 + 61  # RecBole ids include padding 0 for users and items
    assert report["n_entities"] == n
    assert report["parts"]["codebook"] == {"params": 64, "bytes": 256}
    assert report["parts"]["assignment"] == {"params": 204, "nnz": 204, "bytes": 204 * 8}
    assert report["parts"]["bias"] == {"params": 103, "bytes": 412}
    assert report["embedding_params"] == 64 + 204 + 103
    assert report["embedding_bytes"] == 256 + 1632 + 412
    assert report["lightgcn_params"] == n * 8
    assert report["bytes_ratio_vs_lightgcn"] == pytest.approx(2300 / (n * 8 * 4))


def test_invalid_parameters_name_key_value_and_range(make_config):
    with pytest.raises(ValueError, match=r"LEGCF: n_compositions = 9 must be at most n_anchors = 8"):
        pipeline(make_config, n_compositions=9)
    with pytest.raises(ValueError, match=r"'assignment_init' parameter of LEGCF .*'spectral'"):
        pipeline(make_config, assignment_init="spectral")


def _scripted_validation(trainer, scores):
    """Replace validation by a fixed sequence of scores; count assignment updates."""
    scores = iter(scores)
    updates = []

    def valid_epoch(valid_data, show_progress=False):
        score = next(scores)
        return score, {"ndcg@5": score}

    original = trainer.model.update_assignment

    def update():
        updates.append(trainer._last_epoch + 1)
        original()

    trainer._valid_epoch = valid_epoch
    trainer.model.update_assignment = update
    return updates


def test_stage_switch_happens_on_early_stop(make_config):
    model, trainer, (train_data, valid_data, _) = pipeline(make_config, epochs=8, eval_step=1,
                                                          stopping_step=0)
    # fixed: 0.5 (best), 0.4 -> early stop at epoch 1; update: 0.3 (best), 0.6 (best), 0.2 -> stop
    updates = _scripted_validation(trainer, [0.5, 0.4, 0.3, 0.6, 0.2])
    initial_index = model.assign_index.clone()
    best_score, best_result = trainer.fit(train_data, valid_data, saved=True)
    records = trainer.phase_records
    assert records["coarse/fixed"]["first_epoch"] == 0 and records["coarse/fixed"]["last_epoch"] == 1
    assert records["coarse/fixed"]["early_stopped"]
    assert records["coarse/update"]["first_epoch"] == 2 and records["coarse/update"]["last_epoch"] == 4
    assert updates == [2, 3, 4]  # S re-estimated before every epoch of the update sub-stage only
    assert not torch.equal(model.assign_index, initial_index)
    # both best checkpoints kept; the run ends on the better one (0.6 in the update sub-stage)
    assert os.path.isfile(records["coarse/fixed"]["checkpoint"])
    assert os.path.isfile(records["coarse/update"]["checkpoint"])
    assert trainer.saved_model_file == records["coarse/update"]["checkpoint"]
    assert best_score == 0.6 and best_result == {"ndcg@5": 0.6}
    assert trainer._generate_train_loss_output(4, 0.0, 1.0, 0.5).startswith("[coarse/update] ")


def test_no_update_stage_when_budget_ends_first(make_config):
    _, trainer, (train_data, valid_data, _) = pipeline(make_config, epochs=3, eval_step=1,
                                                       stopping_step=5)
    updates = _scripted_validation(trainer, [0.1, 0.2, 0.3])
    trainer.fit(train_data, valid_data, saved=False)
    assert list(trainer.phase_records) == ["coarse/fixed"] and updates == []


def test_resume_continues_in_the_update_sub_stage(make_config):
    model, trainer, (train_data, valid_data, _) = pipeline(make_config, epochs=4, eval_step=1,
                                                          stopping_step=0)
    _scripted_validation(trainer, [0.5, 0.4, 0.6, 0.7])
    trainer.fit(train_data, valid_data, saved=True)
    checkpoint = trainer.phase_records["coarse/update"]["checkpoint"]
    _, resumed, (train_data, valid_data, _) = pipeline(make_config, epochs=5, eval_step=1,
                                                       stopping_step=0)
    resumed.resume_checkpoint(checkpoint)
    updates = _scripted_validation(resumed, [0.8])
    resumed.fit(train_data, valid_data, saved=True)
    assert updates == [4] and resumed.phase == ("coarse", "update")
    assert set(resumed.phase_records) == {"coarse/fixed", "coarse/update"}


def test_fixed_assignment_epochs_caps_the_fixed_sub_stage(make_config):
    _, trainer, (train_data, valid_data, _) = pipeline(make_config, epochs=5, eval_step=1,
                                                       stopping_step=5, fixed_assignment_epochs=2)
    # improving scores: no early stop, so only the cap ends the fixed sub-stage
    updates = _scripted_validation(trainer, [0.1, 0.2, 0.3, 0.4, 0.5])
    trainer.fit(train_data, valid_data, saved=False)
    records = trainer.phase_records
    assert (records["coarse/fixed"]["first_epoch"], records["coarse/fixed"]["last_epoch"]) == (0, 1)
    assert not records["coarse/fixed"]["early_stopped"]
    assert (records["coarse/update"]["first_epoch"], records["coarse/update"]["last_epoch"]) == (2, 4)
    assert updates == [2, 3, 4] and trainer.epochs == 5


def test_negative_fixed_assignment_epochs_is_refused(make_config):
    with pytest.raises(ValueError, match=r"'fixed_assignment_epochs' .* Got -1"):
        pipeline(make_config, fixed_assignment_epochs=-1)


def test_anchors_can_be_left_out_of_the_propagation_graph(make_config):
    model, _, _ = pipeline(make_config)
    expanded = model.graph().coalesce()
    assert (expanded.indices()[1] >= model.n_entities).any()  # entity-anchor edges, official
    plain, _, _ = pipeline(make_config, anchors_in_graph=False)
    graph = plain.graph().coalesce()
    assert not (graph.indices() >= plain.n_entities).any()
    # anchor rows of X^l stay 0 after layer 0: only the ego rows tanh(S E) carry the codebook
    _, h = plain.propagate()
    torch.testing.assert_close(h[plain.n_entities:], plain.codebook / (plain.n_layers + 1))


def test_c2f_refuses_a_graph_without_anchors(make_config):
    with pytest.raises(ValueError, match="the 'anchors_in_graph' parameter of C2F must be True"):
        pipeline(make_config, model="C2F", anchors_in_graph=False)
