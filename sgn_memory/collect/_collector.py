"""NoiseCollector: the optimizer step pre-hook that records the noise."""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from ..errors import SgnMemoryError
from ._coordinates import _Gather, _named_parameters, _unwrap, select_coordinates
from ._reference import (
    _batch_gradient,
    _devices,
    _full_gradient,
    _innermost_optimizer,
    _rank,
    _sq_norm,
    _untouched,
)

Reference = Literal["exact", "batch", "none"]
_REFERENCES = ("exact", "batch", "none")


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
        the optimizer, so they never become rows; the ``skipped`` column counts them: the
        number of optimizer steps skipped since the previous row, read off the scaler's public
        state at every optimizer step (a skip backs the scale off by the backoff factor and
        resets the growth tracker; a taken step advances the tracker).  NaN on the first row,
        when the scaler's state changed otherwise (loaded, edited), and on the asynchronous CUDA
        path (reference "none" on a GPU), which never waits for the device; on other GPU paths
        reading the state waits for the device once per optimizer step.
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
        self._scaler_state: tuple[float, int] | None = None
        self._skipped = math.nan  # skipped steps since the previous row (NaN: not known yet)
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
        # CPU rows in the map's order are gathered straight into the store's buffer
        self._direct = not self._tensors[0].is_cuda and self._gather.permutation is None
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
        self._scalar_names = frozenset(self.store.scalar_names)  # others are not recorded
        target = _innermost_optimizer(optimizer)
        self._handles.append(target.register_step_pre_hook(self._pre_step))
        self._handles.append(self.module.register_forward_pre_hook(self._count_forward))

    # -------------------------------------------------------------------- store
    def _open_store(self, store, attrs, overwrite, seed, coordinates):
        from ..store import DEFAULT_SCALARS, NoiseStore

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
                scalars=(*DEFAULT_SCALARS, "ref_loss", *(("gradient_scale",) if self._sam else ())),
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
        if self.scaler is not None and not self._lagged:
            self._skipped += self._skips_since_last_step()
        if (self.steps_seen - 1) % self.every:
            return
        grads = [p.grad for p in self._tensors]
        scale = getattr(self.optimizer, "gradient_scale", None) if self._sam else None
        if scale is not None:
            # StableSAM-type: the base step uses gamma * g_s; record the noise of g_s itself
            scale = float(scale)
            grads = [None if g is None else g / scale for g in grads]
        if self.reference == "none" and self._lagged:
            self._launch_copy(grads, optimizer, loss, forwards, scale)
            return
        scalars = {
            "loss": loss,
            "lr": float(optimizer.param_groups[0].get("lr", float("nan"))),
            "accumulation": float(forwards),
            "amp_scale": float(self.scaler.get_scale())
            if self.scaler is not None
            else float("nan"),
            "skipped": self._skipped if self.scaler is not None else float("nan"),
        }
        self._skipped = 0.0
        if scale is not None:
            scalars["gradient_scale"] = scale
        if self.reference == "none":
            pass
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
            grad_sq = _sq_norm(ref)
            noise_sq = _sq_norm(grads, ref)
            scalars.update(grad_norm_sq=grad_sq, noise_norm_sq=noise_sq)
            if self.batch_size:
                scalars["b_simple"] = (
                    self.batch_size * noise_sq / grad_sq if grad_sq > 0 else math.inf
                )
            if self.rows_written == 0:
                self.store.update_attrs(reference_size=int(ref_size))
        scalars = {name: v for name, v in scalars.items() if name in self._scalar_names}
        if self._direct:
            # gathered straight into the store's buffered block: one copy of the k values
            def fill(row: np.ndarray) -> None:
                out = torch.from_numpy(row)
                self._gather.on_device(grads, out=out)
                if self.reference != "none":
                    out -= self._gather.on_device(ref)

            self.store._append_row_into(fill, self.steps_seen, scalars)
        else:
            noise = self._gather(grads)
            if self.reference != "none":
                noise = noise - self._gather(ref)
            self.store.append(noise, step=self.steps_seen, scalars=scalars)
        self.rows_written += 1

    def _skips_since_last_step(self) -> float:
        """Optimizer steps the GradScaler skipped since the previous optimizer step, from its
        public state (``state_dict``): after the previous step's own ``update()`` the growth
        tracker is one higher (or 0 with the scale grown, at the growth interval); each skip
        since then multiplied the scale by the backoff factor and reset the tracker to 0."""
        state = self.scaler.state_dict()
        if not state:  # a disabled scaler
            return math.nan
        scale, tracker = float(state["scale"]), int(state["_growth_tracker"])
        previous, self._scaler_state = self._scaler_state, (scale, tracker)
        if previous is None:
            return math.nan
        scale0, tracker0 = previous
        if tracker0 + 1 >= state["growth_interval"]:
            expected, expected_tracker = scale0 * state["growth_factor"], 0
        else:
            expected, expected_tracker = scale0, tracker0 + 1
        if tracker == expected_tracker and scale == expected:
            return 0.0
        if tracker != 0 or not 0 < scale < expected:
            return math.nan  # not the result of skips: the scaler was changed otherwise
        k = math.log(scale / expected) / math.log(state["backoff_factor"])
        return float(round(k)) if abs(k - round(k)) < 1e-6 else math.nan

    # ------------------------------------------------------------- GPU: no stall
    def _launch_copy(self, grads, optimizer, loss, forwards, gradient_scale) -> None:
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
        if gradient_scale is not None:
            scalars["gradient_scale"] = gradient_scale
        scalars = {name: v for name, v in scalars.items() if name in self._scalar_names}
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
