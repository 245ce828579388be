"""Models for the experiments, defined here (torchvision is not usable on these machines).

:func:`build_model` builds one by name for a :class:`~experiments.data.DataSpec`:

========================  =============================================================
name                      accepts
========================  =============================================================
``"mlp"``                 image, signal, regression (inputs flattened)
``"lenet5"``              image (Conv2d), signal (Conv1d analogue)
``"vgg_small"``           image, signal
``"resnet20"``            image, signal
``"lstm"``                image (rows as steps), signal (scalars as steps), tokens
``"transformer"``         image (rows as tokens), signal (patches as tokens), tokens
========================  =============================================================

Every model supports double backward (Hessian-vector products) and :mod:`torch.func`
(``jvp(grad(...))``, ``vmap(grad(...))``): activations are not in-place; the transformer computes
attention explicitly, because the fused CPU attention kernel that ``nn.MultiheadAttention``
selects (with or without ``enable_nested_tensor=False``) has no double backward; the LSTM is
written out, because ``nn.LSTM`` runs oneDNN on CPU (no forward-mode AD) and cuDNN on GPU (no
double backward).  BatchNorm in training mode updates its running statistics in place: under
:mod:`torch.func`, pass freshly cloned buffers to ``functional_call`` inside the transformed
function.  Classification models return ``(B, n_outputs)`` logits, token models ``(B, L, V)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sgn_memory.errors import SgnMemoryError

from .data import DataSpec

__all__ = [
    "MODELS",
    "LSTMModel",
    "LeNet5",
    "ResNet20",
    "TransformerModel",
    "VGGSmall",
    "build_model",
    "check_model",
    "count_parameters",
    "mlp",
]


def _layers(nd: int) -> tuple[type[nn.Module], ...]:
    """(Conv, MaxPool, AdaptiveAvgPool, BatchNorm) classes for 1-D or 2-D inputs."""
    if nd == 1:
        return nn.Conv1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d, nn.BatchNorm1d
    return nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.BatchNorm2d


def mlp(n_inputs: int, n_outputs: int, *, depth: int = 3, width: int = 100) -> nn.Sequential:
    """Fully connected ReLU network with ``depth`` hidden layers of ``width`` units.

    The default (3 x 100) is the fully connected network of Simsekli et al. (2019), "A tail-index
    analysis of stochastic gradient noise in deep neural networks", ICML.  Inputs are flattened.
    """
    if depth < 1 or width < 1:
        raise SgnMemoryError(f"mlp needs depth >= 1 and width >= 1, got {depth}, {width}.")
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = n_inputs
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        fan_in = width
    layers.append(nn.Linear(fan_in, n_outputs))
    return nn.Sequential(*layers)


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling; Conv1d analogue for signals.

    conv 6@5x5 (padding 2) - pool 2 - conv 16@5x5 - pool 2 - adaptive average pool to 5x5 -
    FC 120 - FC 84 - FC ``n_outputs``.  On 28x28 inputs this is exactly LeNet-5 on MNIST
    padded to 32x32 (the adaptive pool is the identity there): 61,706 parameters for 1 channel
    and 10 classes.  The second convolution gets padding 2 when the pooled map is smaller than
    10 (8x8 digits), so every input of at least 4 pixels works.
    """

    def __init__(self, in_channels: int, spatial: tuple[int, ...], n_outputs: int) -> None:
        super().__init__()
        nd = len(spatial)
        conv, pool, adaptive, _ = _layers(nd)
        pad2 = 0 if min(spatial) // 2 >= 10 else 2
        self.features = nn.Sequential(
            conv(in_channels, 6, 5, padding=2),
            nn.ReLU(),
            pool(2),
            conv(6, 16, 5, padding=pad2),
            nn.ReLU(),
            pool(2),
            adaptive(5),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5**nd, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, n_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class VGGSmall(nn.Module):
    """A small VGG: 3x3 convs 32-32-pool-64-64-pool-128-pool, global average pool, FC.

    Optional BatchNorm after each convolution (off by default: in training mode it makes a
    sample's gradient depend on the rest of its batch).  Conv1d analogue for signals; inputs need
    at least 8 pixels (samples) per side.
    """

    def __init__(
        self, in_channels: int, nd: int, n_outputs: int, *, batchnorm: bool = False
    ) -> None:
        super().__init__()
        conv, pool, adaptive, norm = _layers(nd)
        layers: list[nn.Module] = []
        channels = in_channels
        for item in (32, 32, "pool", 64, 64, "pool", 128, "pool"):
            if item == "pool":
                layers.append(pool(2))
                continue
            layers.append(conv(channels, item, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(norm(item))
            layers.append(nn.ReLU())
            channels = item
        layers += [adaptive(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an option-A shortcut (He et al. 2016, section 4.2)."""

    def __init__(self, nd: int, c_in: int, c_out: int, stride: int, batchnorm: bool) -> None:
        super().__init__()
        conv, _, _, norm = _layers(nd)
        self.conv1 = conv(c_in, c_out, 3, stride=stride, padding=1, bias=not batchnorm)
        self.bn1 = norm(c_out) if batchnorm else nn.Identity()
        self.conv2 = conv(c_out, c_out, 3, padding=1, bias=not batchnorm)
        self.bn2 = norm(c_out) if batchnorm else nn.Identity()
        self.nd, self.stride, self.extra = nd, stride, c_out - c_in

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # Option A: identity, subsampled by the stride, with zero channels appended: no parameters.
        if self.stride == 1 and self.extra == 0:
            return x
        x = x[(..., *[slice(None, None, self.stride)] * self.nd)]
        half = self.extra // 2
        return F.pad(x, (0, 0) * self.nd + (half, self.extra - half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """ResNet-20 for CIFAR (He et al. 2016, section 4.2); Conv1d analogue for signals.

    3x3 conv 16 - 3 stages of 3 basic blocks (16, 32, 64 channels; stride 2 at the start of
    stages 2 and 3) - global average pool - FC.  Shortcuts are option A (parameter-free: strided
    identity with zero-padded channels), as in the paper's CIFAR experiments, giving 269,722
    parameters for 3 channels and 10 classes (the paper's 0.27M).  Conv weights are He-normal
    (He et al. 2015).  ``batchnorm=False`` replaces BatchNorm by the identity and gives the
    convolutions biases.

    References
    ----------
    1. K. He, X. Zhang, S. Ren, J. Sun, "Deep residual learning for image recognition", CVPR 2016.
    """

    def __init__(
        self, in_channels: int, nd: int, n_outputs: int, *, batchnorm: bool = True
    ) -> None:
        super().__init__()
        conv, _, adaptive, norm = _layers(nd)
        self.stem = nn.Sequential(
            conv(in_channels, 16, 3, padding=1, bias=not batchnorm),
            norm(16) if batchnorm else nn.Identity(),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        c_in = 16
        for c_out, first_stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(
                    _BasicBlock(nd, c_in, c_out, first_stride if i == 0 else 1, batchnorm)
                )
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(adaptive(1), nn.Flatten())
        self.fc = nn.Linear(64, n_outputs)
        for module in self.modules():
            if isinstance(module, nn.Conv1d | nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.blocks(self.stem(x))))


def _as_sequence(x: torch.Tensor, kind: str, patch_size: int = 1) -> torch.Tensor:
    """``(B, steps, features)`` view of a batch: image rows, or signal patches of ``patch_size``."""
    if kind == "image":  # (B, C, H, W) -> (B, H, C*W)
        b, c, h, w = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, h, c * w)
    b, c, length = x.shape  # signal: zero-pad to a multiple of patch_size
    pad = -length % patch_size
    if pad:
        x = F.pad(x, (0, pad))
    x = x.reshape(b, c, -1, patch_size)
    return x.permute(0, 2, 1, 3).reshape(b, x.shape[2], c * patch_size)


def _sequence_shape(spec: DataSpec, patch_size: int = 1) -> tuple[int, int]:
    """(steps, features per step) that :func:`_as_sequence` produces for ``spec``."""
    if spec.kind == "image":
        c, h, w = spec.input_shape
        return h, c * w
    c, length = spec.input_shape
    return math.ceil(length / patch_size), c * patch_size


class _LSTMLayer(nn.Module):
    """One batch-first LSTM layer written with elementwise ops (gates i, f, g, o as in nn.LSTM).

    ``nn.LSTM`` dispatches to oneDNN on CPU (no forward-mode AD, so no ``torch.func.jvp``) and to
    cuDNN on GPU (no double backward); this loop has both everywhere.  Weights are initialised
    U(-1/sqrt(hidden), 1/sqrt(hidden)) like ``nn.LSTM``, with one bias vector instead of its two
    redundant ones.
    """

    def __init__(self, n_inputs: int, hidden: int) -> None:
        super().__init__()
        self.input = nn.Linear(n_inputs, 4 * hidden)
        self.recurrent = nn.Linear(hidden, 4 * hidden, bias=False)
        bound = hidden**-0.5
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.input(x)  # (B, T, 4 hidden): all input contributions at once
        h = c = x.new_zeros(x.shape[0], self.recurrent.in_features)
        outputs = []
        for t in range(x.shape[1]):
            i, f, g, o = (projected[:, t] + self.recurrent(h)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1)


class LSTMModel(nn.Module):
    """LSTM classifier or language model.

    Images are read row by row, signals one scalar per step; the last hidden state of the top
    layer feeds a linear classifier.  Tokens go through an embedding and every position gets
    next-token logits ``(B, L, V)`` (an LSTM is causal by construction).
    """

    def __init__(
        self,
        spec: DataSpec,
        *,
        hidden: int = 64,
        num_layers: int = 1,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.kind = spec.kind
        if spec.kind == "tokens":
            embedding_dim = embedding_dim or hidden
            self.embed = nn.Embedding(spec.n_outputs, embedding_dim)
            n_features = embedding_dim
        else:
            n_features = _sequence_shape(spec)[1]
        self.lstm = nn.Sequential(
            *(_LSTMLayer(n_features if i == 0 else hidden, hidden) for i in range(num_layers))
        )
        self.head = nn.Linear(hidden, spec.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "tokens":
            return self.head(self.lstm(self.embed(x)))
        return self.head(self.lstm(_as_sequence(x, self.kind))[:, -1])


class _SelfAttention(nn.Module):
    """Multi-head self-attention written out, so that it has a double backward on every device."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise SgnMemoryError(f"d_model={d_model} is not divisible by n_heads={n_heads}.")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(x).reshape(b, length, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if causal:
            future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        weights = self.dropout(scores.softmax(dim=-1))
        return self.out((weights @ v).transpose(1, 2).reshape(b, length, d))


class _EncoderLayer(nn.Module):
    """Pre-norm Transformer encoder layer: ``x + attn(LN(x))``, then ``x + MLP(LN(x))`` (GELU)."""

    def __init__(self, d_model: int, n_heads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = _SelfAttention(d_model, n_heads, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, dim_feedforward),
            nn.GELU(),
            nn.Linear(dim_feedforward, d_model),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), causal))
        return x + self.dropout(self.mlp(self.norm2(x)))


class TransformerModel(nn.Module):
    """Small pre-norm Transformer encoder with learned positional embeddings.

    Tokens: embedding, causal self-attention, per-position next-token logits ``(B, L, V)``.
    Images (rows as tokens) and signals (patches of ``patch_size`` samples as tokens): linear
    projection, bidirectional attention, mean over positions, linear classifier.  Defaults:
    ``d_model=64``, 2 layers, 4 heads, feed-forward width ``4 * d_model``, dropout 0.
    """

    def __init__(
        self,
        spec: DataSpec,
        *,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        dim_feedforward: int | None = None,
        dropout: float = 0.0,
        patch_size: int = 4,
    ) -> None:
        super().__init__()
        self.kind, self.patch_size = spec.kind, patch_size
        if spec.kind == "tokens":
            max_len = spec.input_shape[0]
            self.embed: nn.Module = nn.Embedding(spec.n_outputs, d_model)
        else:
            max_len, n_features = _sequence_shape(spec, patch_size)
            self.embed = nn.Linear(n_features, d_model)
        self.position = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        ff = dim_feedforward or 4 * d_model
        self.layers = nn.ModuleList(
            _EncoderLayer(d_model, n_heads, ff, dropout) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, spec.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        causal = self.kind == "tokens"
        if not causal:
            x = _as_sequence(x, self.kind, self.patch_size)
        length = x.shape[1]
        if length > len(self.position):
            raise SgnMemoryError(
                f"sequence of {length} positions is longer than the {len(self.position)} "
                "positional embeddings the model was built with."
            )
        h = self.embed(x) + self.position[:length]
        for layer in self.layers:
            h = layer(h, causal)
        h = self.norm(h)
        return self.head(h if causal else h.mean(dim=1))


def _build_mlp(spec: DataSpec, **kwargs: Any) -> nn.Module:
    return mlp(math.prod(spec.input_shape), spec.n_outputs, **kwargs)


def _build_lenet5(spec: DataSpec) -> nn.Module:
    return LeNet5(spec.input_shape[0], spec.input_shape[1:], spec.n_outputs)


def _build_vgg_small(spec: DataSpec, **kwargs: Any) -> nn.Module:
    return VGGSmall(spec.input_shape[0], len(spec.input_shape) - 1, spec.n_outputs, **kwargs)


def _build_resnet20(spec: DataSpec, **kwargs: Any) -> nn.Module:
    return ResNet20(spec.input_shape[0], len(spec.input_shape) - 1, spec.n_outputs, **kwargs)


_SIGNALS = ("image", "signal")

#: name -> (builder(spec, **kwargs), kinds of data it accepts)
MODELS: dict[str, tuple[Callable[..., nn.Module], tuple[str, ...]]] = {
    "mlp": (_build_mlp, (*_SIGNALS, "regression")),
    "lenet5": (_build_lenet5, _SIGNALS),
    "vgg_small": (_build_vgg_small, _SIGNALS),
    "resnet20": (_build_resnet20, _SIGNALS),
    "lstm": (LSTMModel, (*_SIGNALS, "tokens")),
    "transformer": (TransformerModel, (*_SIGNALS, "tokens")),
}


#: name -> the callable that receives the model's options (its keyword-only parameters)
_OPTIONS_OF: dict[str, Callable[..., Any]] = {
    "mlp": mlp,
    "lenet5": LeNet5,
    "vgg_small": VGGSmall,
    "resnet20": ResNet20,
    "lstm": LSTMModel,
    "transformer": TransformerModel,
}


def check_model(name: str, kind: str, **kwargs: Any) -> None:
    """Check, without building it, that :func:`build_model` takes this name, data of this kind
    (:attr:`DataSpec.kind`) and these options (names and types; ranges are checked when the
    model is built).

    Raises
    ------
    SgnMemoryError
        (a ValueError) naming the unknown model (and the known ones), the models that accept
        the kind of data, or the option.
    """
    from ._options import check_options

    if name not in MODELS:
        raise SgnMemoryError(f"model {name!r} is not one of {', '.join(MODELS)}.")
    if kind not in MODELS[name][1]:
        accepting = [model for model, (_, ok) in MODELS.items() if kind in ok]
        raise SgnMemoryError(
            f"model {name!r} does not accept {kind} data; models that do: {', '.join(accepting)}."
        )
    check_options(
        _OPTIONS_OF[name], kwargs, key="model_kwargs", owner=f"model {name!r}", keyword_only=True
    )


def build_model(name: str, spec: DataSpec, *, seed: int = 0, **kwargs: Any) -> nn.Module:
    """Build a freshly initialised model for a dataset.

    Parameters are drawn under ``torch.random.fork_rng`` seeded with ``seed``: the same seed gives
    identical parameters and the global torch RNG state is left unchanged.

    Parameters
    ----------
    name : {"mlp", "lenet5", "vgg_small", "resnet20", "lstm", "transformer"}
        Architecture; regression data take only ``"mlp"``, token data only ``"lstm"`` and
        ``"transformer"``.
    spec : DataSpec
        Dataset: fixes the input shape, the number of outputs and the kind of head.
    seed : int
        Seed of the initialisation.
    **kwargs
        Architecture options: ``mlp(depth=3, width=100)``; ``vgg_small(batchnorm=False)``;
        ``resnet20(batchnorm=True)``; ``lstm(hidden=64, num_layers=1, embedding_dim=hidden)``;
        ``transformer(d_model=64, n_layers=2, n_heads=4, dim_feedforward=4*d_model, dropout=0,
        patch_size=4)``; ``lenet5`` takes none.

    Returns
    -------
    torch.nn.Module
        In training mode, on the CPU, float32.

    Examples
    --------
    >>> from experiments.data import digits
    >>> model = build_model("lenet5", digits(seed=0), seed=0)
    >>> count_parameters(model)
    61706
    """
    if name not in MODELS:
        raise SgnMemoryError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}.")
    builder, kinds = MODELS[name]
    if spec.kind not in kinds:
        accepting = [model for model, (_, ok) in MODELS.items() if spec.kind in ok]
        raise SgnMemoryError(
            f"model {name!r} does not accept {spec.kind} data; models that do: "
            f"{', '.join(accepting)}."
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(spec, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalar parameters (those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
