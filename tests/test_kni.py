"""KNI/NI: sampling graph, neighbour table, attention, n_eval averaging, ACC, labelled protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_ext import prepare_run
from recbole_ext import get_trainer, run_recbole_ext
from recbole_ext.evaluator.label_metrics import ACC, accuracy
from recbole_ext.model.knowledge_aware_recommender import kni_eval
from recbole_ext.model.knowledge_aware_recommender.kni_graph import (
    build_neighbor_table,
    parse_hop_n_sample,
    reachable_subgraph,
)

LABELED = {
    "load_col": {"inter": ["user_id", "item_id", "label"], "kg": ["head_id", "relation_id", "tail_id"],
                 "link": ["item_id", "entity_id"]},
    "train_neg_sample_args": None, "metrics": ["AUC", "LogLoss", "ACC"], "valid_metric": "AUC",
    "eval_args": {"split": {"RS": [0.6, 0.2, 0.2]}, "order": "RO", "group_by": None, "mode": "labeled"},
    "embedding_size": 8, "max_degree": 8, "hop_n_sample": "1,4", "n_eval": 4,
}


def pipeline(make_config, model: str = "KNI", **overrides):
    run = prepare_run(config_dict=make_config(model=model, **(LABELED | overrides)), with_trainer=False)
    return run.config, run.model, (run.train_data, run.valid_data, run.test_data)


def split_pairs(data, user_field="user_id", item_field="item_id", label=None) -> set[tuple[int, int]]:
    inter = data._dataset.inter_feat
    keep = np.ones(len(inter), dtype=bool) if label is None else inter["label"].numpy() == label
    return set(zip(inter[user_field].numpy()[keep].tolist(), inter[item_field].numpy()[keep].tolist()))


def user_item_edges(model) -> set[tuple[int, int]]:
    """(user id, item id) pairs that appear anywhere in the users' neighbour-table rows."""
    edges = set()
    table = model.neighbors.table.numpy()
    for user in range(1, model.n_users):
        node = model.n_base + user - 1
        for nbr in np.unique(table[node]):
            if 0 < nbr < model.n_items:
                edges.add((user, int(nbr)))
    return edges


# ---------------------------------------------------------------- graph and table
@pytest.mark.parametrize("name", ["KNI", "NI"])
def test_graph_holds_only_positive_training_interactions(make_config, name):
    _, model, (train, valid, test) = pipeline(make_config, name, max_degree=64)
    train_pos = split_pairs(train, label=1)
    edges = user_item_edges(model)
    assert edges, "users have no item neighbours"
    # max_degree 64 exceeds every tiny user's degree, so the table covers each user's whole list
    assert edges == train_pos
    held_out = split_pairs(valid) | split_pairs(test) | split_pairs(train, label=0)
    assert not (edges & (held_out - train_pos))
    # and in the other direction: an item's user neighbours liked it in training
    table = model.neighbors.table.numpy()
    for item in range(1, model.n_items):
        users = {int(n) - model.n_base + 1 for n in table[item] if n >= model.n_base}
        assert all((user, item) in train_pos for user in users)


def test_model_is_built_on_the_training_split(make_config):
    _, model, (train, valid, test) = pipeline(make_config, "NI", max_degree=64)
    n_train = len(train._dataset.inter_feat)
    total = n_train + len(valid._dataset.inter_feat) + len(test._dataset.inter_feat)
    assert abs(n_train / total - 0.6) < 0.01  # the 6:2:2 training part, not the whole data
    positives = len(split_pairs(train, label=1))
    assert model.n_edges == 2 * positives  # NI: both directions of each positive training pair


