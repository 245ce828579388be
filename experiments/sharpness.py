"""Sharpness of the training loss: the top Hessian eigenvalue and the Hessian trace.

Both work matrix-free with Hessian-vector products by double backward (Pearlmutter's trick [1]_)
over the full loss L(w) = (1/N) sum_i l_i(w) of the given batches, and leave the model exactly as
they found it: parameters, ``.grad`` (only ``torch.autograd.grad`` is used), BatchNorm running
statistics, every module's training flag and the global RNG state.

References
----------
.. [1] B. A. Pearlmutter, "Fast Exact Multiplication by the Hessian", Neural Computation 6(1),
       147-160, 1994.
.. [2] C. Lanczos, "An Iteration Method for the Solution of the Eigenvalue Problem of Linear
       Differential and Integral Operators", J. Res. Natl. Bur. Stand. 45, 255-282, 1950.
.. [3] G. H. Golub and C. F. Van Loan, "Matrix Computations", 4th ed., Johns Hopkins, 2013,
       sections 7.3 (power method) and 10.1-10.3 (Lanczos, full reorthogonalisation).
.. [4] M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for
       Laplacian smoothing splines", Commun. Stat. Simul. Comput. 18(3), 1059-1076, 1989.
.. [5] Z. Yao, A. Gholami, K. Keutzer and M. W. Mahoney, "PyHessian: Neural Networks Through
       the Lens of the Hessian", IEEE BigData 2020, arXiv:1912.07145.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from sgn_memory.collect._reference import _untouched
from sgn_memory.errors import SgnMemoryError

__all__ = ["Sharpness", "TraceEstimate", "hessian_trace", "top_hessian_eigenvalue"]

_METHODS = ("lanczos", "power")
_MODES = ("eval", "train")


@dataclass(frozen=True)
class Sharpness:
    """Top Hessian eigenvalue of the loss, with how it was obtained.

    Attributes
    ----------
    eigenvalue : float
        The estimate (Ritz value for Lanczos, Rayleigh quotient for power iteration).
    method : {"lanczos", "power"}
    which : {"LA", "LM"}
        Largest algebraic or largest in magnitude.
    n_iter : int
        Hessian-vector products used (each one forward and double-backward pass over the data).
    converged : bool
        Whether the relative change of the estimate fell below ``tol`` (or Lanczos found an
        invariant subspace, where its Ritz values are exact) within ``max_iter`` products.
    rel_change : float
        |theta_k - theta_{k-1}| / |theta_k| at the last iteration (inf after one product).
    residual : float
        Relative residual ||H v - theta v|| / |theta| of the returned eigenpair (Lanczos: the Ritz
        residual beta_k |s_k|, free; power: from the last product).  Bounds the distance of theta
        to *some* eigenvalue: |lambda - theta| <= residual |theta| [3]_.
    n_samples : int
        Samples N over which the loss is averaged.
    mode : {"eval", "train"}
        Module mode the Hessian was taken in.
    ritz_values : numpy.ndarray
        Lanczos: every Ritz value of the last tridiagonal matrix, ascending (the smallest one
        estimates the most negative curvature); power: the single estimate.
    """

    eigenvalue: float
    method: str
    which: str
    n_iter: int
    converged: bool
    rel_change: float
    residual: float
    n_samples: int
    mode: str
    ritz_values: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson estimate of tr(H).

    Attributes
    ----------
    trace : float
        Mean of z^T H z over the probe vectors.
    stderr : float
        Standard error of that mean (sample standard deviation / sqrt(n_vectors); NaN for one).
    n_vectors : int
        Rademacher probe vectors used (one Hessian-vector product each).
    n_samples : int
        Samples N over which the loss is averaged.
    mode : {"eval", "train"}
    """

    trace: float
    stderr: float
    n_vectors: int
    n_samples: int
    mode: str


