"""RNNCCE unit tests: weight tying, the KL term by hand, the target-gradient flag, masking."""

from __future__ import annotations

import math

import pytest
import torch

from recbole_ext.config import PROPERTIES_DIR, load_yaml_file
from recbole_ext.model.sequential_recommender.rnncce import RNNCCE

N_ITEMS = 4  # padding id 0 + three real items


class _Items:
    def num(self, field: str) -> int:
        return N_ITEMS


def make_model(**overrides) -> RNNCCE:
    config = load_yaml_file(PROPERTIES_DIR / "model" / "RNNCCE.yaml")
    config.update({"USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
                   "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_",
                   "device": torch.device("cpu"), "embedding_size": 2, "hidden_size": 2})
    config.update(overrides)
    torch.manual_seed(0)
    return RNNCCE(config, _Items())


def batch(seqs: list[list[int]], targets: list[int]) -> dict:
    width = max(map(len, seqs))
    return {"item_id_list": torch.tensor([s + [0] * (width - len(s)) for s in seqs]),
            "item_length": torch.tensor([len(s) for s in seqs]),
            "item_id": torch.tensor(targets)}


def log_softmax(xs: list[float]) -> list[float]:
    norm = math.log(sum(math.exp(x) for x in xs))
    return [x - norm for x in xs]


def test_tied_output_is_the_item_embedding_and_untied_is_not():
    tied = make_model(output="tied")
    assert tied.output_weight() is tied.item_embedding.weight
    assert tied.output_weight().data_ptr() == tied.item_embedding.weight.data_ptr()
    assert not any(p.shape == (N_ITEMS, 2) and p is not tied.item_embedding.weight
                   for p in tied.parameters())
    untied = make_model(output="untied", tying_loss="none")
    assert untied.output_weight().shape == (N_ITEMS, 2)
    assert untied.output_weight().data_ptr() != untied.item_embedding.weight.data_ptr()


def test_tied_cross_entropy_trains_embeddings_of_items_outside_the_input():
    # Item 3 is neither input nor target: only a tied output gives its embedding a gradient.
    for output, expect_grad in (("tied", True), ("untied", False)):
        model = make_model(output=output, tying_loss="none")
        model.calculate_loss(batch([[1, 2]], [1])).backward()
        grad = model.item_embedding.weight.grad[3]
        assert bool(grad.abs().sum() > 0) is expect_grad, output


def test_projection_only_when_hidden_and_embedding_sizes_differ():
    assert isinstance(make_model(output="tied").projection, torch.nn.Identity)
    model = make_model(output="tied", hidden_size=5)
    assert isinstance(model.projection, torch.nn.Linear)
    assert model.full_sort_predict(batch([[1, 2], [3]], [1, 2])).shape == (2, N_ITEMS)


def set_embeddings(model: RNNCCE) -> None:
    with torch.no_grad():
        model.item_embedding.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model.output_bias.copy_(torch.tensor([0.0, 0.1, -0.2, 0.3]))


def hand_kl(z: list[float], target: int, tau: float) -> float:
    """KL(softmax(E e_y / tau) || softmax(E z / tau)) over items 1..3 of set_embeddings."""
    table = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    e_y = table[target - 1]
    log_p = log_softmax([(e_y[0] * e[0] + e_y[1] * e[1]) / tau for e in table])
    log_q = log_softmax([(z[0] * e[0] + z[1] * e[1]) / tau for e in table])
    return sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q))


def test_kl_term_matches_a_hand_computation_on_three_items():
    model = make_model(tying_temperature=2.0)
    set_embeddings(model)
    z = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    got = model.tying_kl(z, torch.tensor([2, 3]))
    expected = (hand_kl([0.5, -1.0], 2, 2.0) + hand_kl([2.0, 0.0], 3, 2.0)) / 2
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert expected > 0.05  # a non-trivial example


