"""The NRP family's fast path computes the same model as the reference path.

``fast_path: False`` is the straightforward computation (every rating's copy of a user or
item encoded, dense reconstruction rows, PyTorch's ``EmbeddingBag`` backward). Both paths
start from the same weights, see the same batches and masking noise, and must give the
same losses, parameters and predictions up to float rounding. The trainer's RMSprop is
checked against ``torch.optim.RMSprop``.
"""

from __future__ import annotations

import pytest
import scipy.sparse as sp
import torch
from recbole.utils import init_seed

from recbole_ext.model.general_recommender._rating_encoders import SparseRatingRows, observed_mse
from recbole_ext.registry import get_trainer
from recbole_ext.trainer.rating import RMSprop
from tests.test_nrp import pipeline

STEPS = 6
# batches of 64 ratings from 40 users and 60 items repeat most ids and side values
CASES = {
    "NRP": {"learner": "sgd", "learning_rate": 0.02},  # 0.05 amplifies float32 rounding past 1e-4 in 6 steps
    "NRPaSDAE": {"learner": "rmsprop", "learning_rate": 1e-3, "weight_decay": 0.0},
    "NRPDHA": {"learner": "rmsprop", "learning_rate": 1e-3, "weight_decay": 1e-4},
    "ASDAE": {"learner": "rmsprop", "learning_rate": 1e-3, "weight_decay": 1e-5},
    "DHA": {"learner": "rmsprop", "learning_rate": 1e-3, "weight_decay": 1e-5},
}


def trained(make_config, model_name: str, fast: bool, **settings):
    """Model and per-step losses after ``STEPS`` training steps on fixed batches."""
    config, _, model, (train, _, test) = pipeline(make_config, model_name, fast_path=fast,
                                                  train_batch_size=64, **settings)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    batches = [batch for _, batch in zip(range(STEPS), train)]
    losses = []
    init_seed(config["seed"], config["reproducibility"])  # same masking noise on both paths
    for batch in batches:
        losses.append(trainer._train_epoch([batch], 0))
    return model, losses, next(iter(test))[0]  # labelled evaluation batches are (interaction, ...)


@pytest.mark.parametrize("model_name", list(CASES))
def test_fast_path_trains_the_same_model_as_the_reference(make_config, model_name):
    fast, fast_losses, test_batch = trained(make_config, model_name, True, **CASES[model_name])
    reference, reference_losses, _ = trained(make_config, model_name, False, **CASES[model_name])
    assert not all(a == b for a, b in zip(fast_losses, fast_losses[1:]))  # it trains
    torch.testing.assert_close(torch.tensor(fast_losses), torch.tensor(reference_losses), rtol=1e-5, atol=1e-6)
    reference_params = dict(reference.named_parameters())
    for name, param in fast.named_parameters():
        torch.testing.assert_close(param, reference_params[name], rtol=1e-4, atol=1e-6, msg=name)
    fast.eval()
    reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast.predict(test_batch), reference.predict(test_batch), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast.full_sort_predict(test_batch), reference.full_sort_predict(test_batch),
                                   rtol=1e-5, atol=1e-5)


def test_nrp_with_rmsprop_and_averaging_matches_the_reference(make_config):
    settings = {"learner": "rmsprop", "learning_rate": 1e-3, "weight_averaging": 0.9}
    fast, fast_losses, _ = trained(make_config, "NRP", True, **settings)
    reference, reference_losses, _ = trained(make_config, "NRP", False, **settings)
    torch.testing.assert_close(torch.tensor(fast_losses), torch.tensor(reference_losses), rtol=1e-5, atol=1e-6)
    for (name, a), (_, b) in zip(fast.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_sampled_reconstruction_equals_the_dense_one_with_gradients():
    ratings = sp.random(7, 30, density=0.2, format="csr", random_state=3, dtype="float32")
    ratings.data = 1.0 + (ratings.data * 4).round()
    target = SparseRatingRows(ratings).gather(torch.tensor([4, 0, 4, 6, 2]))
    output = torch.nn.Linear(5, 30)
    hidden = torch.randn(5, 5, requires_grad=True)
    grads = []
    for sampled in (True, False):
        loss = observed_mse(hidden, output, target, sampled=sampled)
        grads.append([loss.detach(), *torch.autograd.grad(loss, [hidden, output.weight, output.bias])])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want)


def _rmsprop_pair(weight_decay: float, rows_used):
    """Our RMSprop and PyTorch's on copies of the same embedding table, fed the same gradients."""
    torch.manual_seed(0)
    tables = [torch.nn.Embedding(50, 8) for _ in range(2)]
    tables[1].load_state_dict(tables[0].state_dict())
    options = {"lr": 0.01, "alpha": 0.9, "eps": 1e-7, "weight_decay": weight_decay}
    optimizers = [RMSprop(tables[0].parameters(), **options), torch.optim.RMSprop(tables[1].parameters(), **options)]
    for ids in rows_used:
        ids = torch.tensor(ids)
        target = torch.randn(len(ids), 8)
        for table, optimizer in zip(tables, optimizers):
            optimizer.zero_grad()
            ((table(ids) - target) ** 2).sum().backward()
            optimizer.step()
    return tables, optimizers


def test_rmsprop_slices_give_pytorchs_floats(monkeypatch):
    monkeypatch.setattr(RMSprop, "CHUNK", 64)  # 400 weights: several slices and a partial one
    dense_use = [list(range(0, 50, 2)) + list(range(1, 50, 3))] * 4
    tables, optimizers = _rmsprop_pair(1e-3, dense_use)
    assert torch.equal(tables[0].weight, tables[1].weight)
    assert torch.equal(optimizers[0].state_dict()["state"][0]["square_avg"],
                       optimizers[1].state_dict()["state"][0]["square_avg"])


def test_rmsprop_skips_rows_without_gradient_and_keeps_the_dense_result():
    # rows 0-9 every step, 40-44 twice with gaps, the rest never: a gradient in at most 15 of 50 rows
    use = [list(range(10)) + [40, 41], list(range(10)), list(range(10)) + [41, 44], list(range(10))] * 3
    tables, optimizers = _rmsprop_pair(0.0, use)
    assert optimizers[0]._row_step  # the row-wise update was used
    torch.testing.assert_close(tables[0].weight, tables[1].weight, rtol=1e-6, atol=1e-7)
    ours, theirs = optimizers[0].state_dict(), optimizers[1].state_dict()  # brings every row up to date
    torch.testing.assert_close(ours["state"][0]["square_avg"], theirs["state"][0]["square_avg"], rtol=1e-5, atol=0)
    assert int(ours["state"][0]["step"]) == int(theirs["state"][0]["step"]) == len(use)
