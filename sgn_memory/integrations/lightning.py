"""PyTorch Lightning: a ``Callback`` that records gradient noise with a NoiseCollector.

::

    from sgn_memory.integrations.lightning import NoiseCallback

    callback = NoiseCallback("runs/sgn", coordinates=10_000, reference="batch",
                             reference_data=train_set, reference_batch_size=1024,
                             loss_fn=torch.nn.functional.cross_entropy, batch_size=128)
    trainer = pl.Trainer(callbacks=[callback], gradient_clip_val=1.0, accumulate_grad_batches=2)
    trainer.fit(model, train_loader)                     # and after a preemption:
    trainer.fit(model, train_loader, ckpt_path="last")   # continues the same store

What it does, hook by hook:

``on_train_start``
    Attaches a :class:`~sgn_memory.NoiseCollector` to the LightningModule and the torch
    optimizer Lightning steps (``trainer.optimizers[optimizer_index]``), with the AMP
    GradScaler of the precision plugin when there is one.  Under automatic optimization
    Lightning calls ``optimizer.step(closure)``, and the forward, backward and gradient clipping
    run inside that closure: the collector records when the closure returns, so rows hold the
    accumulated, clipped (and unscaled) gradient the update uses.  Manual optimization
    (``self.optimizers().step()``) is recorded the same way.
``on_before_backward``
    The minibatch loss of each micro-batch (undoing Lightning's division by
    ``accumulate_grad_batches`` and the AMP loss scale); a row stores their mean.  Not under
    manual optimization with several optimizers, where the losses of all of them pass here (the
    ``loss`` column is then NaN).
``state_dict`` / ``load_state_dict``
    The collector's state goes into every Lightning checkpoint (saving it flushes the store);
    ``trainer.fit(..., ckpt_path=...)`` restores it and the collector resumes the same store,
    dropping the rows the interrupted run recorded after that checkpoint.
``on_train_end``, ``on_exception``, ``teardown``
    Close the collector: the rows recorded so far are written, also when training fails.

Under DDP (``strategy="ddp"``) rank 0 writes one store for the whole job; the gradient it
records is the all-reduced one.  The store's attributes name the framework, the world size,
``accumulate_grad_batches``, ``gradient_clip_val`` and the precision.
"""

from __future__ import annotations

import importlib
import os
import warnings
from typing import Any

try:
    _pl = importlib.import_module("lightning.pytorch")
except ImportError:  # the standalone package
    try:
        _pl = importlib.import_module("pytorch_lightning")
    except ImportError as err:
        raise ImportError(
            "sgn_memory.integrations.lightning needs PyTorch Lightning: "
            'pip install "sgn_memory[lightning]".'
        ) from err

__all__ = ["NoiseCallback"]


