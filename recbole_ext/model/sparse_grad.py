"""Dense gradients of large embedding tables without a fresh table-sized allocation per step.

A model that looks up a few thousand rows of a large embedding table but regularises or
optimises the *whole* table densely (KNI's reference: Adam plus l2 over every row) needs the
dense gradient. PyTorch's CPU embedding backward builds it in a newly allocated, zero-filled
table-sized tensor for every lookup; for KNI's 95,742 x 128 Book-Crossing table those
allocations (page faults plus memset, three per lookup) took 0.11 s of a 0.13 s training step
on one thread. :class:`BufferedGradEmbedding` instead produces a sparse gradient and scatters
it into one persistent dense buffer, clearing only the rows written the step before. The
optimiser sees exactly the same dense gradient.
"""

from __future__ import annotations

import torch
from torch import nn


class BufferedGradEmbedding(nn.Embedding):
    """``nn.Embedding`` whose weight gradient is dense but built in a reused buffer.

    Same arguments as ``nn.Embedding`` (``sparse`` is set internally). Works with
    ``zero_grad(set_to_none=True)`` (the buffer is reused) and ``set_to_none=False`` (the
    buffer is zeroed in place and autograd adds the sparse gradient to it). Not for
    ``DistributedDataParallel``, which reduces gradients in its own hooks: use a plain
    ``nn.Embedding`` there.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs["sparse"] = True
        super().__init__(*args, **kwargs)
        self._grad_buffer: torch.Tensor | None = None
        self._grad_rows: torch.Tensor | None = None
        self._hooked_weight_id: int | None = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # (re-)attach the hook to the current weight: a deep copy or a replaced weight has none
        if self._hooked_weight_id != id(self.weight):
            self.weight.register_post_accumulate_grad_hook(self._densify)
            self._hooked_weight_id = id(self.weight)
            self._grad_buffer = self._grad_rows = None
        return super().forward(ids)

    def _densify(self, weight: torch.Tensor) -> None:
        grad = weight.grad
        if grad is None or not grad.is_sparse:
            return  # already dense (the buffer after zero_grad(set_to_none=False), or an l2 term)
        buffer = self._grad_buffer
        if buffer is None or buffer.shape != weight.shape or buffer.device != weight.device:
            buffer = self._grad_buffer = torch.zeros_like(weight)
        elif self._grad_rows is not None:
            buffer.index_fill_(0, self._grad_rows, 0.0)
        rows = grad._indices()[0]  # duplicates are summed by index_add_; no coalesce needed
        buffer.index_add_(0, rows, grad._values())
        self._grad_rows = rows
        weight.grad = buffer
