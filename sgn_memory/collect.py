"""Record the stochastic gradient noise of a PyTorch training loop, invisibly.

This is the only module of :mod:`sgn_memory` that imports torch.  Two lines attach it::

    with sgn.NoiseCollector(model, optimizer, "runs/sgn", reference="exact",
                            reference_data=full_loader, loss_fn=loss_fn) as collector:
        for x, y in loader:                      # the user's loop, unchanged
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            collector.observe_loss(loss)         # optional: store the minibatch loss
            optimizer.step()

What is recorded, at every ``every``-th optimizer step t: the noise u_t = g_{B_t}(w_t) - grad L(w_t)
on k chosen coordinates, where g_{B_t} is the gradient the update is about to use (read in the
optimizer's step pre-hook: after gradient accumulation, clipping, AMP unscaling and the DDP
all-reduce) and grad L(w_t) the reference gradient at the same weights.  Beside it, per step: the
minibatch loss (if observed), the learning rate, |grad L|^2 and |u|^2 over *all* coordinates, the
gradient noise scale B_simple = B |u|^2 / |grad L|^2 (McCandlish et al. 2018), the AMP scale, and
the number of forward passes since the previous step (gradient accumulation; 2 under SAM).

References for grad L(w_t) (``reference=``):

``"exact"``
    A full pass over ``reference_data`` (an iterable of batches, typically the training set in
    large batches) with ``torch.autograd.grad``, batch by batch, weighted by batch size.  Unbiased;
    costs one forward and backward pass over the data per recorded step.  With BatchNorm in training
    mode each reference batch is normalised with its own statistics (as in training).
``"batch"``
    The gradient of one independent batch of size M from ``reference_data`` (cycled).  Cheap; the
    recorded noise then has covariance Sigma (1/B + 1/M) instead of Sigma / B, so use M >> B.
    M is recorded in the store's attributes.
``"none"``
    Raw minibatch gradients g_{B_t} (no reference).  Free; the series then contains the slowly
    moving full gradient, which biases memory estimates upward: subtract a reference first.

Invisibility: reference passes use ``torch.autograd.grad`` (``.grad`` is never touched), run
inside ``torch.random.fork_rng`` (dropout masks there are independent draws and the global RNG is
left exactly as it was), restore every BatchNorm running statistic, and never run the DDP wrapper
(the reference uses ``model.module``).  With the collector attached, the parameters after N steps
are bitwise identical to a run without it (tested).

SAM-type optimizers (objects with ``first_step``, ``second_step`` and ``base_optimizer``): the hook
goes on the innermost base optimizer, so the recorded gradient is the one taken at the perturbed
point w + e(w), and the reference is taken at that same point.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from .errors import SgnMemoryError

Reference = Literal["exact", "batch", "none"]
_REFERENCES = ("exact", "batch", "none")


# ============================================================================================
# coordinates


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
    from .store import CoordinateMap

    params = _named_parameters(model)
    if not params:
        raise SgnMemoryError("the model has no trainable parameters to record.")
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

    def into_buffer(self, grads: Sequence[torch.Tensor | None]) -> np.ndarray:
        """Like calling, but reusing one CPU buffer (valid until the next call)."""
        if getattr(self, "_buffer", None) is None:
            self._buffer = torch.empty(self.k, dtype=torch.float32)
        return self.to_map_order(self.on_device(grads, out=self._buffer).numpy())


# ============================================================================================
# state that a reference pass must leave untouched


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


# ============================================================================================
# the collector


class NoiseCollector:
    """Record per-step gradient noise of a training loop into a NoiseStore.

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained (plain, DDP-wrapped or compiled; hooks see the user's module).
    optimizer : torch.optim.Optimizer or SAM-type wrapper
        Its innermost base optimizer gets a step pre-hook.
    store : path or NoiseStore
        A path: a new store is created there with the chosen coordinates (``overwrite`` applies).
        A NoiseStore writer: its coordinate map must be the one chosen here.
    coordinates : int, "all" or sequence of (parameter name, flat index)
        See :func:`select_coordinates` (default: 10,000 random coordinates, stratified).
    reference : {"none", "exact", "batch"}
        How grad L(w_t) is obtained; see the module docstring for cost and bias.
    reference_data : iterable of (inputs, targets) batches
        The full data (``"exact"``) or a source of independent batches (``"batch"``, cycled).
    loss_fn : callable (outputs, targets) -> mean loss
        Needed with a reference.
    every : int
        Record every ``every``-th optimizer step (the reference is computed only then).
    batch_size : int, optional
        B of the training minibatches, for B_simple.
    scaler : torch.amp.GradScaler, optional
        Its scale is recorded per step.  Steps the scaler skips (inf/NaN gradients) never reach
        the optimizer, so they never become rows (the scale column shows each backoff); the
        ``skipped`` column is NaN: a skipped step is not observable from the optimizer's hook.
    seed : int
        Seed of the coordinate subset.
    attrs : mapping
        Extra attributes stored with the run (dataset, model summary, ...).
    overwrite : bool
        Replace an existing store at ``store``.
    on_error : {"warn", "raise"}
        What a failure while recording (a full disk, a reference batch that does not fit the
        model) does.  ``"warn"`` (default): one RuntimeWarning, the hooks are removed, the rows
        already recorded are flushed and kept (``error`` holds the exception) and training goes
        on undisturbed.  ``"raise"``: the exception propagates out of ``optimizer.step()``.

    Notes
    -----
    Only rank 0 of a distributed job writes; other ranks hook nothing.  The gradient the hook
    sees under DDP is the all-reduced one; the reference runs on ``model.module`` over
    ``reference_data`` on rank 0 only.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer,
        store,
        *,
        coordinates: int | str | Sequence[tuple[str, int]] = 10_000,
        reference: Reference = "none",
        reference_data: Iterable | None = None,
        loss_fn: Callable | None = None,
        every: int = 1,
        batch_size: int | None = None,
        scaler=None,
        seed: int = 0,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        on_error: Literal["warn", "raise"] = "warn",
    ):
        if on_error not in ("warn", "raise"):
            raise SgnMemoryError(f"on_error must be 'warn' or 'raise'; got {on_error!r}.")
        self.on_error = on_error
        self.error: BaseException | None = None
        if reference not in _REFERENCES:
            raise SgnMemoryError(f"reference must be one of {_REFERENCES}; got {reference!r}.")
        if reference != "none" and (reference_data is None or loss_fn is None):
            raise SgnMemoryError(f"reference={reference!r} needs reference_data and loss_fn.")
        if int(every) < 1:
            raise SgnMemoryError(f"every must be a positive integer; got {every}.")
        self.model = model
        self.module = _unwrap(model)
        self.optimizer = optimizer
        self.reference = reference
        self.reference_data = reference_data
        self.loss_fn = loss_fn
        self.every = int(every)
        self.batch_size = batch_size
        self.scaler = scaler
        self._params = _named_parameters(model)
        self._tensors = [p for _, p in self._params]
        self.rank = _rank()
        self.coordinates = select_coordinates(model, coordinates, seed=seed)
        self._gather = _Gather(self._params, self.coordinates)
        self._handles: list = []
        self._batch_iter = None
        self._loss = float("nan")
        self._forwards = 0
        self._in_reference = False
        self.steps_seen = 0
        self.rows_written = 0
        self._closed = False
        self._sam = _innermost_optimizer(optimizer) is not optimizer
        # on CUDA, reference "none": copy rows to the host asynchronously (see _launch_copy)
        self._lagged = self._tensors[0].is_cuda and reference == "none"
        self._pending = None
        self._flip = 0
        self._pinned = (
            [torch.empty(len(self.coordinates), dtype=torch.float32, pin_memory=True) for _ in "ab"]
            if self._lagged
            else []
        )
        self._forward_weights: list[torch.Tensor] | None = None
        self.store = None
        if self.rank != 0:
            return
        self.store = self._open_store(store, attrs, overwrite, seed, coordinates)
        target = _innermost_optimizer(optimizer)
        self._handles.append(target.register_step_pre_hook(self._pre_step))
        self._handles.append(self.module.register_forward_pre_hook(self._count_forward))

    # -------------------------------------------------------------------- store
    def _open_store(self, store, attrs, overwrite, seed, coordinates):
        from .store import DEFAULT_SCALARS, NoiseStore

        meta = {
            "reference": self.reference,
            "reference_size": None,
            "every": self.every,
            "batch_size": self.batch_size,
            "optimizer": type(self.optimizer).__name__,
            "base_optimizer": type(_innermost_optimizer(self.optimizer)).__name__,
            "coordinate_seed": seed,
            "coordinate_rule": "stratified random"
            if isinstance(coordinates, (int, np.integer))
            else str(coordinates)[:40],
            "model": type(self.module).__name__,
            "n_parameters": int(sum(p.numel() for p in self._tensors)),
            "torch": torch.__version__,
            **dict(attrs or {}),
        }
        if isinstance(store, (str, os.PathLike)):
            return NoiseStore.create(
                store,
                coordinates=self.coordinates,
                scalars=(*DEFAULT_SCALARS, "ref_loss"),
                protocol="trajectory",
                attrs=meta,
                overwrite=overwrite,
            )
        if not np.array_equal(
            store.coordinates.param_name, self.coordinates.param_name
        ) or not np.array_equal(store.coordinates.flat_index, self.coordinates.flat_index):
            raise SgnMemoryError(
                "the given NoiseStore records other coordinates than the ones chosen here."
            )
        store.update_attrs(**meta)
        return store

    # -------------------------------------------------------------------- hooks
    def _count_forward(self, module, args) -> None:
        if self._in_reference:
            return
        if module.training:
            self._forwards += 1
        if self._sam and self.reference != "none" and self.steps_seen % self.every == 0:
            # SAM restores w before the base step: keep the weights this forward ran at (the
            # perturbed point of the second pass) for the reference of the coming recorded step
            with torch.no_grad():
                if self._forward_weights is None:
                    self._forward_weights = [p.detach().clone() for p in self._tensors]
                else:
                    for buf, p in zip(self._forward_weights, self._tensors, strict=True):
                        buf.copy_(p)

    def observe_loss(self, loss) -> None:
        """Remember the minibatch loss of the coming step (stored with it)."""
        self._loss = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)

    def _reference(self):
        """(full gradient list, reference loss, reference size) at the current weights."""
        self._in_reference = True
        try:
            with _untouched(self.module, _devices(self._tensors)):
                if self.reference == "exact":
                    return _full_gradient(
                        self.module, self._tensors, self.loss_fn, self.reference_data
                    )
                if self._batch_iter is None:
                    self._batch_iter = iter(self.reference_data)
                try:
                    batch = next(self._batch_iter)
                except StopIteration:
                    self._batch_iter = iter(self.reference_data)
                    batch = next(self._batch_iter)
                grads, loss, n = _batch_gradient(self.module, self._tensors, self.loss_fn, batch)
                ref = [
                    torch.zeros_like(p) if g is None else g
                    for g, p in zip(grads, self._tensors, strict=True)
                ]
                return ref, loss, n
        finally:
            self._in_reference = False

    def _pre_step(self, optimizer, args, kwargs) -> None:
        try:
            self._record(optimizer)
        except Exception as exc:
            if self.on_error == "raise":
                raise
            self.error = exc
            warnings.warn(
                f"sgn_memory: recording stopped at optimizer step {self.steps_seen} "
                f"({type(exc).__name__}: {exc}); training continues, the {self.rows_written} "
                "rows recorded so far are kept.",
                RuntimeWarning,
                stacklevel=2,
            )
            for h in self._handles:
                h.remove()
            self._handles.clear()
            with contextlib.suppress(Exception):
                self.store.flush()

    def _record(self, optimizer) -> None:
        self.steps_seen += 1
        forwards, self._forwards = self._forwards, 0
        loss, self._loss = self._loss, float("nan")
        if (self.steps_seen - 1) % self.every:
            return
        grads = [p.grad for p in self._tensors]
        if self.reference == "none" and self._lagged:
            self._launch_copy(grads, optimizer, loss, forwards)
            return
        # on the CPU the row is gathered into one reused buffer (the store copies it)
        g = self._gather.into_buffer(grads) if not self._tensors[0].is_cuda else self._gather(grads)
        scalars = {
            "loss": loss,
            "lr": float(optimizer.param_groups[0].get("lr", float("nan"))),
            "accumulation": float(forwards),
            "amp_scale": float(self.scaler.get_scale())
            if self.scaler is not None
            else float("nan"),
            "skipped": float("nan"),
        }
        if self.reference == "none":
            noise = g
        elif self._sam and self._forward_weights is not None:
            # evaluate the reference at the weights of the last forward pass, then put w back
            with torch.no_grad():
                current = [p.detach().clone() for p in self._tensors]
                for p, w in zip(self._tensors, self._forward_weights, strict=True):
                    p.copy_(w)
            try:
                ref, ref_loss, ref_size = self._reference()
            finally:
                with torch.no_grad():
                    for p, w in zip(self._tensors, current, strict=True):
                        p.copy_(w)
        else:
            ref, ref_loss, ref_size = self._reference()
        if self.reference != "none":
            scalars["ref_loss"] = ref_loss
            noise = g - self._gather(ref)
            grad_sq = _sq_norm(ref)
            noise_sq = _sq_norm(grads, ref)
            scalars.update(grad_norm_sq=grad_sq, noise_norm_sq=noise_sq)
            if self.batch_size:
                scalars["b_simple"] = (
                    self.batch_size * noise_sq / grad_sq if grad_sq > 0 else math.inf
                )
            if self.rows_written == 0:
                self.store.update_attrs(reference_size=int(ref_size))
        self.store.append(noise, step=self.steps_seen, scalars=scalars)
        self.rows_written += 1

    # ------------------------------------------------------------- GPU: no stall
    def _launch_copy(self, grads, optimizer, loss, forwards) -> None:
        """Gather on the device and start an asynchronous copy into pinned host memory; the
        row is handed to the store at the next recorded step (or at close), when the copy has
        long finished, so the training step never waits for the device."""
        self._finish_copy()
        values = self._gather.on_device(grads)
        host = self._pinned[self._flip]
        self._flip ^= 1
        host.copy_(values, non_blocking=True)
        scale = None
        if self.scaler is not None:
            scale = self.scaler._get_scale_async()
            scale = None if scale is None else scale.detach().to("cpu", non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        lr = float(optimizer.param_groups[0].get("lr", float("nan")))
        scalars = {"loss": loss, "lr": lr, "accumulation": float(forwards), "skipped": float("nan")}
        self._pending = (host, event, self.steps_seen, scalars, scale)

    def _finish_copy(self) -> None:
        if self._pending is None:
            return
        host, event, step, scalars, scale = self._pending
        self._pending = None
        event.synchronize()
        scalars["amp_scale"] = float(scale) if scale is not None else float("nan")
        self.store.append(self._gather.to_map_order(host.numpy()), step=step, scalars=scalars)
        self.rows_written += 1

    # -------------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Remove every hook, hand the last row to the store and close it (idempotent)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._pending is not None and self.store is not None:
            try:
                self._finish_copy()
            except Exception as exc:
                if self.on_error == "raise":
                    raise
                self.error = exc
        if self.store is not None and not self._closed:
            self._closed = True
            if self.error is None or self.on_error == "raise":
                self.store.close()
            else:  # the store may be what failed: keep what it has, do not fail the job
                with contextlib.suppress(Exception):
                    self.store.close()

    def __enter__(self) -> NoiseCollector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"NoiseCollector(reference={self.reference!r}, k={len(self.coordinates)}, "
            f"every={self.every}, steps_seen={self.steps_seen}, rows={self.rows_written})"
        )


# ============================================================================================
# frozen-checkpoint protocol


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
    from .store import NoiseStore

    if int(n_batches) < 1:
        raise SgnMemoryError(f"n_batches must be a positive integer; got {n_batches}.")
    module = _unwrap(model)
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
                module, tensors, loss_fn, loader if reference_data is None else reference_data
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
                grads, loss, n = _batch_gradient(module, tensors, loss_fn, batch)
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


__all__ = ["NoiseCollector", "probe_checkpoint", "select_coordinates"]
