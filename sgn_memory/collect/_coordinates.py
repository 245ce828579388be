"""Which coordinates to record, and gathering them from the gradients on the device."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import SgnMemoryError


def _named_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Trainable parameters in registration order (the DDP wrapper's prefix removed)."""
    module = _unwrap(model)
    return [(name, p) for name, p in module.named_parameters() if p.requires_grad]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The user's module under DDP/DataParallel wrappers and ``torch.compile``."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def _layer_of(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def select_coordinates(
    model: torch.nn.Module,
    coordinates: int | str | Sequence[tuple[str, int]] = 10_000,
    *,
    seed: int = 0,
):
    """Choose the coordinates to record; returns a :class:`~sgn_memory.store.CoordinateMap`.

    Parameters
    ----------
    coordinates : int, "all" or sequence of (parameter name, flat index)
        - int k: a seeded random subset of k flat coordinates, stratified over parameter
          tensors: each tensor gets a share proportional to its size (largest remainders), at
          least one per tensor when k allows, drawn without replacement, sorted.
        - ``"all"``: every coordinate (small models only).
        - explicit (name, index) pairs, recorded in the given order.
    seed : int
        Seed of the random subset.
    """
    from ..store import CoordinateMap

    params = _named_parameters(model)
    if not params:
        raise SgnMemoryError("the model has no trainable parameters to record.")
    if isinstance(coordinates, float | bool) or not isinstance(
        coordinates, str | int | np.integer | Sequence
    ):
        raise SgnMemoryError(
            f"coordinates must be an int, 'all' or (name, index) pairs; got {coordinates!r:.40}."
        )
    sizes = np.array([p.numel() for _, p in params], dtype=np.int64)
    names = [n for n, _ in params]
    total = int(sizes.sum())
    if isinstance(coordinates, str):
        if coordinates != "all":
            raise SgnMemoryError(
                f"coordinates must be an int, 'all' or (name, index) pairs; got {coordinates!r}."
            )
        pairs_name = np.repeat(names, sizes)
        pairs_idx = np.concatenate([np.arange(s) for s in sizes])
    elif isinstance(coordinates, (int, np.integer)):
        k = int(coordinates)
        if not 1 <= k <= total:
            raise SgnMemoryError(
                f"coordinates must be between 1 and {total} (the model's size); got {k}."
            )
        share = sizes * k / total
        counts = np.floor(share).astype(np.int64)
        if k >= len(sizes):
            counts = np.maximum(counts, 1)
        # largest remainders until the counts sum to k (never above a tensor's size)
        while counts.sum() < k:
            room = counts < sizes
            order = np.argsort(-(share - counts) * room, kind="stable")
            counts[order[0]] += 1
        while counts.sum() > k:
            counts[np.argmax(counts)] -= 1
        rng = np.random.default_rng(seed)
        pairs_name, pairs_idx = [], []
        for name, size, c in zip(names, sizes, counts, strict=True):
            if c:
                idx = np.sort(rng.choice(size, size=int(c), replace=False))
                pairs_name.extend([name] * int(c))
                pairs_idx.append(idx)
        pairs_name = np.array(pairs_name)
        pairs_idx = np.concatenate(pairs_idx)
    else:
        lookup = dict(zip(names, sizes, strict=True))
        pairs = list(coordinates)
        for name, idx in pairs:
            if name not in lookup:
                raise SgnMemoryError(f"coordinate names a parameter the model lacks: {name!r}.")
            if not 0 <= int(idx) < lookup[name]:
                raise SgnMemoryError(
                    f"flat index {idx} is outside parameter {name!r} of size {lookup[name]}."
                )
        pairs_name = np.array([n for n, _ in pairs])
        pairs_idx = np.array([int(i) for _, i in pairs], dtype=np.int64)
    return CoordinateMap(
        param_name=np.asarray(pairs_name, dtype=str),
        flat_index=np.asarray(pairs_idx, dtype=np.int64),
        layer=np.array([_layer_of(n) for n in pairs_name], dtype=str),
    )


class _Gather:
    """Gathers the recorded coordinates from a list of per-parameter gradients, on the device.

    One ``index_select`` per parameter and one concatenation, in the order the parameters first
    appear in the coordinate map; a final permutation restores the map's order only when the
    map is not already grouped that way (the stratified default is).  One copy to the host.
    """

    def __init__(self, params: list[tuple[str, torch.nn.Parameter]], coords):
        position = {name: i for i, (name, _) in enumerate(params)}
        names = np.asarray(coords.param_name)
        flat = np.asarray(coords.flat_index)
        self.parts: list[tuple[int, torch.Tensor]] = []
        order = []
        for name in dict.fromkeys(names.tolist()):
            where = np.flatnonzero(names == name)
            p = params[position[name]][1]
            self.parts.append((position[name], torch.as_tensor(flat[where], device=p.device)))
            order.append(where)
        order = np.concatenate(order)
        self.permutation = None
        if not np.array_equal(order, np.arange(order.size)):
            inverse = np.empty_like(order)
            inverse[order] = np.arange(order.size)
            self.permutation = inverse
        self.k = len(coords)

    def on_device(self, grads: Sequence[torch.Tensor | None], out: torch.Tensor | None = None):
        """The k values, float32, on the gradients' device, grouped by parameter; written into
        ``out`` (a preallocated (k,) float32 tensor) when given: no allocation per step."""
        if out is None:
            out = torch.empty(self.k, dtype=torch.float32, device=self.parts[0][1].device)
        start = 0
        for pos, idx in self.parts:
            stop = start + idx.numel()
            g = grads[pos]
            if g is None:
                out[start:stop].zero_()
            elif g.dtype == torch.float32:
                torch.index_select(g.detach().reshape(-1), 0, idx, out=out[start:stop])
            else:
                out[start:stop] = g.detach().reshape(-1).index_select(0, idx)
            start = stop
        return out

    def to_map_order(self, values: np.ndarray) -> np.ndarray:
        return values if self.permutation is None else values[self.permutation]

    def __call__(self, grads: Sequence[torch.Tensor | None]) -> np.ndarray:
        return self.to_map_order(self.on_device(grads).cpu().numpy())