def top_hessian_eigenvalue(
    model: torch.nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    batches: Iterable,
    *,
    max_iter: int = 100,
    tol: float = 1e-3,
    method: Literal["lanczos", "power"] = "lanczos",
    which: Literal["LA", "LM"] | None = None,
    mode: Literal["eval", "train"] = "eval",
    seed: int = 0,
) -> Sharpness:
    """Largest eigenvalue of the Hessian of the mean loss over ``batches``.

    Parameters
    ----------
    model : torch.nn.Module
        Its parameters with ``requires_grad`` span the Hessian.
    loss_fn : callable (outputs, targets) -> mean loss of the batch
    batches : re-iterable of (inputs, targets)
        A list or DataLoader; iterated once per Hessian-vector product.  The batch losses are
        weighted by batch size, so L is the mean over all N samples whatever the batching.
    max_iter : int
        Most Hessian-vector products (Lanczos: also the Krylov dimension, capped at the number
        of parameters P).
    tol : float
        Stop when the estimate changes by less than ``tol`` relative between two products.
    method : {"lanczos", "power"}
        ``"lanczos"``: k-step Lanczos [2]_ with full reorthogonalisation (twice, against every
        earlier basis vector), the estimate being the top Ritz value of the k x k tridiagonal
        matrix.  ``"power"``: power iteration on H with the Rayleigh quotient as the estimate
        [3]_; it converges to the eigenvalue of largest magnitude, at rate |lambda_2/lambda_1|
        per product, so needs a gap Lanczos does not.
    which : {"LA", "LM"}, optional
        ``"LA"``: largest algebraic (default for Lanczos); ``"LM"``: largest magnitude, signed
        (the only choice for power iteration, and its default).  They differ only when the most
        negative eigenvalue exceeds the largest one in magnitude, i.e. at a strongly indefinite
        point such as a saddle; at a minimum H is positive semi-definite and both agree.  The
        top algebraic eigenvalue is negative only where H is negative definite.
    mode : {"eval", "train"}
        Module mode during the products.  ``"eval"`` (default): BatchNorm uses its running
        statistics and dropout is off, so H is that of a deterministic function of w.
        ``"train"``: batch statistics and active dropout, as the optimizer sees the loss; the
        RNG is reseeded with ``seed`` before every pass over the data, so each product sees the
        same dropout masks (a fixed operator).  Running statistics are restored afterwards either
        way, and every module's own training flag is put back.
    seed : int
        Seed of the Gaussian start vector (drawn on the CPU by a private ``torch.Generator``,
        identical on every device) and of the RNG inside the products.

    Returns
    -------
    Sharpness

    Notes
    -----
    Hv = d/dw <grad L(w), v> by two calls of ``torch.autograd.grad`` per batch [1]_.  Vectors
    live as one flat tensor in the parameters' dtype on their device; dot products are
    accumulated in float64.  Memory: Lanczos keeps its basis, min(max_iter, P) + 1 vectors of
    P numbers; power iteration keeps three.  In float32 the products carry ~1e-7 relative
    rounding noise, so ``tol`` below ~1e-6 cannot be met there.

    PyHessian [5]_ (``hessian(model, criterion, dataloader=...).eigenvalues(maxIter=100,
    tol=1e-3)``, model in eval mode) runs the power method with the same stopping rule:
    ``method="power", tol=1e-3, max_iter=100`` here is the same estimator (its start vector
    is Rademacher, ours Gaussian).

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    >>> x, y = torch.randn(64, 4), torch.randn(64, 1)
    >>> s = top_hessian_eigenvalue(model, torch.nn.functional.mse_loss, [(x, y)], tol=1e-4)
    >>> s.converged and s.eigenvalue > 0
    True
    """
    if method not in _METHODS:
        raise SgnMemoryError(f"method must be one of {_METHODS}; got {method!r}.")
    which = which or ("LA" if method == "lanczos" else "LM")
    if which not in ("LA", "LM"):
        raise SgnMemoryError(f"which must be 'LA' or 'LM'; got {which!r}.")
    if method == "power" and which != "LM":
        raise SgnMemoryError(
            "power iteration finds the eigenvalue of largest magnitude; use which='LM' or "
            "method='lanczos' for the largest algebraic one."
        )
    if int(max_iter) < 1 or not tol > 0:
        raise SgnMemoryError(f"max_iter must be >= 1 and tol > 0; got {max_iter} and {tol}.")
    hessian = _Hessian(model, loss_fn, batches, mode, seed)
    v0 = hessian.start_vector(seed, rademacher=False)
    with hessian.untouched():
        if method == "lanczos":
            out = _lanczos(hessian.matvec, v0, int(max_iter), tol, which)
        else:
            out = _power(hessian.matvec, v0, int(max_iter), tol)
    theta, n_iter, converged, rel_change, residual, ritz = out
    return Sharpness(
        eigenvalue=float(theta),
        method=method,
        which=which,
        n_iter=n_iter,
        converged=converged,
        rel_change=float(rel_change),
        residual=float(residual / abs(theta)) if theta != 0 else float(residual),
        n_samples=hessian.n_samples,
        mode=mode,
        ritz_values=np.asarray(ritz, dtype=np.float64),
    )


