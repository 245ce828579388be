"""Reference gradients at the current weights, leaving training state untouched."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence

import torch

from ..errors import SgnMemoryError


def _norm_buffers(module: torch.nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, saved copy) of every BatchNorm-style running statistic."""
    saved = []
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._NormBase):
            for b in (m.running_mean, m.running_var, m.num_batches_tracked):
                if b is not None:
                    saved.append((b, b.detach().clone()))
    return saved


@contextlib.contextmanager
def _untouched(module: torch.nn.Module, devices: list):
    """Run a reference pass: global RNG forked, running statistics restored afterwards."""
    saved = _norm_buffers(module)
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        with torch.no_grad():
            for buf, copy in saved:
                buf.copy_(copy)


def _batch_gradient(
    module: torch.nn.Module,
    params: list[torch.Tensor],
    loss_fn: Callable,
    batch,
) -> tuple[tuple[torch.Tensor | None, ...], float, int]:
    """Mean gradient (None for unused parameters) and mean loss of one batch."""
    inputs, targets = batch[0], batch[1]
    device = params[0].device
    inputs = inputs.to(device) if isinstance(inputs, torch.Tensor) else inputs
    targets = targets.to(device) if isinstance(targets, torch.Tensor) else targets
    with torch.enable_grad():
        loss = loss_fn(module(inputs), targets)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return grads, float(loss.detach()), len(targets)


def _full_gradient(
    module, params, loss_fn, data: Iterable
) -> tuple[list[torch.Tensor], float, int]:
    """Mean gradient and loss over every batch of ``data`` (batch-size weighted)."""
    total = [torch.zeros_like(p) for p in params]
    loss_sum, count = 0.0, 0
    for batch in data:
        grads, loss, n = _batch_gradient(module, params, loss_fn, batch)
        for t, g in zip(total, grads, strict=True):
            if g is not None:
                t.add_(g, alpha=n)
        loss_sum += loss * n
        count += n
    if count == 0:
        raise SgnMemoryError("the reference data yielded no batches.")
    for t in total:
        t.div_(count)
    return total, loss_sum / count, count


def _sq_norm(
    grads: Sequence[torch.Tensor | None], ref: Sequence[torch.Tensor] | None = None
) -> float:
    """Sum over all parameters of |g - ref|^2 (|g|^2 without ref); None gradients count as 0.

    Per-tensor norms accumulate in the tensor's precision with torch's blocked reduction
    (relative error ~1e-6 in float32), summed in float64.
    """
    total = 0.0
    for i, g in enumerate(grads):
        if g is None:
            d = None if ref is None else ref[i]
        else:
            d = g.detach() if ref is None else g.detach() - ref[i]
        if d is not None:
            total += float(torch.linalg.vector_norm(d)) ** 2
    return total


def _innermost_optimizer(optimizer):
    """The optimizer that takes the step: through SAM-type ``base_optimizer`` wrappers."""
    while (
        hasattr(optimizer, "base_optimizer")
        and hasattr(optimizer, "first_step")
        and hasattr(optimizer, "second_step")
    ):
        optimizer = optimizer.base_optimizer
    return optimizer


def _devices(params) -> list:
    return sorted({p.device.index for p in params if p.device.type == "cuda"})


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0
