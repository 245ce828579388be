"""Hugging Face ``transformers.Trainer``: a ``TrainerCallback`` that records gradient noise.

::

    from sgn_memory.integrations.huggingface import NoiseTrainerCallback

    trainer = Trainer(model=model, args=args, train_dataset=train_set,
                      callbacks=[NoiseTrainerCallback("runs/sgn", coordinates=10_000)])
    trainer.train()                                    # and after a preemption:
    trainer.train(resume_from_checkpoint=True)         # continues the same store

``on_train_begin`` attaches a :class:`~sgn_memory.NoiseCollector` to the Trainer's model and
optimizer (Accelerate's ``AcceleratedOptimizer``, unwrapped): the Trainer steps it once per
``gradient_accumulation_steps`` micro-batches, after clipping to ``max_grad_norm``, so rows are
the accumulated, clipped gradient of each optimizer step.  With a reference (``reference=
"exact"`` or ``"batch"`` over ``reference_data``), the loss of a reference batch is
``model(**batch).loss`` unless ``loss_fn`` or ``batch_loss`` says otherwise.

Resuming: every checkpoint folder gets the collector's state (``sgn_collector.json``, written
in ``on_save``; the store is flushed then and before the save), and when
``trainer.train(resume_from_checkpoint=...)`` starts at ``state.global_step`` > 0 the collector
resumes its store from the state in ``output_dir/checkpoint-<global_step>``, dropping the rows
the interrupted run recorded after it.  Without that file (a checkpoint of a run without this
callback, or one killed between writing the checkpoint and ``on_save``) it resumes at
``global_step`` with a warning: that equals the collector's step count only when the collector
was attached from the first step and no fp16 step was skipped (the Trainer counts skipped steps,
the collector does not).

The Trainer hands callbacks no per-step loss: the ``loss`` column stays NaN (the Trainer's logs
have it).  Only the main process writes.  The Trainer has no exception hook: when training
fails, the rows buffered so far are written when the interpreter exits (the store's exit hook).
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as err:
    raise ImportError(
        "sgn_memory.integrations.huggingface needs transformers: "
        'pip install "sgn_memory[huggingface]".'
    ) from err

__all__ = ["NoiseTrainerCallback"]


def _model_loss(module, batch):
    """A transformers model's own loss of a batch (``labels`` among the inputs)."""
    return module(**batch).loss


class NoiseTrainerCallback(TrainerCallback):
    """Record the gradient noise of a ``transformers.Trainer`` run into a NoiseStore.

    Parameters
    ----------
    store : path
        Where the run's NoiseStore is created (or resumed).
    **collector_kwargs
        Passed to :class:`~sgn_memory.NoiseCollector` (``coordinates``, ``reference``,
        ``reference_data``, ``loss_fn`` or ``batch_loss``, ``reference_batch_size``, ``every``,
        ``batch_size``, ``seed``, ``reference_seed``, ``attrs``, ``overwrite``, ``on_error``);
        ``resume`` is managed by the callback.
    """

    def __init__(self, store, **collector_kwargs: Any):
        if "resume" in collector_kwargs:
            raise TypeError(
                "NoiseTrainerCallback resumes with trainer.train(resume_from_checkpoint=...); "
                "do not pass resume."
            )
        self.store = store
        self.collector_kwargs = collector_kwargs
        self.collector = None

    _STATE_FILE = "sgn_collector.json"

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        from ..collect import NoiseCollector

        if self.collector is not None:  # a train() that failed in this process: close it
            self.collector.close()
            self.collector = None
        options = dict(self.collector_kwargs)
        if options.get("loss_fn") is None and options.get("batch_loss") is None:
            options["batch_loss"] = _model_loss
        options.setdefault("scaler", getattr(optimizer, "scaler", None))
        resume = None
        if state.global_step > 0 and os.path.isdir(self.store):
            saved = os.path.join(
                args.output_dir, f"checkpoint-{state.global_step}", self._STATE_FILE
            )
            if os.path.isfile(saved):
                with open(saved) as f:
                    resume = json.load(f)
            else:
                resume = int(state.global_step)
                warnings.warn(
                    f"sgn_memory: {saved} is missing; the collector resumes at the Trainer's "
                    f"global step {resume}, which is its own step count only if it was attached "
                    "from the first step and no fp16 step was skipped.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        attrs = {
            "framework": "transformers",
            "world_size": int(args.world_size),
            "gradient_accumulation_steps": int(args.gradient_accumulation_steps),
            "max_grad_norm": None if args.max_grad_norm is None else float(args.max_grad_norm),
            "per_device_train_batch_size": int(args.per_device_train_batch_size),
            **dict(options.pop("attrs", None) or {}),
        }
        self.collector = NoiseCollector(
            model, optimizer, self.store, attrs=attrs, resume=resume, **options
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.collector is not None and control.should_save:
            self.collector.state_dict()  # flushes: the rows up to this step go with the checkpoint

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.collector is not None and control.should_save:  # save_strategy="epoch"
            self.collector.state_dict()

    def on_save(self, args, state, control, **kwargs):
        if self.collector is None or not state.is_world_process_zero:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder):
            tmp = os.path.join(folder, self._STATE_FILE + ".tmp")
            with open(tmp, "w") as f:
                json.dump(self.collector.state_dict(), f)  # flushes the store too
            os.replace(tmp, os.path.join(folder, self._STATE_FILE))

    def on_train_end(self, args, state, control, **kwargs):
        if self.collector is not None:
            collector, self.collector = self.collector, None
            collector.close()
