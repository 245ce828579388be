"""The frozen-checkpoint protocol."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from ..errors import SgnMemoryError
from ._coordinates import _Gather, _named_parameters, _unwrap, select_coordinates
from ._reference import (
    _batch_gradient,
    _devices,
    _full_gradient,
    _loss_function,
    _sq_norm,
    _untouched,
)


def probe_checkpoint(
    model: torch.nn.Module,
    loss_fn: Callable,
    loader: Iterable,
    *,
    n_batches: int,
    store,
    coordinates: int | str | Sequence[tuple[str, int]] = 10_000,
    reference_data: Iterable | None = None,
    seed: int = 0,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
):
    """Frozen-checkpoint protocol: u_k = g_{B_k}(w) - grad L(w) at fixed weights w.

    Computes the exact full gradient once over ``reference_data`` (default: one pass over
    ``loader``), then ``n_batches`` minibatch gradients from ``loader`` (cycled), all with
    ``torch.autograd.grad`` at the same weights, and writes them to a new store
    (``protocol="checkpoint"``).  The model's parameters, ``.grad``, running statistics and the
    global RNG state are left as they were.  Returns the store (closed, reopen it to read).
    """
    from ..store import NoiseStore

    if int(n_batches) < 1:
        raise SgnMemoryError(f"n_batches must be a positive integer; got {n_batches}.")
    module = _unwrap(model)
    loss_of = _loss_function(loss_fn, None)
    params = _named_parameters(model)
    tensors = [p for _, p in params]
    coords = select_coordinates(model, coordinates, seed=seed)
    gather = _Gather(params, coords)
    meta = {
        "reference": "exact",
        "model": type(module).__name__,
        "n_parameters": int(sum(p.numel() for p in tensors)),
        "coordinate_seed": seed,
        "torch": torch.__version__,
        **dict(attrs or {}),
    }
    out = NoiseStore.create(
        store, coordinates=coords, protocol="checkpoint", attrs=meta, overwrite=overwrite
    )
    try:
        with _untouched(module, _devices(tensors)):
            full, full_loss, size = _full_gradient(
                module, tensors, loss_of, loader if reference_data is None else reference_data
            )
            out.update_attrs(reference_size=int(size), full_loss=full_loss)
            ref = gather(full)
            grad_sq = _sq_norm(full)
            it = iter(loader)
            for k in range(int(n_batches)):
                try:
                    batch = next(it)
                except StopIteration:
                    it = iter(loader)
                    batch = next(it)
                grads, loss, n = _batch_gradient(module, tensors, loss_of, batch)
                noise_sq = _sq_norm(grads, full)
                out.append(
                    gather(grads) - ref,
                    step=k,
                    scalars={
                        "loss": loss,
                        "grad_norm_sq": grad_sq,
                        "noise_norm_sq": noise_sq,
                        "b_simple": n * noise_sq / grad_sq if grad_sq > 0 else math.inf,
                        "accumulation": 1.0,
                    },
                )
    finally:
        out.close()
    return out
