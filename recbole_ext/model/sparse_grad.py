"""Dense gradients of large embedding tables without a fresh table-sized allocation per step.

A model that looks up a few thousand rows of a large embedding table but regularises or
optimises the *whole* table densely (KNI's reference: Adam plus l2 over every row) needs the
dense gradient. PyTorch's CPU embedding backward builds it in a newly allocated, zero-filled
table-sized tensor for every lookup, and for a table as large as KNI's Book-Crossing one
those allocations (page faults plus memset, three per lookup) cost most of a CPU training step
(benchmarks/README.md, KNI timing). :class:`BufferedGradEmbedding` instead adds each lookup's row gradients straight
into one persistent dense buffer, clearing only the rows written the step before. The
optimiser sees exactly the same dense gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _BufferedLookup(torch.autograd.Function):
    """``weight[ids]`` whose backward adds the row gradients into ``table``'s buffer."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, ids: torch.Tensor, table: "BufferedGradEmbedding") -> torch.Tensor:
        ctx.table = table
        ctx.save_for_backward(ids)
        return F.embedding(ids, weight, table.padding_idx)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        ids, = ctx.saved_tensors
        ctx.table.accumulate_rows(ids.reshape(-1), grad.reshape(-1, grad.shape[-1]))
        return None, None, None


class BufferedGradEmbedding(nn.Embedding):
    """``nn.Embedding`` whose weight gradient is dense but built in a reused buffer.

    Same arguments as ``nn.Embedding`` (without ``sparse``, ``max_norm`` or
    ``scale_grad_by_freq``). The backward pass sets ``weight.grad`` to the buffer itself
    (returning it through autograd would make autograd copy it, since the module keeps a
    reference). Works with ``zero_grad(set_to_none=True)`` (only the rows written the step
    before are cleared) and ``set_to_none=False`` (the buffer is zeroed in place), with several
    lookups per step, and with other gradients of the weight (an l2 term): a buffer written by
    anything but this module is cleared in full. Not for ``DistributedDataParallel``, which
    reduces gradients in its own hooks: use a plain ``nn.Embedding`` there.
    """

    def __init__(self, *args, **kwargs) -> None:
        for option in ("sparse", "max_norm", "scale_grad_by_freq"):
            if kwargs.get(option):
                raise ValueError(f"BufferedGradEmbedding does not support {option}={kwargs[option]!r}")
        super().__init__(*args, **kwargs)
        self._grad_buffer: torch.Tensor | None = None
        self._grad_rows: list[torch.Tensor] = []  # rows written since the buffer was last cleared
        self._known_version = -1  # the buffer's version after this module last wrote it

    def _apply(self, fn, recurse=True):
        # the buffer is a plain tensor on the old device; the next backward allocates a new one
        self._grad_buffer, self._grad_rows, self._known_version = None, [], -1
        return super()._apply(fn, recurse)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or not self.weight.requires_grad:
            return F.embedding(ids, self.weight, self.padding_idx)
        return _BufferedLookup.apply(self.weight, ids, self)

    def accumulate_rows(self, rows: torch.Tensor, values: torch.Tensor) -> None:
        """Add ``values[i]`` to row ``rows[i]`` of the weight's gradient (padding row excluded)."""
        weight = self.weight
        buffer = self._grad_buffer
        if buffer is None or buffer.shape != weight.shape or buffer.device != weight.device:
            buffer = self._grad_buffer = torch.zeros_like(weight)
            self._grad_rows, self._known_version = [], buffer._version
        grad = weight.grad
        if grad is None:  # first lookup of a step after zero_grad(set_to_none=True)
            if buffer._version != self._known_version:  # written by others since: clear it all
                buffer.zero_()
            elif self._grad_rows:
                buffer.index_fill_(0, torch.cat(self._grad_rows), 0.0)
            self._grad_rows, self._known_version = [], buffer._version
            weight.grad = grad = buffer
        # the buffer holds zeros outside self._grad_rows exactly while its version is known
        known = grad is buffer and buffer._version == self._known_version
        grad.index_add_(0, rows, values.to(grad.dtype))
        if self.padding_idx is not None:
            grad[self.padding_idx] = 0.0
        if known:
            self._grad_rows.append(rows)
            self._known_version = buffer._version
        elif grad is buffer:  # zeroed in place or added to by another gradient: clear it all next
            self._grad_rows = []