def test_kni_adds_kg_edges_in_both_directions(make_config):
    _, kni, (train, _, _) = pipeline(make_config, "KNI", max_degree=64)
    _, ni, _ = pipeline(make_config, "NI", max_degree=64)
    kg = train._dataset.kg_feat
    triples = set(zip(kg["head_id"].numpy().tolist(), kg["tail_id"].numpy().tolist()))
    triples = {(h, t) for h, t in triples if h != t}
    undirected = triples | {(t, h) for h, t in triples}
    assert kni.n_edges == ni.n_edges + len(undirected)
    assert ni.n_nodes == ni.n_items + ni.n_users - 1 < kni.n_nodes


def test_neighbor_table_shape_padding_and_sampling_rules():
    # node 1: degree 5 >= max_degree 3 -> 3 distinct neighbours; node 2: degree 1 -> repeated;
    # node 3: isolated -> padding node 0; node 0 is the padding row
    src = np.array([1, 1, 1, 1, 1, 2, 4])
    dst = np.array([2, 3, 4, 5, 6, 7, 1])
    stored = build_neighbor_table(src, dst, n_nodes=8, max_degree=3, seed=1234)
    table = stored.table()
    assert table.shape == (8, 3) and table.dtype == np.int32
    # stored as int16 positions into each node's sorted distinct neighbours ([0] when isolated)
    assert stored.slots.dtype == np.int16
    assert stored.ptr.tolist() == [0, 1, 6, 7, 8, 9, 10, 11, 12]
    assert stored.neighbours[1:6].tolist() == [2, 3, 4, 5, 6] and stored.neighbours[7] == 0
    assert np.all(table[0] == 0) and np.all(table[3] == 0)
    assert len(set(table[1])) == 3 and set(table[1]) <= {2, 3, 4, 5, 6}
    assert np.all(table[2] == 7)
    assert np.all(table[4] == 1)
    again = build_neighbor_table(src, dst, n_nodes=8, max_degree=3, seed=1234)
    assert np.array_equal(table, again.table())


def test_reachable_subgraph_keeps_what_neighbourhoods_can_hold():
    # 1, 2 items; 5 user; 3 an entity next to item 1; 4 an entity two hops from item 1
    edges = [(5, 1), (1, 5), (1, 3), (3, 1), (3, 4), (4, 3), (2, 5), (5, 2)]
    src, dst = (np.array(side) for side in zip(*edges))
    kept, new_src, new_dst = reachable_subgraph(src, dst, n_nodes=6, centres=np.array([1, 2, 5]), hops=1)
    assert kept.tolist() == [0, 1, 2, 3, 5]  # entity 4 is never in a one-hop neighbourhood
    followed = {(int(kept[a]), int(kept[b])) for a, b in zip(new_src, new_dst)}
    assert followed == {(5, 1), (1, 5), (1, 3), (2, 5), (5, 2)}  # entity 3's list is never sampled
    kept, new_src, new_dst = reachable_subgraph(src, dst, n_nodes=6, centres=np.array([1, 2, 5]), hops=2)
    assert kept.tolist() == [0, 1, 2, 3, 4, 5]
    assert len(new_src) == len(edges) - 1  # all but 4 -> 3: node 4 is two hops out, a leaf


def test_model_embeds_only_reachable_nodes(make_config):
    _, model, _ = pipeline(make_config, "KNI", max_degree=64)
    assert model.n_nodes == model.embedding.weight.shape[0] == model.n_graph_nodes - 3  # y1..y3 pruned
    centres = torch.cat([torch.arange(1, model.n_items), torch.arange(model.n_base, model.n_nodes)])
    assert model.n_base + model.n_users - 1 == model.n_nodes  # users stay last, contiguous
    reached = torch.unique(model.neighbors.table[centres])
    # every embedded entity is a centre or a centre's neighbour
    assert set(range(model.n_items, model.n_base)) <= set(reached.tolist())


def test_model_table_shape_and_fixed_zero_padding(make_config):
    config, model, (train, valid, _) = pipeline(make_config, "KNI")
    assert tuple(model.neighbors.table.shape) == (model.n_nodes, 8)
    assert torch.all(model.neighbors.table[0] == 0)
    assert "neighbor_table" not in model.state_dict()  # rebuilt from data + seed on load
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train, valid, saved=False, show_progress=False)
    assert torch.all(model.embedding.weight[0] == 0), "padding embedding must stay zero"


