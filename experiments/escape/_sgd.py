"""Part 2 (``sgd``): real SGD at a sharp and a flat minimum; the H of its noise and its escape
time from each."""

from __future__ import annotations

import copy
import functools
import itertools
import math
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

import sgn_memory as sgn
from sgn_memory.errors import DegenerateSeriesWarning, SgnMemoryError
from sgn_memory.sde import Interval

from ..data import DataSpec, full_batches, load_dataset
from ..models import build_model, count_parameters
from ..optim import make_optimizer, training_step
from ..runner import _to, evaluate
from ..sharpness import top_hessian_eigenvalue
from ._common import (
    _batches,
    _escape,
    _escape_columns,
    _full_data,
    _grad_norm,
    _seed,
    _times_rows,
    _train_loss,
    loss_paths,
)
from ._config import _MIN_NOISE_ROWS


# ============================================================================ part 2: real SGD
def find_minimum(
    model: nn.Module,
    data: DataSpec,
    loss_fn,
    *,
    batch_size: int,
    lr: float,
    steps: int,
    polish_lr: float,
    polish_steps: int,
    lbfgs_iters: int,
    seed: int,
) -> dict[str, Any]:
    """Train ``model`` in place into a minimum: SGD or GD, then GD polish, then L-BFGS.

    Parameters
    ----------
    model : torch.nn.Module
        Changed in place.
    data : DataSpec
    loss_fn : callable
    batch_size : int
        Minibatch size of the first phase; 0 (or >= the training size): full-batch gradient
        descent.
    lr, steps : float, int
        Step size and length of the first phase (plain SGD).
    polish_lr, polish_steps : float, int
        Full-batch gradient descent after it (brings the iterate to the bottom of the basin the
        first phase left it in).
    lbfgs_iters : int
        Then at most this many L-BFGS iterations with a strong-Wolfe line search on the
        full-data loss (a descent method: it stays in the basin; reverted if it fails).
    seed : int
        Seed of the first phase's minibatch stream.

    Returns
    -------
    dict
        ``loss`` (full data), ``grad_norm`` (Euclidean norm of the full gradient; for a ReLU
        network the minimum often sits on a kink, where it cannot vanish), ``trained_loss``
        (after the first phase) and ``diverged`` (True if the first phase blew up; the model is
        then left as it was).
    """
    x_all, y_all = _full_data(data)[0]
    full = batch_size == 0 or batch_size >= data.n_train
    opt = make_optimizer("sgd", model.parameters(), lr=lr)
    batches = itertools.repeat((x_all, y_all)) if full else _batches(data, batch_size, seed)
    saved = copy.deepcopy(model.state_dict())
    for _ in range(steps):
        x, y = next(batches)
        if not math.isfinite(training_step(model, loss_fn, opt, x, y)):
            model.load_state_dict(saved)
            return {"diverged": True}
    trained = _train_loss(model, data, loss_fn)
    polish = make_optimizer("sgd", model.parameters(), lr=polish_lr)
    for _ in range(polish_steps):
        training_step(model, loss_fn, polish, x_all, y_all)
    before = copy.deepcopy(model.state_dict())
    before_loss = _train_loss(model, data, loss_fn)
    if lbfgs_iters > 0:
        lbfgs = torch.optim.LBFGS(
            model.parameters(),
            lr=1.0,
            max_iter=lbfgs_iters,
            max_eval=2 * lbfgs_iters,
            tolerance_grad=1e-10,
            tolerance_change=0.0,
            history_size=50,
            line_search_fn="strong_wolfe",
        )

        def closure():
            lbfgs.zero_grad()
            loss = loss_fn(model(x_all), y_all)
            loss.backward()
            return loss

        lbfgs.step(closure)
        model.zero_grad(set_to_none=True)
        after = _train_loss(model, data, loss_fn)
        if not (math.isfinite(after) and after <= before_loss):
            model.load_state_dict(before)
    return {
        "diverged": False,
        "trained_loss": trained,
        "loss": _train_loss(model, data, loss_fn),
        "grad_norm": _grad_norm(model, data, loss_fn),
    }


