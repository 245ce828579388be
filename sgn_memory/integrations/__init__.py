"""Thin adapters that attach a :class:`~sgn_memory.NoiseCollector` inside training frameworks.

Each is an optional extra, imported only when used (``import sgn_memory`` imports neither torch
nor any framework); all logic stays in :mod:`sgn_memory.collect`, an adapter only finds the
model, the optimizer, the step and the loss, and routes the collector's state through the
framework's checkpoints:

- :mod:`sgn_memory.integrations.lightning`: ``NoiseCallback`` for PyTorch Lightning
  (``pip install "sgn_memory[lightning]"``);
- :mod:`sgn_memory.integrations.huggingface`: ``NoiseTrainerCallback`` for the Hugging Face
  ``transformers.Trainer`` (``pip install "sgn_memory[huggingface]"``).

Accelerate needs no adapter: give ``NoiseCollector`` the model and optimizer that
``accelerator.prepare`` returned (the ``AcceleratedOptimizer`` is unwrapped; under
``accelerator.accumulate`` only real optimizer steps become rows).
"""