def test_sampling_takes_first_k_of_one_column_permutation_per_sampling(make_config):
    _, model, _ = pipeline(make_config, "KNI")
    # table[x, c] = (8 x + c) % 1000: each node lists 8 "neighbours", slot c in column c
    model.neighbors.ptr = torch.arange(model.n_nodes + 1) * 8
    model.neighbors.neighbours = torch.arange(model.n_nodes * 8) % 1000
    model.neighbors.slots = torch.arange(8, dtype=torch.int16).repeat(model.n_nodes, 1)
    nodes = torch.tensor([[1, 2, 3], [1, 2, 3]])
    torch.manual_seed(0)
    sampled = model.neighbors.sample(nodes, 4)
    assert sampled.shape == (2, 3, 4)
    columns = sampled - model.neighbors.table[nodes].long()[..., :1]  # column index of each sample
    for s in range(2):
        assert len(set(columns[s, 0].tolist())) == 4  # no column twice
        assert torch.equal(columns[s, 0], columns[s, 1]) and torch.equal(columns[s, 0], columns[s, 2])


# ------------------------------------------------------------------- attention
@pytest.mark.parametrize("attention", ["ni:1", "ni:2"])
def test_attention_sums_to_one(make_config, attention):
    _, model, _ = pipeline(make_config, "KNI", ni_attention=attention)
    hood_u, hood_v = torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    z = hood_u @ hood_v.transpose(-1, -2)
    alpha = model.attention_weights(hood_u, hood_v, z)
    assert alpha.shape == (3, 5, 5) and torch.all(alpha >= 0)
    torch.testing.assert_close(alpha.sum(dim=(-1, -2)), torch.ones(3))


def test_ni1_equals_hand_computation_on_two_neighbours(make_config):
    _, model, _ = pipeline(make_config, "KNI", embedding_size=2, ni_temperature=2.0)
    model.eval()  # no dropout
    hood_u = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # u, n1, n2
    hood_v = torch.tensor([[[2.0, 0.0], [0.0, 0.0], [1.0, -1.0]]])  # v, m1, m2
    # Z_ij = <N_u[i], N_v[j]>
    z = [[2.0, 0.0, 1.0],
         [0.0, 0.0, -1.0],
         [2.0, 0.0, 0.0]]
    flat = [value for row in z for value in row]
    weights = [np.exp(value / 2.0) for value in flat]
    expected = sum(w * value for w, value in zip(weights, flat)) / sum(weights)
    got = model.interaction_logits(hood_u, hood_v)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_ni2_uses_tanh_of_separable_scores(make_config):
    _, model, _ = pipeline(make_config, "KNI", embedding_size=2, ni_attention="ni:2", ni_temperature=1.0)
    with torch.no_grad():
        model.w1.copy_(torch.tensor([[1.0], [0.0]]))
        model.w2.copy_(torch.tensor([[0.0], [1.0]]))
    hood_u = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    hood_v = torch.tensor([[[0.0, 2.0], [1.0, 0.0]]])
    f1, f2 = np.array([1.0, 0.0]), np.array([2.0, 0.0])
    logits = np.tanh(f1[:, None] + f2[None, :])
    alpha = np.exp(logits) / np.exp(logits).sum()
    z = hood_u[0] @ hood_v[0].T
    got = model.attention_weights(hood_u, hood_v, z.unsqueeze(0))[0]
    np.testing.assert_allclose(got.detach().numpy(), alpha, rtol=1e-6)