class NoiseCallback(_pl.Callback):
    """Record the gradient noise of a Lightning training run into a NoiseStore.

    Parameters
    ----------
    store : path
        Where the run's NoiseStore is created (or resumed, from a checkpoint).
    optimizer_index : int
        Which of the LightningModule's optimizers to record (default the first).
    **collector_kwargs
        Passed to :class:`~sgn_memory.NoiseCollector` (``coordinates``, ``reference``,
        ``reference_data``, ``loss_fn`` or ``batch_loss``, ``reference_batch_size``, ``every``,
        ``batch_size``, ``seed``, ``reference_seed``, ``attrs``, ``overwrite``, ``on_error``).
        ``scaler`` defaults to the precision plugin's GradScaler; ``resume`` is managed by the
        callback through the Lightning checkpoint.  A reference pass computes
        ``loss_fn(pl_module(inputs), targets)`` (the module needs a ``forward``) or
        ``batch_loss(pl_module, batch)``; it never calls ``training_step``, whose logging
        would count reference passes as training.

    Attributes
    ----------
    collector : NoiseCollector or None
        The live collector, from ``on_train_start`` until it is closed.

    Notes
    -----
    One instance is one run: a second ``trainer.fit`` with the same instance continues the
    same store after the last recorded step (continued training).  For a new run, make a new
    callback with another store path.
    """

    def __init__(self, store, *, optimizer_index: int = 0, **collector_kwargs: Any):
        if "resume" in collector_kwargs:
            raise TypeError(
                "NoiseCallback resumes through the Lightning checkpoint (trainer.fit(ckpt_path=)); "
                "do not pass resume."
            )
        self.store = store
        self.optimizer_index = optimizer_index
        self.collector_kwargs = collector_kwargs
        self.collector = None
        self._resume_state: dict[str, Any] | None = None
        self._observe = True

    @property
    def state_key(self) -> str:
        # one state per store and optimizer: several NoiseCallbacks can share a Trainer
        store = os.path.normpath(os.fspath(self.store))  # "runs/x/" and "runs/x": one run
        return self._generate_state_key(store=store, optimizer_index=self.optimizer_index)

    # -- attaching -----------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        from ..collect import NoiseCollector

        if not 0 <= self.optimizer_index < len(trainer.optimizers):
            raise ValueError(
                f"NoiseCallback(optimizer_index={self.optimizer_index}): the LightningModule "
                f"has {len(trainer.optimizers)} optimizer(s)."
            )
        optimizer = trainer.optimizers[self.optimizer_index]
        if self._resume_state is None and trainer.global_step > 0:
            warnings.warn(
                f"sgn_memory: training resumes at global step {trainer.global_step} but the "
                "checkpoint holds no NoiseCallback state (or another store path's): the "
                "collector starts a new store whose steps count from 1.",
                RuntimeWarning,
                stacklevel=2,
            )
        kwargs = dict(self.collector_kwargs)
        kwargs.setdefault("scaler", getattr(trainer.precision_plugin, "scaler", None))
        attrs = {
            "framework": "pytorch_lightning",
            "framework_version": getattr(_pl, "__version__", None),
            "world_size": int(trainer.world_size),
            "accumulate_grad_batches": int(trainer.accumulate_grad_batches),
            "gradient_clip_val": None
            if trainer.gradient_clip_val is None
            else float(trainer.gradient_clip_val),
            "precision": str(trainer.precision),
            "automatic_optimization": bool(pl_module.automatic_optimization),
            **dict(kwargs.pop("attrs", None) or {}),
        }
        error = None
        try:
            self.collector = NoiseCollector(
                pl_module, optimizer, self.store, attrs=attrs, resume=self._resume_state, **kwargs
            )
        except Exception as exc:  # raised on rank 0 only (the writer): tell every rank
            error = exc
        if trainer.world_size > 1:
            failed = trainer.strategy.reduce_boolean_decision(error is not None, all=False)
        else:
            failed = error is not None
        if error is not None:
            raise error
        if failed:
            raise RuntimeError(
                "sgn_memory: the NoiseCallback could not attach its collector on rank 0 (see "
                "rank 0's error); stopping every rank."
            )
        # a loss per row is the loss of the recorded optimizer's steps; with several optimizers
        # stepped by hand, every manual_backward would be mixed in
        self._observe = pl_module.automatic_optimization or len(trainer.optimizers) == 1

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        if self.collector is None or not self._observe:
            return
        value = loss.detach().float()
        if pl_module.automatic_optimization:
            value = value * trainer.accumulate_grad_batches  # Lightning divided it
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and scaler.is_enabled():
            value = value / scaler.get_scale()  # the precision plugin scaled it
        self.collector.observe_loss(value)

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.collector is not None:
            return self.collector.state_dict()
        return dict(self._resume_state or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_state = dict(state_dict) if state_dict else None

    # -- closing -------------------------------------------------------------------------
    def _close(self) -> None:
        if self.collector is not None:
            collector, self.collector = self.collector, None
            # a checkpoint saved after the end (and a later fit() with this callback) continues
            # from the last step, not from the beginning
            try:
                self._resume_state = collector.state_dict()
            finally:
                collector.close()

    def on_train_end(self, trainer, pl_module) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()

    def teardown(self, trainer, pl_module, stage) -> None:
        self._close()
