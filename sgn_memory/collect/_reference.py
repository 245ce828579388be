"""Reference gradients at the current weights, leaving training state untouched."""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..errors import SgnMemoryError


def _saved_buffers(module: torch.nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, saved copy) of every buffer of the module: a forward pass in training mode may
    update any of them in place (BatchNorm's running statistics, spectral norm's power-iteration
    vectors, quantisation observers), and a reference pass must leave them as training had them."""
    seen, saved = set(), []
    for b in module.buffers():
        if b is not None and id(b) not in seen:
            seen.add(id(b))
            saved.append((b, b.detach().clone()))
    return saved


# reference passes in progress in this process, over every collector: a second collector on the
# same model must not count the first one's reference forwards as training forwards
_REFERENCE_PASSES = [0]


def _stream_seeds(seed: int, step: int) -> tuple[int, int]:
    """Two 63-bit seeds of the reference stream at ``step``: one for torch's global generators
    inside the pass (dropout, a shuffled reference loader), one for choosing reference batches.
    A function of (seed, step) only, so a resumed run draws what the uninterrupted run drew."""
    a, b = np.random.SeedSequence([int(seed), int(step)]).generate_state(2, np.uint64)
    return int(a >> np.uint64(1)), int(b >> np.uint64(1))


@contextlib.contextmanager
def _untouched(module: torch.nn.Module, devices: list, seed: int | None = None):
    """Run a reference pass without touching training's state.

    The global random states training draws from (torch's CPU generator and those of the CUDA
    ``devices``, Python's ``random``, NumPy's legacy ``np.random``: data augmentation in a
    dataset's ``__getitem__`` uses them) are saved and restored bitwise, and every buffer of the
    module is restored.  With ``seed``, the pass draws its randomness (dropout masks, the
    shuffling of a reference loader without a generator of its own, augmentation) from a stream
    of its own seeded with it; without, it would replay the very numbers training consumes next
    (``fork_rng`` alone), which makes an "independent" reference batch a future training batch.
    ``None`` keeps that replay: only for passes at frozen weights (the probe), where no training
    follows.
    """
    saved = _saved_buffers(module)
    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    _REFERENCE_PASSES[0] += 1
    try:
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.default_generator.manual_seed(seed)
                for d in devices:
                    torch.cuda.default_generators[d].manual_seed(seed)
                random.seed(seed)
                np.random.seed(seed % 2**32)  # noqa: NPY002
            yield
    finally:
        _REFERENCE_PASSES[0] -= 1
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002
        with torch.no_grad():
            for buf, copy in saved:
                buf.copy_(copy)


def _to_device(batch, device):
    """Tensors of a batch (nested in tuples, lists and dicts) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return type(batch)({k: _to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, tuple | list):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _batch_len(batch) -> int:
    """Samples in a batch: the leading size of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    values = batch.values() if isinstance(batch, Mapping) else batch
    if isinstance(values, Iterable) and not isinstance(values, str | bytes):
        for v in values:
            n = _batch_len(v)
            if n:
                return n
    return 0


def _loss_function(loss_fn: Callable | None, batch_loss: Callable | None):
    """``loss_of(module, batch) -> (mean loss, samples)`` from either way of giving the loss:
    ``loss_fn(module(inputs), targets)`` on ``(inputs, targets)`` batches, or the user's own
    ``batch_loss(module, batch)`` for any other batch (dicts of a language model...)."""
    if batch_loss is not None:
        return lambda module, batch: (batch_loss(module, batch), _batch_len(batch))

    def loss_of(module, batch):
        inputs, targets = batch[0], batch[1]
        return loss_fn(module(inputs), targets), len(targets)

    return loss_of


def _batch_gradient(
    module: torch.nn.Module,
    params: list[torch.Tensor],
    loss_of: Callable,
    batch,
) -> tuple[tuple[torch.Tensor | None, ...], float, int]:
    """Mean gradient (None for unused parameters) and mean loss of one batch."""
    batch = _to_device(batch, params[0].device)
    with torch.enable_grad():
        loss, n = loss_of(module, batch)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return grads, float(loss.detach()), int(n)


def _full_gradient(
    module, params, loss_of, data: Iterable
) -> tuple[list[torch.Tensor], float, int]:
    """Mean gradient and loss over every batch of ``data`` (batch-size weighted)."""
    total = [torch.zeros_like(p) for p in params]
    loss_sum, count = 0.0, 0
    for batch in data:
        grads, loss, n = _batch_gradient(module, params, loss_of, batch)
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


class _BatchSource:
    """Where ``reference="batch"`` takes its batch at each recorded step.

    A batch is drawn afresh at every recorded step, independently of the other steps and of
    training (from the reference stream): taking the batches of a fixed list or loader in
    turn would be sampling without replacement again, so the reference errors of one cycle
    would sum to zero and give the recorded noise the anti-persistence of epochs.

    - A DataLoader over a map-style dataset, or such a dataset: M samples drawn uniformly
      without replacement within the batch (M = the loader's batch size, or
      ``reference_batch_size``), fetched from the dataset and collated with the loader's
      ``collate_fn`` in this process (its sampler and workers are not used).
    - A list or tuple of batches: one of them chosen uniformly at random per step.
    - Any other iterable (a generator, a loader over an IterableDataset): read in order and
      restarted when exhausted, with a warning; nothing else can be done with a stream.
    """

    def __init__(self, data, batch_size: int | None):
        from torch.utils.data import DataLoader, Dataset, IterableDataset

        self.data = data
        self._iter = None
        self.size = batch_size
        loader = isinstance(data, DataLoader)
        dataset = data.dataset if loader else data
        map_style = not isinstance(dataset, IterableDataset) and (
            isinstance(dataset, Dataset)
            # a DataLoader takes any sequence of samples as its dataset (a list of dicts...)
            or (loader and hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"))
        )
        if map_style:
            self.kind = "random_subset"
            self.dataset = dataset
            if loader:
                self.collate = data.collate_fn
                self.size = batch_size or data.batch_size
                sampler = type(data.sampler).__name__
                if sampler not in ("RandomSampler", "SequentialSampler"):
                    warnings.warn(
                        f"sgn_memory: the reference batch is drawn uniformly from the reference "
                        f"loader's dataset, not through its {sampler}.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
            else:
                from torch.utils.data import default_collate

                self.collate = default_collate
            if not self.size:
                raise SgnMemoryError(
                    "reference='batch' over a dataset needs the batch size M: give the "
                    "reference DataLoader a batch_size, or pass reference_batch_size."
                )
            self.n = len(dataset)
            if not 1 <= self.size <= self.n:
                raise SgnMemoryError(
                    f"the reference batch size must be between 1 and the {self.n} samples of "
                    f"the reference dataset; got {self.size}."
                )
        elif isinstance(data, torch.Tensor):
            raise SgnMemoryError(
                "reference_data must give batches, e.g. a DataLoader or a list of (inputs, "
                "targets) batches; got a tensor."
            )
        elif isinstance(data, Sequence):
            if not len(data):
                raise SgnMemoryError("the reference data is an empty list of batches.")
            first = data[0]
            parts = first.values() if isinstance(first, Mapping) else first
            if isinstance(parts, tuple | list) and any(
                isinstance(t, torch.Tensor) and t.ndim == 0 for t in parts
            ):
                raise SgnMemoryError(
                    "reference_data looks like a list of samples (its first element holds a "
                    "0-d tensor), but a list is taken as a list of batches: pass "
                    "DataLoader(samples, batch_size=M) to draw M samples per step."
                )
            self.kind = "random_listed_batch"
        else:
            self.kind = "in_order"
            warnings.warn(
                "sgn_memory: reference_data is an iterable that can only be read in order, so "
                "reference='batch' takes its batches in turn; if it repeats a finite set of "
                "batches, their reference errors sum to zero over each cycle and the recorded "
                "noise gets that cycle's anti-persistence.  Pass a DataLoader over a map-style "
                "dataset, or a list of batches, to have a batch drawn at random at each step.",
                RuntimeWarning,
                stacklevel=3,
            )

    def draw(self, rng: np.random.Generator):
        if self.kind == "random_subset":
            index = rng.choice(self.n, size=self.size, replace=False).tolist()
            getitems = getattr(self.dataset, "__getitems__", None)
            items = getitems(index) if getitems else [self.dataset[i] for i in index]
            return self.collate(items)
        if self.kind == "random_listed_batch":
            return self.data[int(rng.integers(len(self.data)))]
        if self._iter is None:
            self._iter = iter(self.data)
        try:
            return next(self._iter)
        except StopIteration:
            self._iter = iter(self.data)
            return next(self._iter)


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


def _is_sam_type(optimizer) -> bool:
    return all(hasattr(optimizer, a) for a in ("base_optimizer", "first_step", "second_step"))


def _optimizer_chain(optimizer) -> tuple[torch.optim.Optimizer, object | None]:
    """(the torch optimizer that takes the step, the SAM-type wrapper on the way or None).

    Unwraps SAM-type optimizers (``base_optimizer`` with ``first_step``/``second_step``) and
    framework wrappers that hold the real optimizer in ``.optimizer`` (Lightning's
    ``LightningOptimizer``, Accelerate's ``AcceleratedOptimizer``, ...) or ``._optimizer``, in
    any nesting.
    """
    sam, seen = None, []
    while True:
        if any(optimizer is o for o in seen):
            break
        seen.append(optimizer)
        inner = getattr(optimizer, "optimizer", None)
        if inner is None:
            inner = getattr(optimizer, "_optimizer", None)
        if _is_sam_type(optimizer):
            sam = optimizer if sam is None else sam
            optimizer = optimizer.base_optimizer
        elif inner is not None and inner is not optimizer:
            # before the isinstance test: AcceleratedOptimizer subclasses Optimizer without
            # being one (it has no hooks of its own)
            optimizer = inner
        elif isinstance(optimizer, torch.optim.Optimizer) and hasattr(
            optimizer, "_optimizer_step_pre_hooks"
        ):
            return optimizer, sam
        else:
            break
    raise SgnMemoryError(
        f"cannot find the torch optimizer inside {type(seen[0]).__name__}: the collector needs a "
        "torch.optim.Optimizer, or a wrapper holding one in .optimizer or .base_optimizer."
    )


def _devices(params) -> list:
    return sorted({p.device.index for p in params if p.device.type == "cuda"})


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0