# --------------------------------------------------------- prediction averaging
def test_n_eval_averaging_reduces_variance(make_config):
    config, model, (train, valid, _) = pipeline(make_config, "KNI")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    config["epochs"] = 3
    trainer.fit(train, valid, saved=False, show_progress=False)
    model.eval()
    batch = next(iter(valid))[0]

    def spread(n_eval: int) -> float:
        model.n_eval = n_eval
        with torch.no_grad():
            runs = torch.stack([model.predict(batch) for _ in range(30)])
        assert torch.all((runs >= 0) & (runs <= 1))
        return runs.var(dim=0).mean().item()

    single, averaged = spread(1), spread(40)
    assert averaged < single / 5, (single, averaged)


def test_predict_is_the_mean_of_per_sampling_probabilities(make_config):
    _, model, (_, valid, _) = pipeline(make_config, "KNI", n_eval=6)
    model.eval()
    batch = next(iter(valid))[0]
    with torch.no_grad():
        torch.manual_seed(3)
        averaged = model.predict(batch)
        torch.manual_seed(3)
        per_sampling = torch.sigmoid(model.forward(batch["user_id"], batch["item_id"], 6))
    assert per_sampling.shape == (6, len(batch))
    torch.testing.assert_close(averaged, per_sampling.mean(dim=0))


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_dropout_mask_keeps_each_element_with_probability_1_minus_p(make_config, p):
    _, model, _ = pipeline(make_config, "KNI", dropout_prob=p)
    torch.manual_seed(0)
    mask = model.dropout_mask(torch.Size([64, 5, 128]), torch.device("cpu"), torch.float32)
    scale = 1 / (1 - p)
    assert mask.shape == (64, 5, 128)
    assert mask.unique().tolist() == pytest.approx([0.0, scale])
    kept = (mask > 0).float()
    assert abs(kept.mean().item() - (1 - p)) < 0.01  # 40,960 draws: sd 0.0025
    # no structure across positions: neighbouring elements are independent
    assert abs((kept[..., 1:] * kept[..., :-1]).mean().item() - (1 - p) ** 2) < 0.01
    model.train()
    x = torch.ones(64, 5, 128)
    assert abs(model.dropout(x).mean().item() - 1.0) < 0.03
    model.eval()
    assert torch.equal(model.dropout(x), x)


def _predict_with_budget(model, batch, budget: int, seed: int = 5) -> torch.Tensor:
    model.gram_pair_budget = budget
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.predict(batch)


@pytest.mark.parametrize("attention", ["ni:1", "ni:2"])
def test_gram_evaluation_equals_the_neighbourhood_definition(make_config, attention):
    _, model, (_, valid, _) = pipeline(make_config, "KNI", ni_attention=attention, n_eval=7, max_degree=16)
    model.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        model.embedding.weight.normal_(0, 0.7)  # dot products with a spread of a few units
        model.embedding.weight[0].zero_()
    batch = next(iter(valid))[0]
    sizes = model.neighbors.list_sizes(batch["item_id"])
    assert sizes.min() < sizes.max()  # lists of several lengths share the padded chunks
    gram = _predict_with_budget(model, batch, budget=10 ** 9)
    direct = _predict_with_budget(model, batch, budget=0)
    assert gram.std() > 0.05
    torch.testing.assert_close(gram, direct, rtol=1e-5, atol=1e-6)


def test_gram_evaluation_handles_isolated_nodes_and_underflow(make_config):
    _, model, (_, valid, _) = pipeline(make_config, "KNI", ni_attention="ni:1")
    model.eval()
    batch = next(iter(valid))[0]
    # an isolated node lists the padding node, whose embedding is zero
    isolated = (model.neighbors.ptr[1:] - model.neighbors.ptr[:-1] == 1) & (
        model.neighbors.neighbours[model.neighbors.ptr[:-1]] == 0)
    assert isolated[1:model.n_items].any() or isolated[model.n_base:].any()
    with torch.no_grad():
        model.embedding.weight.normal_(0, 3.0)
        model.embedding.weight[0].zero_()
    # a temperature so low that exp() underflows for every sampled pair of some rows: those
    # rows fall back to the definition instead of returning 0/0
    model.temperature = 1e-4
    gram = _predict_with_budget(model, batch, budget=10 ** 9)
    direct = _predict_with_budget(model, batch, budget=0)
    assert torch.isfinite(gram).all()
    torch.testing.assert_close(gram, direct, rtol=1e-5, atol=1e-6)