def test_loss_is_cross_entropy_plus_gamma_tau_kl():
    model = make_model(tying_temperature=2.0, tying_gamma=0.25)
    set_embeddings(model)
    z = [0.5, -1.0]
    model.forward = lambda item_seq, item_seq_len: torch.tensor([z])
    loss = model.calculate_loss(batch([[1]], [2]))
    bias = [0.0, 0.1, -0.2, 0.3]
    table = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    logits = [z[0] * e[0] + z[1] * e[1] + b for e, b in zip(table, bias)]
    cross_entropy = -log_softmax(logits)[2]
    assert loss.item() == pytest.approx(cross_entropy + 0.25 * 2.0 * hand_kl(z, 2, 2.0), rel=1e-6)


@pytest.mark.parametrize("target_grad", [False, True])
def test_target_gradient_flag(target_grad):
    model = make_model(tying_target_grad=target_grad)
    set_embeddings(model)
    # With z = 0 the predicted distribution is uniform whatever E is, so E gets a gradient
    # from the KL term only through the target softmax(E e_y / tau).
    model.tying_kl(torch.zeros(1, 2), torch.tensor([1])).backward()
    grad = model.item_embedding.weight.grad
    assert bool(grad.abs().sum() > 0) is target_grad

    # With z != 0, the detached variant equals autograd through a hand-detached target.
    model.zero_grad()
    z = torch.tensor([[0.3, -0.7]])
    model.tying_kl(z, torch.tensor([1])).backward()
    table = model.item_embedding.weight[1:]
    target_table = table if target_grad else table.detach()
    log_p = torch.log_softmax(target_table[0] @ target_table.t() / 10.0, dim=-1)
    log_q = torch.log_softmax(z[0] @ table.t() / 10.0, dim=-1)
    reference = (log_p.exp() * (log_p - log_q)).sum()
    expected_grad, = torch.autograd.grad(reference, model.item_embedding.weight)
    torch.testing.assert_close(model.item_embedding.weight.grad, expected_grad)


def test_predict_agrees_with_full_sort_predict():
    for output in ("tied", "untied"):
        model = make_model(output=output, tying_loss="kl" if output == "tied" else "none",
                           hidden_size=3).eval()
        inter = batch([[1, 2], [3]], [3, 1])
        full = model.full_sort_predict(inter)
        single = model.predict(inter)
        torch.testing.assert_close(single, full[torch.arange(2), inter["item_id"]])


def test_exclude_viewed_masks_the_input_items():
    model = make_model(exclude_viewed=True).eval()
    scores = model.full_sort_predict(batch([[1, 3], [2]], [2, 1]))
    assert torch.isinf(scores[0, [1, 3]]).all() and torch.isfinite(scores[0, 2])
    assert torch.isinf(scores[1, 2]) and torch.isfinite(scores[1, [1, 3]]).all()


def test_lstm_and_gru_and_stacked_layers_run():
    for cell in ("gru", "lstm"):
        model = make_model(cell=cell, num_layers=2, dropout_prob=0.2)
        loss = model.calculate_loss(batch([[1, 2, 3], [2]], [1, 3]))
        assert torch.isfinite(loss)


@pytest.mark.parametrize("key, value, message", [
    ("cell", "rnn", r"The 'cell' parameter of RNNCCE must be one of \['gru', 'lstm'\]. Got 'rnn'"),
    ("output", "shared", r"'output' parameter of RNNCCE must be one of \['tied', 'untied'\]"),
    ("hidden_size", 0, r"'hidden_size' parameter of RNNCCE must be a positive int. Got 0"),
    ("dropout_prob", 1.0, r"'dropout_prob' parameter of RNNCCE must be a float in \[0, 1\)"),
    ("tying_temperature", 0.0, r"'tying_temperature' parameter of RNNCCE must be a positive float"),
])
def test_invalid_parameters_are_rejected(key, value, message):
    with pytest.raises(ValueError, match=message):
        make_model(**{key: value})


def test_kl_term_needs_a_tied_output():
    with pytest.raises(ValueError, match="RNNCCE: tying_loss 'kl' needs output: tied"):
        make_model(output="untied", tying_loss="kl")


@pytest.mark.parametrize("output, loss", [("tied", "kl"), ("untied", "none")])
def test_tying_loss_follows_the_output_unless_set(output, loss):
    assert make_model(output=output).tying_loss == loss
    assert make_model(output=output, tying_loss="none").tying_loss == "none"