def hessian_trace(
    model: torch.nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    batches: Iterable,
    *,
    n_vectors: int = 100,
    mode: Literal["eval", "train"] = "eval",
    seed: int = 0,
) -> TraceEstimate:
    """Hutchinson estimate [4]_ of the trace of the Hessian of the mean loss over ``batches``.

    Parameters
    ----------
    model, loss_fn, batches, mode
        As in :func:`top_hessian_eigenvalue`.
    n_vectors : int
        Rademacher probe vectors z (entries +-1 with probability 1/2), one product each.
    seed : int
        Seed of the probe vectors (private CPU ``torch.Generator``) and of the RNG inside the
        products.

    Returns
    -------
    TraceEstimate

    Notes
    -----
    E[z^T H z] = tr(H) for Rademacher z, with Var(z^T H z) = 2 sum_{i != j} H_ij^2, the smallest
    variance among i.i.d. zero-mean unit-variance probes [4]_.  The standard error is the
    sample one, so ``trace +- 2 stderr`` is an approximate 95 % interval for n_vectors >~ 30.
    PyHessian's ``trace(maxIter=...)`` [5]_ is the same estimator.
    """
    if int(n_vectors) < 1:
        raise SgnMemoryError(f"n_vectors must be >= 1; got {n_vectors}.")
    if mode not in _MODES:
        raise SgnMemoryError(f"mode must be one of {_MODES}; got {mode!r}.")
    hessian = _Hessian(model, loss_fn, batches, mode, seed)
    generator = torch.Generator().manual_seed(seed)
    samples = np.empty(int(n_vectors))
    with hessian.untouched():
        for i in range(int(n_vectors)):
            z = hessian.start_vector(generator, rademacher=True)
            samples[i] = float(_dot(z, hessian.matvec(z)))
    stderr = samples.std(ddof=1) / math.sqrt(len(samples)) if len(samples) > 1 else math.nan
    return TraceEstimate(
        trace=float(samples.mean()),
        stderr=float(stderr),
        n_vectors=int(n_vectors),
        n_samples=hessian.n_samples,
        mode=mode,
    )


# ------------------------------------------------------------------------------ internals
def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    """<a, b> with the sum accumulated in float64 (the products are rounded once)."""
    return float(torch.sum(a * b, dtype=torch.float64))


class _Hessian:
    """v -> H v for the batch-size-weighted mean loss over ``batches`` (flat vectors)."""

    def __init__(self, model, loss_fn, batches, mode, seed):
        if mode not in _MODES:
            raise SgnMemoryError(f"mode must be one of {_MODES}; got {mode!r}.")
        self.model, self.loss_fn, self.batches = model, loss_fn, batches
        self.mode, self.seed = mode, seed
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise SgnMemoryError("the model has no parameters with requires_grad=True.")
        self.sizes = [p.numel() for p in self.params]
        self.dim = sum(self.sizes)
        self.device = self.params[0].device
        dtype = self.params[0].dtype
        for p in self.params[1:]:
            dtype = torch.promote_types(dtype, p.dtype)
        self.dtype = torch.promote_types(dtype, torch.float32)  # half-precision models
        self.n_samples = 0

    def start_vector(self, seed_or_generator, *, rademacher: bool) -> torch.Tensor:
        gen = seed_or_generator
        if not isinstance(gen, torch.Generator):
            gen = torch.Generator().manual_seed(int(gen))
        if rademacher:
            v = torch.randint(0, 2, (self.dim,), generator=gen, dtype=torch.float64) * 2 - 1
        else:
            v = torch.randn(self.dim, generator=gen, dtype=torch.float64)
        return v.to(device=self.device, dtype=self.dtype)

    @contextlib.contextmanager
    def untouched(self):
        """Set the mode; restore every module's flag, running statistics and the RNG."""
        flags = [(m, m.training) for m in self.model.modules()]
        cuda = any(p.is_cuda for p in self.params)
        # the products reseed the RNG: fork every CUDA device, since manual_seed seeds them all
        devices = list(range(torch.cuda.device_count())) if cuda else []
        try:
            self.model.train(self.mode == "train")
            with _untouched(self.model, devices):
                yield
        finally:
            for module, flag in flags:
                module.training = flag

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        pieces = [
            c.view_as(p).to(p.dtype)
            for c, p in zip(torch.split(v, self.sizes), self.params, strict=True)
        ]
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        count = 0
        torch.manual_seed(self.seed)  # same dropout masks in every product (inside a fork)
        for batch in self.batches:
            inputs, targets = batch[0], batch[1]
            inputs = inputs.to(self.device) if isinstance(inputs, torch.Tensor) else inputs
            targets = targets.to(self.device) if isinstance(targets, torch.Tensor) else targets
            n = targets.shape[0] if isinstance(targets, torch.Tensor) else len(targets)
            with torch.enable_grad():
                loss = self.loss_fn(self.model(inputs), targets)
                grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
                dot = sum(
                    (g * u).sum() for g, u in zip(grads, pieces, strict=True) if g is not None
                )
                if isinstance(dot, torch.Tensor) and dot.requires_grad:
                    hv = torch.autograd.grad(dot, self.params, allow_unused=True)
                else:  # the loss is at most linear in w: H = 0 on this batch
                    hv = (None,) * len(self.params)
            flat = [
                torch.zeros(p.numel(), dtype=self.dtype, device=self.device)
                if h is None
                else h.detach().reshape(-1).to(self.dtype)
                for h, p in zip(hv, self.params, strict=True)
            ]
            total.add_(torch.cat(flat), alpha=n)
            count += n
        if count == 0:
            raise SgnMemoryError(
                "the batches yielded no samples; pass a re-iterable (a list or a DataLoader), "
                "not a generator, since they are iterated once per Hessian-vector product."
            )
        self.n_samples = count
        return total / count