def test_evaluation_columns_are_shared_within_a_sampling_group(make_config, monkeypatch):
    _, model, _ = pipeline(make_config, "KNI", n_eval=3)
    monkeypatch.setattr(kni_eval, "SAMPLING_GROUP_ROWS", 2)
    model.neighbors.slots = torch.arange(8, dtype=torch.int16).repeat(model.n_nodes, 1)  # slot = column
    torch.manual_seed(0)
    slots = kni_eval.sample_eval_slots(model, torch.tensor([1, 2, 3, 4, 5]))
    assert slots.shape == (5, 3, 4)
    assert all(len(set(row.tolist())) == 4 for row in slots.view(-1, 4))  # no column twice
    assert torch.equal(slots[0], slots[1]) and torch.equal(slots[2], slots[3])
    assert not torch.equal(slots[1], slots[2])


@pytest.mark.parametrize("hops", ["1,4", "1,3,2"])
def test_full_sort_predict_scores_every_item(make_config, hops):
    _, model, (_, _, test) = pipeline(make_config, "KNI", hop_n_sample=hops, ni_attention="ni:2")
    model.eval()
    users = torch.tensor([1, 2, 3])
    from recbole.data.interaction import Interaction

    with torch.no_grad():
        scores = model.full_sort_predict(Interaction({"user_id": users}))
    assert scores.shape == (3 * model.n_items,)
    assert torch.all((scores >= 0) & (scores <= 1))


def test_two_hop_neighbourhood_shape(make_config):
    _, model, _ = pipeline(make_config, "KNI", hop_n_sample="1,3,2")
    nodes = torch.tensor([[1, 2], [3, 4]])
    assert model.neighborhood(nodes).shape == (2, 2, 4, 8)
    assert model.agg_bias.shape == (8,)


# -------------------------------------------------------------------------- ACC
def test_accuracy_on_a_hand_example():
    preds = np.array([0.2, 0.6, 0.7, 0.4, 0.55])
    trues = np.array([0, 1, 0, 0, 1])
    # thresholded at 0.5: 0 1 1 0 1 -> correct: yes yes no yes yes
    assert accuracy(preds, trues, 0.5) == pytest.approx(4 / 5)
    # at 0.58 the fifth row flips to 0 and becomes wrong
    assert accuracy(preds, trues, 0.58) == pytest.approx(3 / 5)


def test_acc_metric_reads_threshold_and_rejects_unresolved_auto():
    class FakeConfig(dict):
        def __getitem__(self, key):
            return self.get(key)

    metric = ACC(FakeConfig(metric_decimal_place=4, acc_threshold=0.58))
    assert metric.metric_info(np.array([0.2, 0.6, 0.7, 0.4, 0.55]), np.array([0, 1, 0, 0, 1])) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="acc_threshold"):
        ACC(FakeConfig(metric_decimal_place=4, acc_threshold="auto"))
    with pytest.raises(ValueError, match="acc_threshold"):
        ACC(FakeConfig(metric_decimal_place=4, acc_threshold=1.5))


def test_auto_threshold_is_the_mean_training_label(make_config):
    config, _, (train, _, _) = pipeline(make_config, "KNI")
    expected = train._dataset.inter_feat["label"].float().mean().item()
    assert config["acc_threshold"] == pytest.approx(expected)
    assert 0 < expected < 1


