"""Part 3 (``saddle``): SGD, SAM and StableSAM started next to the strict saddle w = 0 of a
two-layer network."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from sgn_memory.errors import SgnMemoryError
from sgn_memory.sde import Interval

from ..data import DataSpec, load_dataset
from ..optim import make_optimizer
from ..runner import _to
from ..sharpness import top_hessian_eigenvalue
from ._common import (
    _escape,
    _escape_columns,
    _full_data,
    _seed,
    _times_rows,
    _train_loss,
    loss_paths,
)
from ._config import _ACTIVATIONS

#: Largest network whose Hessian is formed densely at the saddle.
_DENSE_HESSIAN_MAX = 2000


# ============================================================================ part 3: a saddle
def saddle_network(data: DataSpec, width: int, activation: str = "linear") -> nn.Sequential:
    """Two-layer network without biases, all weights 0: w = 0 is a critical point.

    ``Linear(d, width) -> [Tanh] -> Linear(width, m)``.  At w = 0 every per-sample gradient
    vanishes (each layer's gradient carries the other layer's weights), and so does the noise.
    For the mean squared error the Hessian there has zero diagonal blocks and off-diagonal blocks
    built from the input-output cross-covariance C = E[y x^T]: its eigenvalues are
    +-(2 / m) s_i, s_i the singular values of C (each ``width`` times), and zeros, so w = 0 is a
    strict saddle whenever C != 0 (tanh has the same Hessian there: tanh'(0) = 1, tanh''(0) = 0).

    Parameters
    ----------
    data : DataSpec
        Regression data (``kind == "regression"``): fixes d and m.
    width : int
    activation : {"linear", "tanh"}
    """
    if data.kind != "regression":
        raise SgnMemoryError(f"the saddle network needs regression data; got {data.kind!r}.")
    if activation not in _ACTIVATIONS:
        raise SgnMemoryError(f"activation must be one of {_ACTIVATIONS}; got {activation!r}.")
    d = math.prod(data.input_shape)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(d, width, bias=False)]
    if activation == "tanh":
        layers.append(nn.Tanh())
    layers.append(nn.Linear(width, data.n_outputs, bias=False))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    return net


def dense_hessian_eigenvalues(model: nn.Module, loss_fn, data: DataSpec) -> np.ndarray:
    """All eigenvalues (ascending) of the Hessian of the full-data loss at the current weights.

    Formed densely (reverse-over-reverse, float64 eigensolver): for networks of at most
    2000 parameters.
    """
    from torch.func import functional_call

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p.detach() for n, p in model.named_parameters() if p.requires_grad]
    sizes = [p.numel() for p in params]
    if sum(sizes) > _DENSE_HESSIAN_MAX:
        raise SgnMemoryError(
            f"a dense Hessian of {sum(sizes)} parameters is too large (at most "
            f"{_DENSE_HESSIAN_MAX}); use experiments.sharpness.top_hessian_eigenvalue."
        )
    x, y = _full_data(data)[0]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(flat, sizes)
        weights = {n: v.view_as(p) for n, v, p in zip(names, pieces, params, strict=True)}
        return loss_fn(functional_call(model, weights, (x,)), y)

    flat = torch.cat([p.reshape(-1) for p in params])
    hess = torch.autograd.functional.hessian(loss_of, flat)
    hess = 0.5 * (hess + hess.T)
    return np.linalg.eigvalsh(hess.detach().cpu().double().numpy())


def _run_saddle(
    settings: dict, out: Path, log: Callable[[str], None], verbose: bool, device
) -> dict:
    s = settings["saddle"]
    seed = settings["seed"]
    data = _to(load_dataset(s["dataset"], **{"seed": seed, **s["dataset_kwargs"]}), device)
    loss_fn = data.loss_fn()
    saddle = saddle_network(data, s["width"], s["activation"]).to(device)
    loss_saddle = _train_loss(saddle, data, loss_fn)
    eig = dense_hessian_eigenvalues(saddle, loss_fn, data)
    lanczos = top_hessian_eigenvalue(
        saddle,
        loss_fn,
        _full_data(data),
        max_iter=s["hessian_iters"],
        tol=1e-6,
        which="LA",
        seed=seed,
    )
    scale = max(abs(eig[0]), abs(eig[-1]), 1e-30)
    hess = {
        "loss_saddle": loss_saddle,
        "hessian_lambda_min": float(eig[0]),
        "hessian_lambda_max": float(eig[-1]),
        "hessian_n_negative": int((eig < -1e-6 * scale).sum()),
        "hessian_n_params": int(eig.size),
        "lanczos_lambda_max": lanczos.eigenvalue,
        "lanczos_min_ritz": float(lanczos.ritz_values[0]),
    }
    log(
        f"  saddle w = 0: loss {loss_saddle:.5g}, Hessian eigenvalues in [{eig[0]:.4g}, "
        f"{eig[-1]:.4g}] ({hess['hessian_n_negative']} of {eig.size} negative); Lanczos "
        f"{lanczos.eigenvalue:.4g}, smallest Ritz value {hess['lanczos_min_ritz']:.4g}"
    )
    start = copy.deepcopy(saddle)
    gen = torch.Generator().manual_seed(_seed(seed, 5))
    with torch.no_grad():
        for p in start.parameters():
            p.copy_(s["perturbation"] * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    start_loss = _train_loss(start, data, loss_fn)
    domain = Interval(low=loss_saddle - s["delta"])
    run_seeds = [_seed(seed, 6, r) for r in range(s["runs"])]
    rows, times = [], []
    configs = [
        (opt, mom, b, rho if opt != "sgd" else math.nan)
        for opt in s["optimizers"]
        for rho in (s["rhos"] if opt != "sgd" else [math.nan])
        for mom in s["momenta"]
        for b in s["batch_sizes"]
    ]
    for opt, mom, b, rho in configs:
        t0 = time.perf_counter()
        make = _make_opt(opt, lr=s["lr"], momentum=mom, rho=0.0 if opt == "sgd" else rho)
        paths = loss_paths(
            start,
            loss_fn,
            data,
            optimizer=make,
            batch_size=b,
            runs=s["runs"],
            max_steps=s["max_steps"],
            check_every=s["check_every"],
            domain=domain,
            seeds=run_seeds,
        )
        esc = _escape(paths, domain, s["check_every"], settings, seed)
        keys = {"optimizer": opt, "momentum": mom, "batch_size": b, "rho": rho}
        rows.append(
            {
                **keys,
                "lr": s["lr"],
                "activation": s["activation"],
                "width": s["width"],
                "perturbation": s["perturbation"],
                "start_loss": start_loss,
                **hess,
                "delta": s["delta"],
                "check_every": s["check_every"],
                **_escape_columns(esc),
            }
        )
        times += _times_rows(esc, keys)
        if verbose:
            log(
                f"    {opt:9s} momentum {mom:g} B={b} rho={rho:g}: mean {esc.mean:.4g}"
                f"{' (restricted)' if esc.mean_restricted else ''}, censored "
                f"{esc.censored_fraction:.0%} ({time.perf_counter() - t0:.1f} s)"
            )
    return {"table": pd.DataFrame(rows), "times": pd.DataFrame(times)}


def _make_opt(name: str, *, lr: float, momentum: float, rho: float) -> Callable:
    """``params -> optimizer`` for the escape runs (SAM-type: base SGD, with momentum if > 0)."""
    key = name.lower()
    if key in ("sam", "stablesam"):
        base = "momentum" if momentum > 0 else "sgd"
        return lambda params: make_optimizer(
            key, params, lr=lr, momentum=momentum, rho=rho, base=base
        )
    if key == "sgd" and momentum > 0:
        key = "momentum"
    return lambda params: make_optimizer(key, params, lr=lr, momentum=momentum, rho=rho)
