"""The buffered-gradient embedding gives exactly the dense embedding gradient."""

import copy

import pytest
import torch
from torch import nn

from recbole_ext.model.sparse_grad import BufferedGradEmbedding


def _tables(seed: int = 0) -> tuple[nn.Embedding, BufferedGradEmbedding]:
    torch.manual_seed(seed)
    dense = nn.Embedding(50, 4, padding_idx=0)
    fast = BufferedGradEmbedding(50, 4, padding_idx=0)
    fast.weight.data.copy_(dense.weight.data)
    return dense, fast


def _loss(table: nn.Embedding, ids_a: torch.Tensor, ids_b: torch.Tensor) -> torch.Tensor:
    # two lookups of one table, with repeated rows and the padding row, as KNI does
    return (table(ids_a) * 2).pow(2).sum() + table(ids_b).sum()


STEPS = [(torch.tensor([[1, 2, 2], [0, 7, 9]]), torch.tensor([3, 3, 0])),
         (torch.tensor([[4, 5, 6], [1, 1, 1]]), torch.tensor([8, 0, 2])),  # rows 7, 9 go stale
         (torch.tensor([[0, 0, 0], [0, 0, 0]]), torch.tensor([0, 0, 0]))]  # only padding


@pytest.mark.parametrize("set_to_none", [True, False])
def test_same_gradients_and_updates_as_dense_backward(set_to_none):
    dense, fast = _tables()
    opt_dense = torch.optim.Adam(dense.parameters(), lr=0.1, weight_decay=0.01)
    opt_fast = torch.optim.Adam(fast.parameters(), lr=0.1, weight_decay=0.01)
    for ids_a, ids_b in STEPS:
        for table, opt in ((dense, opt_dense), (fast, opt_fast)):
            opt.zero_grad(set_to_none=set_to_none)
            _loss(table, ids_a, ids_b).backward()
        assert fast.weight.grad.layout == torch.strided
        torch.testing.assert_close(fast.weight.grad, dense.weight.grad, rtol=0, atol=0)
        opt_dense.step()
        opt_fast.step()
        torch.testing.assert_close(fast.weight, dense.weight)
    assert fast.weight.grad[0].abs().sum() == 0  # the padding row never receives a gradient


def test_a_deep_copy_has_its_own_hook_and_buffer():
    dense, fast = _tables()
    _loss(fast, *STEPS[0]).backward()
    copied = copy.deepcopy(fast)
    copied.weight.grad = None
    _loss(copied, *STEPS[1]).backward()
    _loss(dense, *STEPS[1]).backward()
    assert copied.weight.grad.layout == torch.strided
    torch.testing.assert_close(copied.weight.grad, dense.weight.grad, rtol=0, atol=0)
    assert copied.weight.grad.data_ptr() != fast.weight.grad.data_ptr()


@pytest.mark.parametrize("set_to_none", [True, False])
def test_same_gradients_with_another_gradient_of_the_weight(set_to_none):
    # an l2 term over the whole table reaches the weight through autograd, beside the lookups
    dense, fast = _tables()
    for ids_a, ids_b in STEPS + STEPS:
        for table in (dense, fast):
            if set_to_none:
                table.weight.grad = None
            elif table.weight.grad is not None:
                table.weight.grad.zero_()
            (_loss(table, ids_a, ids_b) + 0.01 * table.weight.pow(2).sum()).backward()
        torch.testing.assert_close(fast.weight.grad, dense.weight.grad)
        with torch.no_grad():  # move the weights so that stale gradient rows would show
            for table in (dense, fast):
                table.weight.add_(0.1)


def test_lookups_without_grad_leave_the_gradient_alone():
    _, fast = _tables()
    with torch.no_grad():
        out = fast(torch.tensor([1, 2]))
    assert not out.requires_grad and fast.weight.grad is None