# -------------------------------------------------------------- protocol options
def test_select_on_test_is_recorded_and_swaps_the_selection_split(make_config):
    config, _, (_, valid, test) = pipeline(make_config, "KNI", select_on_test=True)
    assert valid is test
    result = run_recbole_ext(config_dict=make_config(model="KNI", **LABELED))
    assert result["model_selection"] == "validation split"
    assert result["graph"]["kg"] is True
    on_test = run_recbole_ext(config_dict=make_config(model="KNI", select_on_test=True, **LABELED))
    assert on_test["model_selection"].startswith("test split")
    # (selection and test scores differ only by the random neighbour samplings of each pass)


def test_pairwise_model_on_labeled_dataset_trains_on_positives_only(make_config):
    overrides = dict(LABELED, labeled_protocol=True,
                     train_neg_sample_args={"distribution": "uniform", "sample_num": 1,
                                            "alpha": 1.0, "dynamic": False, "candidate_num": 0})
    run = prepare_run(config_dict=make_config(model="KGCN", **overrides), with_trainer=False)
    train, valid = run.train_data, run.valid_data
    assert set(train._dataset.inter_feat["label"].numpy().tolist()) == {1.0}
    assert set(valid._dataset.inter_feat["label"].numpy().tolist()) == {0.0, 1.0}


# ----------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", ["4", "2,4", "1,0", "1,4,4,4", "1,a", [1], True])
def test_bad_hop_n_sample_is_rejected(bad):
    with pytest.raises(ValueError, match="hop_n_sample"):
        parse_hop_n_sample(bad)


def test_parse_hop_n_sample():
    assert parse_hop_n_sample("1,4") == [4]
    assert parse_hop_n_sample(" 1, 8 ,4") == [8, 4]
    assert parse_hop_n_sample([1, 32]) == [32]


@pytest.mark.parametrize("overrides, match", [
    ({"hop_n_sample": "1,16"}, "max_degree"),
    ({"ni_attention": "ni:3"}, "ni_attention"),
    ({"ni_temperature": 0}, "ni_temperature"),
    ({"n_eval": 0}, "n_eval"),
    ({"dropout_prob": 1.0}, "dropout_prob"),
])
def test_bad_parameters_are_rejected(make_config, overrides, match):
    with pytest.raises(ValueError, match=match):
        pipeline(make_config, "KNI", **overrides)


def test_labels_outside_unit_interval_are_rejected(make_config):
    with pytest.raises(ValueError, match="must lie in"):
        pipeline(make_config, "KNI", LABEL_FIELD="rating",
                 load_col={"inter": ["user_id", "item_id", "rating"], "kg": ["head_id", "relation_id", "tail_id"],
                           "link": ["item_id", "entity_id"]}, metrics=["AUC"])


def test_labels_with_negative_sampling_are_rejected(make_config):
    with pytest.raises(ValueError, match="train_neg_sample_args"):
        pipeline(make_config, "KNI", train_neg_sample_args={"distribution": "uniform", "sample_num": 1,
                                                             "alpha": 1.0, "dynamic": False, "candidate_num": 0})


def test_l2_as_adam_weight_decay_matches_l2_in_the_loss(make_config):
    import copy

    from recbole.utils import KGDataLoaderState

    config, model, (train, _, _) = pipeline(make_config, "KNI", ni_attention="ni:2", l2_reg=0.05)
    reference = copy.deepcopy(model)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    assert model.l2_in_loss is False and reference.l2_in_loss is True
    assert [g["weight_decay"] for g in trainer.optimizer.param_groups] == [0.05, 0.0]
    train.set_mode(KGDataLoaderState.RS)
    batch = next(iter(train))
    ref_optimizer = torch.optim.Adam(reference.parameters(), lr=config["learning_rate"])
    for net, optimizer in ((model, trainer.optimizer), (reference, ref_optimizer)):
        torch.manual_seed(5)
        optimizer.zero_grad()
        net.calculate_loss(batch).backward()
        optimizer.step()
    for (name, got), expected in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(got, expected, msg=name)


