"""Gathering contrastive features across processes, behind one function.

`gather_features(*tensors)` concatenates each tensor's rows from every rank in rank
order (ranks may hold different numbers of rows). Other ranks' rows are constants; the
local slice keeps its autograd graph. Every rank then computes the loss over the whole
gathered batch (the same value everywhere).

Gradient scale: rank r's slice receives `world_size * dL/d(slice r)`. Data-parallel
training averages parameter gradients over ranks, so the averaged gradient is
`sum_r dL/d(slice r) = dL/dtheta`, the gradient of the loss on the concatenated batch,
consistent with parameters used outside the gathered features (a loss's learnable
scale gets the full dL/ds on every rank). With one process it is the identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.distributed as dist
from torch import Tensor

_LOCAL_ONLY: ContextVar[bool] = ContextVar("local_only", default=False)


@contextmanager
def local_only() -> Iterator[None]:
    """Inside, gather_features returns the local rows: losses see this rank's batch only.

    For steps that ranks do not take together (validation: ranks read different numbers of
    batches), where a collective per step would hang.
    """
    token = _LOCAL_ONLY.set(True)
    try:
        yield
    finally:
        _LOCAL_ONLY.reset(token)


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) when torch.distributed is not initialized."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather_rows(x: Tensor, sizes: list[int]) -> list[Tensor]:
    """Every rank's x (rows may differ in number), as a list in rank order. No autograd."""
    longest = max(sizes)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    out = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(out, padded.contiguous())
    return [t[:n] for t, n in zip(out, sizes, strict=True)]


class _GatherWithLocalGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], rank: int) -> Tensor:  # type: ignore[override]
        parts = _all_gather_rows(x.detach(), sizes)
        ctx.start = sum(sizes[:rank])
        ctx.rows = sizes[rank]
        ctx.world = len(sizes)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        return grad[ctx.start : ctx.start + ctx.rows] * ctx.world, None, None


def gather_features(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Each tensor (N_local, ...) -> (N_total, ...) over all ranks, in rank order.

    All tensors must share their first dimension. Bool and integer tensors are gathered
    without gradient; float tensors send gradient to the local slice (see module doc).
    """
    rank, world_size = world()
    if world_size == 1 or _LOCAL_ONLY.get():
        return tensors
    n = tensors[0].shape[0]
    assert all(t.shape[0] == n for t in tensors), "gathered tensors must share dim 0"
    count = torch.tensor([n], device=tensors[0].device)
    counts = [torch.empty_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    out = []
    for t in tensors:
        if t.is_floating_point():
            out.append(_GatherWithLocalGrad.apply(t, sizes, rank))
        elif t.dtype == torch.bool:
            out.append(torch.cat(_all_gather_rows(t.to(torch.uint8), sizes)).bool())
        else:
            out.append(torch.cat(_all_gather_rows(t, sizes)))
    return tuple(out)