def _hurst_summary(noise: np.ndarray, n_surrogates: int, seed: int) -> dict[str, Any]:
    """Median over series of Whittle and DFA H, of their shuffled baselines and of the excess.

    ``noise`` is (series, time).  Series with a non-finite value or no variation (dead units)
    are dropped; their number is reported.
    """
    keep = np.isfinite(noise).all(axis=1)
    keep[keep] = noise[keep].std(axis=1) > 0
    x = noise[keep]
    out: dict[str, Any] = {"n_series": int(keep.sum()), "n_series_dropped": int((~keep).sum())}
    for name, estimator in (("whittle", sgn.hurst_whittle), ("dfa", sgn.hurst_dfa)):
        if x.shape[0] == 0 or x.shape[1] < _MIN_NOISE_ROWS:
            out.update(
                {
                    f"hurst_{name}": math.nan,
                    f"hurst_{name}_shuffled": math.nan,
                    f"hurst_{name}_excess": math.nan,
                }
            )
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateSeriesWarning)
            sb = sgn.shuffled_baseline(x, estimator, n_surrogates=n_surrogates, rng=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
            out[f"hurst_{name}"] = float(np.nanmedian(sb.estimate.hurst))
            out[f"hurst_{name}_shuffled"] = float(np.nanmedian(sb.baseline))
            out[f"hurst_{name}_excess"] = float(np.nanmedian(sb.excess))
    return out


def _noise_run(
    start: nn.Module,
    data: DataSpec,
    loss_fn,
    *,
    optimizer: Callable,
    batch_size: int,
    steps: int,
    coordinates: int,
    store: Path,
    domain: Interval,
    check_every: int,
    n_surrogates: int,
    seed: int,
    attrs: dict,
) -> dict[str, Any]:
    """One run from ``start`` with the NoiseCollector attached; H of its noise."""
    from sgn_memory.collect import NoiseCollector
    from sgn_memory.store import NoiseStore

    model = copy.deepcopy(start)
    opt = optimizer(model.parameters())
    k = min(int(coordinates), count_parameters(model))
    collector = NoiseCollector(
        model,
        opt,
        store,
        coordinates=k,
        reference="exact",
        reference_data=list(full_batches(data, 1024)),
        loss_fn=loss_fn,
        batch_size=batch_size,
        seed=seed,
        attrs=attrs,
        overwrite=True,
    )
    batches = _batches(data, batch_size, seed)
    inside = checks = 0
    diverged_at = None
    try:
        for step in range(1, steps + 1):
            x, y = next(batches)
            loss = training_step(model, loss_fn, opt, x, y, on_loss=collector.observe_loss)
            if not math.isfinite(loss):
                diverged_at = step
                break
            if step % check_every == 0:
                checks += 1
                inside += bool(domain.inside(np.array([_train_loss(model, data, loss_fn)]), 0)[0])
    finally:
        collector.close()
    if collector.error is not None:
        raise RuntimeError(f"the NoiseCollector stopped recording: {collector.error}")
    noise = NoiseStore.open(store).read_noise().T.astype(np.float64)  # (coordinates, steps)
    return {
        "noise_steps": int(noise.shape[1]),
        "noise_coordinates": k,
        "noise_in_basin": inside / checks if checks else math.nan,
        "noise_diverged_at": diverged_at,
        **_hurst_summary(noise, n_surrogates, seed),
    }


def _run_sgd(settings: dict, out: Path, log: Callable[[str], None], verbose: bool, device) -> dict:
    s = settings["sgd"]
    seed = settings["seed"]
    kwargs = {"seed": seed, **s["dataset_kwargs"]}
    data = _to(load_dataset(s["dataset"], **kwargs), device)
    loss_fn = data.loss_fn()
    init = build_model(s["model"], data, seed=seed, **s["model_kwargs"]).to(device)
    noise_root = out / "noise"
    for old in noise_root.glob("sgd-*") if noise_root.exists() else ():
        shutil.rmtree(old)  # the part is redone: stores of other settings go
    optimizer_name = s["optimizer"]  # make_optimizer's names: "sgd" is plain SGD
    minima = {}
    for i, name in enumerate(("sharp", "flat")):
        how = s[name]
        model = copy.deepcopy(init)
        t0 = time.perf_counter()
        info = find_minimum(
            model,
            data,
            loss_fn,
            batch_size=how["batch_size"],
            lr=how["lr"],
            steps=how["steps"],
            polish_lr=s["polish_lr"],
            polish_steps=s["polish_steps"],
            lbfgs_iters=s["lbfgs_iters"],
            seed=_seed(seed, 2, i),
        )
        if info["diverged"]:
            raise SgnMemoryError(
                f"training towards the {name} minimum diverged (batch_size {how['batch_size']}, "
                f"lr {how['lr']}); lower [escape.sgd.{name}].lr."
            )
        sharp = top_hessian_eigenvalue(
            model, loss_fn, _full_data(data), max_iter=s["sharpness_iters"], tol=1e-4, seed=seed
        )
        test = evaluate(model, data, loss_fn, split="test")["test_loss"]
        b = how["batch_size"] or data.n_train
        minima[name] = {
            "model": model,
            "minimum": name,
            "found_by": (
                f"{'GD' if b >= data.n_train else f'SGD B={b}'} lr={how['lr']:g} x{how['steps']}"
                f" + GD lr={s['polish_lr']:g} x{s['polish_steps']} + L-BFGS"
            ),
            "loss_min": info["loss"],
            "test_loss_min": test,
            "grad_norm_min": info["grad_norm"],
            "lambda_max": sharp.eigenvalue,
            "lambda_max_converged": bool(sharp.converged),
        }
        log(
            f"  {name} minimum: loss {info['loss']:.5g}, |grad| {info['grad_norm']:.2g}, "
            f"lambda_max {sharp.eigenvalue:.4g} ({time.perf_counter() - t0:.1f} s)"
        )
    rows, times = [], []
    run_seeds = [_seed(seed, 3, r) for r in range(s["runs"])]
    for name, m in minima.items():
        domain = Interval(high=m["loss_min"] + s["delta"])
        for b, lr in itertools.product(s["batch_sizes"], s["lrs"]):
            t0 = time.perf_counter()
            opt = functools.partial(
                make_optimizer, optimizer_name, lr=lr, momentum=s["momentum"], rho=s["rho"]
            )
            cell = f"sgd-{name}-b{b}-lr{lr:g}"
            noise = _noise_run(
                m["model"],
                data,
                loss_fn,
                optimizer=opt,
                batch_size=b,
                steps=s["noise_steps"],
                coordinates=s["coordinates"],
                store=noise_root / cell,
                domain=domain,
                check_every=s["check_every"],
                n_surrogates=s["n_surrogates"],
                seed=_seed(seed, 4),
                attrs={"experiment": "escape", "minimum": name, "lr": lr},
            )
            paths = loss_paths(
                m["model"],
                loss_fn,
                data,
                optimizer=opt,
                batch_size=b,
                runs=s["runs"],
                max_steps=s["max_steps"],
                check_every=s["check_every"],
                domain=domain,
                seeds=run_seeds,
            )
            esc = _escape(paths, domain, s["check_every"], settings, seed)
            keys = {"minimum": name, "batch_size": b, "lr": lr}
            rows.append(
                {
                    **keys,
                    **{k: v for k, v in m.items() if k not in ("model", "minimum")},
                    "optimizer": optimizer_name,
                    "lr_lambda": lr * m["lambda_max"],
                    "delta": s["delta"],
                    "check_every": s["check_every"],
                    **noise,
                    **_escape_columns(esc),
                }
            )
            times += _times_rows(esc, keys)
            if verbose:
                log(
                    f"    {cell}: H whittle {noise['hurst_whittle']:.3f} (shuffled "
                    f"{noise['hurst_whittle_shuffled']:.3f}), escape mean {esc.mean:.4g}"
                    f"{' (restricted)' if esc.mean_restricted else ''}, censored "
                    f"{esc.censored_fraction:.0%} ({time.perf_counter() - t0:.1f} s)"
                )
    return {"table": pd.DataFrame(rows), "times": pd.DataFrame(times)}