def test_ranking_protocol_with_sampled_negatives(make_config):
    """Without a label column KNI trains on sampled negatives and ranks all items (full sort)."""
    config = make_config(
        model="KNI", embedding_size=8, max_degree=8, hop_n_sample="1,4", n_eval=2,
        load_col={"inter": ["user_id", "item_id"], "kg": ["head_id", "relation_id", "tail_id"],
                  "link": ["item_id", "entity_id"]},
        train_neg_sample_args={"distribution": "uniform", "sample_num": 1, "alpha": 1.0,
                               "dynamic": False, "candidate_num": 0},
        eval_args={"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"},
        metrics=["Recall", "NDCG"], topk=[5], valid_metric="NDCG@5")
    result = run_recbole_ext(config_dict=config)
    assert set(result["test_result"]) == {"recall@5", "ndcg@5"}
    assert all(0 <= v <= 1 for v in result["test_result"].values())


def test_labeled_interaction_matrix_holds_positive_rows_only(make_config):
    _, _, (train, _, _) = pipeline(make_config)
    inter = train._dataset.inter_feat
    positive = inter["label"].numpy() > 0.5
    assert 0 < positive.sum() < len(positive)
    matrix = train._dataset.inter_matrix(form="coo")
    assert set(zip(matrix.row.tolist(), matrix.col.tolist())) == set(
        zip(inter["user_id"].numpy()[positive].tolist(), inter["item_id"].numpy()[positive].tolist()))
    labels = train._dataset.inter_matrix(form="coo", value_field="label")
    assert labels.nnz == len(set(zip(inter["user_id"].tolist(), inter["item_id"].tolist())))


def test_ripplenet_memories_are_positive_and_cold_users_are_padded(make_config):
    _, model, (train, valid, _) = pipeline(make_config, model="RippleNet", n_memory=4, labeled_protocol=True,
                                           train_rec_step=1, train_kg_step=0)
    inter = train._dataset.inter_feat
    positive_users = set(inter["user_id"].numpy()[inter["label"].numpy() > 0.5].tolist())
    assert set(model.user_dict) == positive_users
    cold = sorted(set(range(1, model.n_users)) - positive_users)
    assert cold, "the fixture should have a user without a positive training row"
    for hop in model.ripple_set[cold[0]]:
        assert all(torch.equal(part, torch.zeros(4, dtype=torch.long)) for part in hop)
    # RecBole's own RippleNet raised IndexError here
    pairs = Interaction({"user_id": torch.tensor(cold), "item_id": torch.ones(len(cold), dtype=torch.long)})
    with torch.no_grad():
        model.eval()
        assert torch.isfinite(model.predict(pairs)).all()


def test_drop_cold_users_keeps_only_users_with_a_positive_training_row(make_config):
    def users(data, positive_only=False):
        inter = data._dataset.inter_feat
        keep = inter["label"].numpy() > 0.5 if positive_only else np.ones(len(inter), dtype=bool)
        return set(inter["user_id"].numpy()[keep].tolist())

    _, _, (train, valid, test) = pipeline(make_config)
    warm = users(train, positive_only=True)
    assert users(valid) - warm or users(test) - warm, "the fixture should have cold validation/test users"
    _, _, (d_train, d_valid, d_test) = pipeline(make_config, drop_cold_users=True)
    assert users(d_train, positive_only=True) == warm
    for full, dropped in ((train, d_train), (valid, d_valid), (test, d_test)):
        assert users(dropped) == users(full) & warm
        assert split_pairs(dropped) == {(u, i) for u, i in split_pairs(full) if u in warm}


def test_ripplenet_best_checkpoint_reloads_for_the_test(make_config):
    result = run_recbole_ext(config_dict=make_config(model="RippleNet", **(LABELED | {
        "labeled_protocol": True, "n_memory": 4, "train_rec_step": 1, "train_kg_step": 0, "epochs": 1})))
    assert 0 <= result["test_result"]["auc"] <= 1