def _rel_change(new: float, old: float) -> float:
    if math.isnan(old):
        return math.inf
    diff = abs(new - old)
    return diff / abs(new) if new != 0 else (0.0 if diff == 0 else math.inf)


def _lanczos(matvec, v0, max_iter, tol, which):
    """k-step Lanczos with full reorthogonalisation; the top (LA or LM) Ritz value."""
    eps = torch.finfo(v0.dtype).eps
    basis = [v0 / math.sqrt(_dot(v0, v0))]
    alphas: list[float] = []
    betas: list[float] = []
    theta = rel = math.nan
    residual = math.inf
    evals = np.empty(0)
    converged = False
    for k in range(1, min(max_iter, v0.numel()) + 1):
        q = basis[-1]
        w = matvec(q)
        alpha = _dot(q, w)
        alphas.append(alpha)
        w.add_(q, alpha=-alpha)
        if betas:
            w.add_(basis[-2], alpha=-betas[-1])
        for _ in range(2):  # "twice is enough" (Kahan, Parlett): orthogonal to working precision
            for b in basis:
                w.add_(b, alpha=-_dot(b, w))
        beta = math.sqrt(_dot(w, w))
        evals, evecs = eigh_tridiagonal(np.asarray(alphas), np.asarray(betas))
        top = int(np.argmax(evals)) if which == "LA" else int(np.argmax(np.abs(evals)))
        theta, previous = float(evals[top]), theta
        rel = _rel_change(theta, previous)
        residual = beta * abs(float(evecs[-1, top]))
        scale = max(float(np.max(np.abs(evals))), np.finfo(np.float64).tiny)
        if beta <= 10 * eps * scale or k == v0.numel():
            converged = True  # invariant subspace: the Ritz values are eigenvalues of H
            break
        if rel < tol:
            converged = True
            break
        betas.append(beta)
        basis.append(w / beta)
    return theta, k, converged, rel, residual, evals


def _power(matvec, v0, max_iter, tol):
    """Power iteration with the Rayleigh quotient as the (signed, largest-magnitude) estimate."""
    v = v0 / math.sqrt(_dot(v0, v0))
    theta = rel = math.nan
    residual = math.inf
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        w = matvec(v)
        theta, previous = _dot(v, w), theta
        rel = _rel_change(theta, previous)
        residual = math.sqrt(_dot(w - theta * v, w - theta * v))
        norm = math.sqrt(_dot(w, w))
        if norm == 0:
            theta, rel, converged = 0.0, 0.0, True  # v is in the null space of H
            break
        if rel < tol:
            converged = True
            break
        v = w / norm
    return theta, n_iter, converged, rel, residual, np.array([theta])
