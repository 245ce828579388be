"""NoiseCollector: the optimizer step pre-hook that records the noise."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from ..errors import SgnMemoryError
from ._coordinates import _Gather, _named_parameters, _unwrap, select_coordinates
from ._reference import (
    _REFERENCE_PASSES,
    _batch_gradient,
    _BatchSource,
    _devices,
    _full_gradient,
    _loss_function,
    _optimizer_chain,
    _rank,
    _sq_norm,
    _stream_seeds,
    _to_device,
    _untouched,
)

Reference = Literal["exact", "batch", "none"]
_REFERENCES = ("exact", "batch", "none")


def _is_empty_dir(path) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is None


class NoiseCollector:
    """Record per-step gradient noise of a training loop into a NoiseStore.

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained (plain, DDP-wrapped or compiled; hooks see the user's module).
    optimizer : torch.optim.Optimizer or a wrapper of one
        The torch optimizer inside gets a step pre-hook: wrappers are unwrapped (SAM-type
        ``base_optimizer``; ``.optimizer`` of Lightning's ``LightningOptimizer``, Accelerate's
        ``AcceleratedOptimizer`` and the like), in any nesting.
    store : path or NoiseStore
        A path: a new store is created there with the chosen coordinates (``overwrite``
        applies), or, with ``resume``, the run's own store is continued.  A NoiseStore writer:
        its coordinate map must be the one chosen here.
    coordinates : int, "all" or sequence of (parameter name, flat index)
        See :func:`select_coordinates` (default: 10,000 random coordinates, stratified).
    reference : {"none", "exact", "batch"}
        How grad L(w_t) is obtained; see the module docstring for cost and bias.
    reference_data
        ``"exact"``: an iterable of batches, the full data (iterated once per recorded step).
        ``"batch"``: a DataLoader over a map-style dataset (or such a dataset, with
        ``reference_batch_size``), or a list of batches: at each recorded step a batch is drawn
        at random, independently of other steps (see the module docstring).
    loss_fn : callable (outputs, targets) -> mean loss
        The loss of an ``(inputs, targets)`` batch: ``loss_fn(model(inputs), targets)``.
    batch_loss : callable (module, batch) -> mean loss, optional
        Instead of ``loss_fn``, for batches of another shape (a dict of a language model...);
        the batch's size is the leading size of its first tensor.
    reference_batch_size : int, optional
        M for ``reference="batch"`` (default: the reference DataLoader's batch size).
    reference_seed : int, optional
        Seed of the reference stream: the randomness of reference passes (dropout masks, the
        shuffling of a reference loader, the choice of reference batches) at step t is drawn
        from (reference_seed, t) alone, never from training's generators.  Default: fresh
        entropy; recorded in the store's attributes either way (a resumed run reads it there).
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
        reading the state waits for the device once per optimizer step.  A row that follows
        skipped iterations has NaN ``loss`` and ``accumulation``: the skipped iterations'
        observed losses and forward passes are mixed into its counters and cannot be told
        apart.
    seed : int
        Seed of the coordinate subset.
    attrs : mapping
        Extra attributes stored with the run (dataset, model summary, ...).
    overwrite : bool
        Replace an existing store at ``store``.
    resume : int or mapping, optional
        Continue the run's own store at ``store`` after a restart from a checkpoint: the
        collector's :meth:`state_dict` saved with that checkpoint, or the number of optimizer
        steps the collector had seen when it was taken.  The store must record the same
        coordinates, reference and ``every`` (an error names what differs); rows of later
        steps (recorded after the checkpoint by the interrupted run) are dropped, and step
        counting continues from the checkpoint.  ``None``: a new store.
    on_error : {"warn", "raise"}
        What a failure while recording (a full disk, a reference batch that does not fit the
        model) does.  ``"warn"`` (default): one RuntimeWarning, recording stops (only a
        step-counting hook stays, so that :meth:`state_dict` keeps the optimizer's step count for
        a resume), the rows already recorded are flushed and kept (``error`` holds the exception)
        and training goes on undisturbed.  ``"raise"``: the exception propagates out of
        ``optimizer.step()``.

    Notes
    -----
    Only rank 0 of a distributed job writes; other ranks hook nothing.  The gradient the hook
    sees under DDP is the all-reduced one; the reference runs on ``model.module`` over
    ``reference_data`` on rank 0 only.

    ``optimizer.step(closure)`` (PyTorch Lightning's automatic optimization, LBFGS): the
    gradient exists only once the closure has run, so the pre-hook hands the optimizer a
    closure of ours that runs the user's and then records; an optimizer that evaluates the
    closure several times per step (LBFGS) gets its first evaluation, at the step's starting
    weights, recorded (with a warning).
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
        batch_loss: Callable | None = None,
        reference_batch_size: int | None = None,
        reference_seed: int | None = None,
        every: int = 1,
        batch_size: int | None = None,
        scaler=None,
        seed: int = 0,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        resume: int | Mapping[str, Any] | None = None,
        on_error: Literal["warn", "raise"] = "warn",
    ):
        # everything is checked before the store is touched: a constructor that fails
        # leaves nothing behind
        if on_error not in ("warn", "raise"):
            raise SgnMemoryError(f"on_error must be 'warn' or 'raise'; got {on_error!r}.")
        self.on_error = on_error
        self.error: BaseException | None = None
        if reference not in _REFERENCES:
            raise SgnMemoryError(f"reference must be one of {_REFERENCES}; got {reference!r}.")
        if reference != "none" and (
            reference_data is None or (loss_fn is None and batch_loss is None)
        ):
            raise SgnMemoryError(
                f"reference={reference!r} needs reference_data and loss_fn (or batch_loss)."
            )
        if reference == "none" and reference_data is not None:
            raise SgnMemoryError(
                "reference_data was given but reference='none' (the default) records raw "
                "minibatch gradients: pass reference='exact' or reference='batch'."
            )
        if int(every) < 1:
            raise SgnMemoryError(f"every must be a positive integer; got {every}.")
        if resume is not None and overwrite:
            raise SgnMemoryError("resume and overwrite exclude each other: choose one.")
        self.model = model
        self.module = _unwrap(model)
        self.optimizer = optimizer
        self._target, self._sam_optimizer = _optimizer_chain(optimizer)
        self._sam = self._sam_optimizer is not None
        self.reference = reference
        self.reference_data = reference_data
        self.loss_fn = loss_fn
        self._loss_of = _loss_function(loss_fn, batch_loss)
        self._source = (
            _BatchSource(reference_data, reference_batch_size) if reference == "batch" else None
        )
        self.every = int(every)
        self.batch_size = batch_size
        self.scaler = scaler
        self._scaler_state: tuple[float, int] | None = None
        self._skipped = math.nan  # skipped steps since the previous row (NaN: not known yet)
        self._after_skip = False  # this step's losses and forwards include a skipped step's
        self._params = _named_parameters(model)
        self._tensors = [p for _, p in self._params]
        self._devices = _devices(self._tensors)
        self.rank = _rank()
        self.coordinates = select_coordinates(model, coordinates, seed=seed)
        self._gather = _Gather(self._params, self.coordinates)
        self._handles: list = []
        self._loss_sum, self._loss_count = 0.0, 0
        self._forwards = 0
        self._closure_calls: int | None = None  # this step's closure evaluations (None: no closure)
        self._warned_closure = False
        self.steps_seen = 0
        self.rows_written = 0
        self._closed = False
        if isinstance(resume, bool) or not (
            resume is None or isinstance(resume, int | np.integer | Mapping)
        ):
            raise SgnMemoryError(
                "resume must be None (a new store), the collector's state_dict() or the number "
                f"of optimizer steps at the checkpoint; got {resume!r:.40}."
            )
        state = {"steps_seen": int(resume)} if isinstance(resume, int | np.integer) else resume
        if state is not None and not isinstance(state.get("steps_seen"), int | np.integer):
            raise SgnMemoryError(
                "resume must be the mapping collector.state_dict() returned (with its "
                f"'steps_seen'); got one with keys {sorted(state)!s:.60}."
            )
        if state is not None:
            self.steps_seen = int(state["steps_seen"])
            scaler_state = state.get("scaler_state")
            self._scaler_state = None if scaler_state is None else tuple(scaler_state)
            skipped = state.get("skipped")
            self._skipped = math.nan if skipped is None else float(skipped)
        self.reference_seed = None if reference == "none" else reference_seed
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
        created = isinstance(store, str | os.PathLike) and state is None
        existed = created and os.path.lexists(store)
        was_empty = existed and os.path.isdir(store) and _is_empty_dir(store)
        if self.reference != "none":
            self._check_reference()  # a reference that cannot run fails here, not at step 1
        self.store = self._open_store(store, attrs, overwrite, seed, coordinates, state)
        try:
            self._scalar_names = frozenset(self.store.scalar_names)  # others are not recorded
            self._handles.append(self._target.register_step_pre_hook(self._pre_step))
            self._handles.append(self._target.register_step_post_hook(self._post_step))
            self._handles.append(self.module.register_forward_pre_hook(self._count_forward))
        except BaseException:
            for h in self._handles:
                h.remove()
            self.store.close()
            if created and not existed:  # ours, made a moment ago: leave nothing behind
                shutil.rmtree(self.store.path, ignore_errors=True)
            elif created and was_empty:  # the user's empty folder: empty it again
                for entry in os.scandir(self.store.path):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
            raise

    # -------------------------------------------------------------------- store
    def _metadata(self, seed, coordinates) -> dict[str, Any]:
        groups = self._target.param_groups
        return {
            "reference": self.reference,
            "reference_size": None
            if self._source is None or self._source.kind != "random_subset"
            else int(self._source.size),
            "reference_sampling": None
            if self.reference == "none"
            else "full_pass"
            if self.reference == "exact"
            else self._source.kind,
            "reference_seed": self.reference_seed,
            "every": self.every,
            "batch_size": self.batch_size,
            "optimizer": type(self.optimizer).__name__,
            "base_optimizer": type(self._target).__name__,
            "param_groups": len(groups),
            "coordinate_seed": seed,
            "coordinate_rule": "stratified random"
            if isinstance(coordinates, int | np.integer)
            else str(coordinates)[:40],
            "model": type(self.module).__name__,
            "n_parameters": int(sum(p.numel() for p in self._tensors)),
            "torch": torch.__version__,
        }

    def _open_store(self, store, attrs, overwrite, seed, coordinates, state):
        from ..store import DEFAULT_SCALARS, NoiseStore

        if state is not None:
            return self._resume_store(store, attrs, seed, coordinates)
        if self.reference != "none" and self.reference_seed is None:
            self.reference_seed = secrets.randbits(63)
        meta = {**self._metadata(seed, coordinates), **dict(attrs or {})}
        if isinstance(store, str | os.PathLike):
            groups = len(self._target.param_groups)
            return NoiseStore.create(
                store,
                coordinates=self.coordinates,
                scalars=(
                    *DEFAULT_SCALARS,
                    "ref_loss",
                    *(("gradient_scale",) if self._sam else ()),
                    *(f"lr.{i}" for i in range(1, groups)),  # every param group's rate
                ),
                protocol="trajectory",
                attrs=meta,
                overwrite=overwrite,
            )
        self._check_same_coordinates(store)
        store.update_attrs(**meta)
        return store

    def _check_same_coordinates(self, store) -> None:
        theirs, mine = store.coordinates, self.coordinates
        if len(theirs) != len(mine):
            raise SgnMemoryError(
                f"the NoiseStore {store.path} records other coordinates than the ones chosen "
                f"here: {len(theirs)} there, {len(mine)} here (coordinates= and seed= must be "
                "the run's)."
            )
        differ = (theirs.param_name != mine.param_name) | (theirs.flat_index != mine.flat_index)
        if differ.any():
            i = int(np.flatnonzero(differ)[0])
            raise SgnMemoryError(
                f"the NoiseStore {store.path} records other coordinates than the ones chosen "
                f"here: column {i} is {theirs.param_name[i]}[{theirs.flat_index[i]}] there and "
                f"{mine.param_name[i]}[{mine.flat_index[i]}] here (coordinates= and seed= must "
                "be the run's)."
            )

    def _check_reference(self) -> None:
        """One reference batch through the model (no gradient), before any store is touched."""
        try:
            with _untouched(self.module, self._devices, seed=0), torch.no_grad():
                if self.reference == "exact":
                    batch = next(iter(self.reference_data), None)
                    if batch is None:
                        raise SgnMemoryError("the reference data yields no batches.")
                else:
                    batch = self._source.draw(np.random.default_rng(0))
                    self._source._iter = None  # a stream restarts: step 1 gets its first batch
                loss, n = self._loss_of(self.module, _to_device(batch, self._tensors[0].device))
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise SgnMemoryError(
                        f"the reference loss must be a scalar tensor; got {type(loss).__name__}"
                        f"{'' if not isinstance(loss, torch.Tensor) else tuple(loss.shape)}."
                    )
                if not n:
                    raise SgnMemoryError("a reference batch has no samples.")
        except SgnMemoryError as err:
            raise SgnMemoryError(f"reference={self.reference!r}: {err}") from err
        except Exception as err:
            detail = " ".join(str(err).split())[:200]
            raise SgnMemoryError(
                f"reference={self.reference!r}: a reference batch does not go through the "
                f"model and loss ({type(err).__name__}: {detail}); reference_data must yield "
                "(inputs, targets) batches for loss_fn(model(inputs), targets), or give "
                "batch_loss(model, batch)."
            ) from err

    def _resume_store(self, store, attrs, seed, coordinates):
        from ..store import NoiseStore

        if not isinstance(store, str | os.PathLike):
            raise SgnMemoryError("resume needs the path of the run's store, not a NoiseStore.")
        if not os.path.isdir(store):
            raise SgnMemoryError(
                f"cannot resume into {store}: there is no store there (resume=None starts one)."
            )
        from ..store._layout import _caller_attrs

        _caller_attrs(dict(attrs or {}))  # refused attributes fail before any row is dropped
        existing = NoiseStore.open(store)
        attrs_on_disk = existing.attrs
        self._check_same_coordinates(existing)
        mine_meta = self._metadata(0, None)
        for key, mine in (
            ("protocol", "trajectory"),
            ("reference", self.reference),
            ("every", self.every),
            ("reference_sampling", mine_meta["reference_sampling"]),
            ("reference_size", mine_meta["reference_size"]),
            ("batch_size", self.batch_size),
        ):
            theirs = attrs_on_disk.get(key)
            if key in ("reference_sampling", "reference_size", "batch_size") and (
                theirs is None or mine is None
            ):
                continue  # not known on one side: nothing to compare
            if theirs != mine:
                raise SgnMemoryError(
                    f"cannot resume into {store}: it was recorded with {key}={theirs!r}, this "
                    f"collector has {key}={mine!r}."
                )
        if self.batch_size is None and attrs_on_disk.get("batch_size") is not None:
            self.batch_size = int(attrs_on_disk["batch_size"])  # B_simple goes on as recorded
        if self.reference != "none":
            recorded_seed = attrs_on_disk.get("reference_seed")
            if self.reference_seed is not None and recorded_seed not in (None, self.reference_seed):
                raise SgnMemoryError(
                    f"cannot resume into {store}: it was recorded with reference_seed="
                    f"{recorded_seed}, this collector has {self.reference_seed}."
                )
            if self.reference_seed is None:
                self.reference_seed = (
                    recorded_seed if recorded_seed is not None else secrets.randbits(63)
                )
        out = NoiseStore.resume(store, after_step=self.steps_seen)
        try:
            steps = out.steps
            last = int(steps[-1]) if steps.size else 0
            # the last step the interrupted run recorded at or before the checkpoint
            expected = self.steps_seen - (self.steps_seen - 1) % self.every
            if self.steps_seen >= 1 and last < expected:
                warnings.warn(
                    f"sgn_memory: {store} holds rows up to step {last} but the checkpoint is at "
                    f"step {self.steps_seen}: the rows in between never reached the disk (call "
                    "collector.state_dict(), which flushes, when saving a checkpoint); the "
                    "store has a gap there.",
                    RuntimeWarning,
                    stacklevel=4,
                )
            out.update_attrs(
                **{
                    "resumed_at": [*attrs_on_disk.get("resumed_at", []), self.steps_seen],
                    "reference_seed": self.reference_seed,
                    **dict(attrs or {}),
                }
            )
        except BaseException:
            out.close()
            raise
        self.rows_written = int(steps.size)
        return out

    def state_dict(self) -> dict[str, Any]:
        """The collector's state for a training checkpoint; pass it back as ``resume=``.

        Also flushes the store, so that every row recorded up to this step is on disk when
        the checkpoint is: call it when the checkpoint is saved.
        """
        if self.store is not None and not self._closed and self.error is None:
            try:
                if self._pending is not None:
                    self._finish_copy()
                self.store.flush()
            except Exception as exc:
                if self.on_error == "raise":
                    raise
                self._fail(exc)
        return {
            "version": 1,
            "steps_seen": self.steps_seen,
            "scaler_state": None if self._scaler_state is None else list(self._scaler_state),
            "skipped": None if math.isnan(self._skipped) else self._skipped,
            "reference_seed": self.reference_seed,
        }

    # -------------------------------------------------------------------- hooks
    def _count_forward(self, module, args) -> None:
        if _REFERENCE_PASSES[0]:  # a reference pass of this or another collector
            return
        if not module.training:  # an evaluation between SAM's passes is not a training forward
            return
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
        """Remember a minibatch loss of the coming step; the row stores the mean of the losses
        observed since the previous step (the micro-batches of gradient accumulation)."""
        self._loss_sum += float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        self._loss_count += 1

    def _reference(self):
        """(full gradient list, reference loss, reference size) at the current weights."""
        torch_seed, choice_seed = _stream_seeds(self.reference_seed, self.steps_seen)
        with _untouched(self.module, self._devices, seed=torch_seed):
            if self.reference == "exact":
                return _full_gradient(
                    self.module, self._tensors, self._loss_of, self.reference_data
                )
            batch = self._source.draw(np.random.default_rng(choice_seed))
            grads, loss, n = _batch_gradient(self.module, self._tensors, self._loss_of, batch)
            ref = [
                torch.zeros_like(p) if g is None else g
                for g, p in zip(grads, self._tensors, strict=True)
            ]
            return ref, loss, n

    def _fail(self, exc: BaseException) -> None:
        """A recording failure under on_error='warn': one warning, rows kept, recording off.

        The step pre-hook stays, counting steps only (cheap, cannot fail), so that the step
        count in :meth:`state_dict` stays the optimizer's and a resumed run labels its rows
        right; the forward hook goes; the post-hook stays, idle.
        """
        self.error = exc
        self._closure_calls = None
        for h in self._handles[2:]:
            h.remove()
        del self._handles[2:]
        with contextlib.suppress(Exception):
            self.store.flush()
        on_disk, lost = "?", ""
        with contextlib.suppress(Exception):
            on_disk = self.store.n_complete
            if self.store.n_appended > on_disk:
                lost = f"; the {self.store.n_appended - on_disk} rows after them are lost"
        warnings.warn(
            f"sgn_memory: recording stopped at optimizer step {self.steps_seen} "
            f"({type(exc).__name__}: {exc}); training continues, the {on_disk} rows on disk "
            f"are kept{lost}.",
            RuntimeWarning,
            stacklevel=3,
        )

    def _guarded(self, optimizer) -> None:
        if self.error is not None or self._closed:
            return
        try:
            self._record(optimizer)
        except Exception as exc:
            if self.on_error == "raise":
                raise
            self._fail(exc)

    def _pre_step(self, optimizer, args, kwargs):
        if self.error is not None:  # recording stopped: count steps, nothing else
            self.steps_seen += 1
            return None
        self._begin_step()
        # torch passes step's own arguments, ``self`` first: (optimizer, closure) or
        # (optimizer,) with closure= among the keywords
        at = 1 if args and args[0] is optimizer else 0
        closure = kwargs.get("closure")
        if closure is None and len(args) > at and callable(args[at]):
            closure = args[at]
        if closure is None:
            self._closure_calls = None
            self._guarded(optimizer)
            return None
        # the gradient the update uses exists only once the closure has run: record then
        self._closure_calls = 0

        def closure_then_record():
            result = closure()
            self._closure_calls += 1
            if self._closure_calls == 1:
                self._guarded(optimizer)
            return result

        if "closure" in kwargs:
            return args, {**kwargs, "closure": closure_then_record}
        return (*args[:at], closure_then_record, *args[at + 1 :]), kwargs

    def _post_step(self, optimizer, args, kwargs) -> None:
        calls, self._closure_calls = self._closure_calls, None
        if calls is None or self.error is not None:
            return
        # whatever ran after the first evaluation belongs to this step, not the next one
        self._forwards = 0
        self._loss_sum, self._loss_count = 0.0, 0
        if calls != 1 and not self._warned_closure:
            self._warned_closure = True
            what = (
                "never evaluated the closure: its steps are not recorded"
                if calls == 0
                else f"evaluated the closure {calls} times in one step: rows record the first "
                "evaluation, at the step's starting weights"
            )
            warnings.warn(
                f"sgn_memory: {type(optimizer).__name__}.step(closure) {what}.",
                RuntimeWarning,
                stacklevel=3,
            )

    def _begin_step(self) -> None:
        self.steps_seen += 1
        if self.scaler is not None and not self._lagged:
            skips = self._skips_since_last_step()
            self._skipped += skips
            # the iterations the scaler skipped observed losses and ran forwards that no step
            # consumed: they are mixed into this step's counters, which cannot be split
            self._after_skip = self._after_skip or skips > 0

    def _record(self, optimizer) -> None:
        forwards, self._forwards = self._forwards, 0
        loss = self._loss_sum / self._loss_count if self._loss_count else math.nan
        self._loss_sum, self._loss_count = 0.0, 0
        if self._after_skip:  # counted over a skipped iteration too: not this step's own
            self._after_skip = False
            loss = forwards = math.nan
        if (self.steps_seen - 1) % self.every:
            return
        grads = [p.grad for p in self._tensors]
        scale = getattr(self._sam_optimizer, "gradient_scale", None) if self._sam else None
        if scale is not None:
            # StableSAM-type: the base step uses gamma * g_s; record the noise of g_s itself
            scale = float(scale)
            grads = [None if g is None else g / scale for g in grads]
        if self.reference == "none" and self._lagged:
            self._launch_copy(grads, optimizer, loss, forwards, scale)
            return
        scalars = {
            "loss": loss,
            **self._learning_rates(optimizer),
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

    @staticmethod
    def _learning_rates(optimizer) -> dict[str, float]:
        """``lr`` of the first param group, ``lr.i`` of group i (as a float: a tensor lr too)."""
        return {
            "lr" if i == 0 else f"lr.{i}": float(group.get("lr", math.nan))
            for i, group in enumerate(optimizer.param_groups)
        }

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
        with torch.cuda.device(values.device):  # the stream the copy was queued on
            event.record()
        scalars = {
            "loss": loss,
            **self._learning_rates(optimizer),
            "accumulation": float(forwards),
            "skipped": float("nan"),
        }
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
