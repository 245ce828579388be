"""Optimizers of the experiments: SGD, momentum, Adam(W), SAM and StableSAM, and one training step.

SAM-type optimizers here expose ``first_step``, ``second_step`` and ``base_optimizer``, the
interface :class:`sgn_memory.collect.NoiseCollector` looks for: its step pre-hook goes on the
innermost base optimizer, so the gradient it records is the one the update uses, taken at the
perturbed point.  :func:`training_step` is the loop body the experiment runner uses for every
optimizer, with exactly one forward pass per plain step and two per SAM-type step.

References
----------
.. [1] P. Foret, A. Kleiner, H. Mobahi and B. Neyshabur, "Sharpness-Aware Minimization for
       Efficiently Improving Generalization", ICLR 2021, arXiv:2010.01412.
.. [2] J. Kwon, J. Kim, H. Park and I. K. Choi, "ASAM: Adaptive Sharpness-Aware Minimization
       for Scale-Invariant Learning of Deep Neural Networks", ICML 2021, arXiv:2102.11600.
.. [3] C. Tan, J. Zhang, J. Liu, Y. Wang and Y. Hao, "Stabilizing Sharpness-aware Minimization
       Through A Simple Renormalization Strategy", arXiv:2401.07250 (2024); JMLR 26 (2025).
       Authors' code: https://github.com/cltan023/stablesam2024 (``sam.py``, ``stable=True``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from sgn_memory.errors import SgnMemoryError

__all__ = [
    "OPTIMIZERS",
    "SAM",
    "StableSAM",
    "check_optimizer",
    "make_optimizer",
    "training_step",
]

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "sam", "stablesam")
_BASES = ("sgd", "momentum", "adam", "adamw")


class SAM(torch.optim.Optimizer):
    """Sharpness-Aware Minimization [1]_ around a base optimizer.

    Parameters
    ----------
    params : iterable of tensors or of parameter-group dicts
        The parameters to optimize (groups may set their own ``rho`` and ``adaptive``).
    base_optimizer : type of torch.optim.Optimizer
        Built as ``base_optimizer(self.param_groups, **base_kwargs)``; it shares this
        optimizer's parameter groups, so a learning-rate scheduler attached to the SAM object
        changes the base optimizer's learning rate.  Weight decay, momentum and the learning
        rate belong to the base optimizer.
    rho : float
        Radius of the perturbation (default 0.05, as in [1]_).
    adaptive : bool
        Use the scale-invariant perturbation of ASAM [2]_ (see Notes).
    **base_kwargs
        Passed to ``base_optimizer`` (``lr``, ``momentum``, ``weight_decay``, ...).

    Notes
    -----
    One step, with g = grad L_B(w) the minibatch gradient at the current weights:

    1. ``first_step``: e(w) = rho g / ||g||_2, the norm taken over all parameters together
       (global 2-norm); w <- w + e(w).  With ``adaptive=True`` (ASAM [2]_ with T_w = |w|, i.e.
       its eta = 0, as in the reference implementation): e(w) = rho w^2 g / ||w g||_2, products
       elementwise.  If the norm is 0 the perturbation is 0 (no division by zero, no NaN).
    2. the caller computes the gradient g_s = grad L_B(w + e) at the perturbed point.
    3. ``second_step``: w is restored by copying back the weights saved in ``first_step`` (a
       bitwise restore; subtracting e would leave rounding errors), then the base optimizer
       steps with g_s.

    Unlike the widely copied reference code, no 1e-12 is added to the norm: the division is
    exact and the zero-norm case is guarded explicitly.  ``state_dict`` is the base
    optimizer's (SAM keeps no state between steps).

    References
    ----------
    .. [1] P. Foret, A. Kleiner, H. Mobahi and B. Neyshabur, "Sharpness-Aware Minimization for
           Efficiently Improving Generalization", ICLR 2021, arXiv:2010.01412.
    .. [2] J. Kwon, J. Kim, H. Park and I. K. Choi, "ASAM: Adaptive Sharpness-Aware
           Minimization for Scale-Invariant Learning of Deep Neural Networks", ICML 2021.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    >>> x, y = torch.randn(8, 3), torch.randn(8, 1)
    >>> loss = training_step(model, torch.nn.functional.mse_loss, opt, x, y)
    """

    def __init__(
        self,
        params,
        base_optimizer: type[torch.optim.Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        **base_kwargs: Any,
    ):
        if not rho >= 0.0:
            raise SgnMemoryError(f"rho must be non-negative; got {rho}.")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **base_kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        # one list of group dicts for both: schedulers and the collector read either
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self._perturbed = False

    def _with_grad(self):
        return [
            (group, p) for group in self.param_groups for p in group["params"] if p.grad is not None
        ]

    @staticmethod
    def _global_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
        """2-norm over all tensors together (0 for none), on the first tensor's device."""
        if not tensors:
            return torch.zeros(())
        device = tensors[0].device
        norms = [torch.linalg.vector_norm(t).to(device) for t in tensors]
        return torch.linalg.vector_norm(torch.stack(norms))

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Save w and move to w + e(w); e(w) as in the class Notes (0 if the gradient is 0)."""
        if self._perturbed:
            raise RuntimeError("first_step called twice without second_step in between.")
        with_grad = self._with_grad()
        weighted = [p.grad * p.abs() if g["adaptive"] else p.grad for g, p in with_grad]
        norm = self._global_norm(weighted)
        self._record_norm(with_grad)
        scales = {}
        for group, p in with_grad:
            if id(group) not in scales:
                # no host sync: a zero norm gives scale 0 through torch.where, never rho / 0
                zero = torch.zeros_like(norm)
                scales[id(group)] = torch.where(norm > 0, group["rho"] / norm, zero)
            scale = scales[id(group)].to(p)
            e = p.grad * p * p * scale if group["adaptive"] else p.grad * scale
            self.state[p]["old_p"] = p.detach().clone()
            p.add_(e)
        self._perturbed = True
        if zero_grad:
            self.zero_grad()

    def _record_norm(self, with_grad) -> None:
        """Hook for subclasses that need the gradient at w (StableSAM)."""

    def _rescale(self, with_grad) -> None:
        """Hook for subclasses that change the surrogate gradient before the base step."""

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore w bitwise, then step the base optimizer with the gradient at w + e(w)."""
        if not self._perturbed:
            raise RuntimeError("second_step called without a preceding first_step.")
        self._rescale(self._with_grad())
        self._restore()
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def _restore(self) -> None:
        """Copy the weights saved by ``first_step`` back (bitwise) and forget them."""
        for group in self.param_groups:
            for p in group["params"]:
                old = self.state[p].pop("old_p", None)
                if old is not None:
                    p.copy_(old)
        self._perturbed = False

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """One SAM step: ``first_step``, ``closure()`` (forward and backward at w + e),
        ``second_step``.  The gradient at w must already be in ``.grad``.

        Returns the closure's value (the loss at the perturbed point).
        """
        if closure is None:
            raise SgnMemoryError(
                "SAM.step needs a closure that runs the forward and backward pass at w + e; "
                "or call first_step and second_step yourself."
            )
        self.first_step(zero_grad=True)
        try:
            with torch.enable_grad():
                loss = closure()
        except BaseException:
            self._restore()  # never leave the model at w + e
            raise
        self.second_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state (momentum buffers, ...); SAM's own is empty between steps."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups


class StableSAM(SAM):
    """SAM with the surrogate gradient renormalised to the norm of the gradient at w [1]_.

    Parameters are those of :class:`SAM`.

    Notes
    -----
    As SAM, but before the base step the gradient at the perturbed point, g_s = grad L_B(w + e),
    is rescaled to the norm of the minibatch gradient at the unperturbed point, g = grad L_B(w):

        g_s <- gamma g_s,    gamma = ||g||_2 / ||g_s||_2,

    the renormalisation factor gamma_t of Tan et al. [1]_ (their "StableSAM"/"SSAM": the descent
    step keeps the norm of the ascent step's gradient).  It adds no hyper-parameter.  Norms are
    global over all parameters; ||g|| is taken in ``first_step``.  If ||g_s|| = 0 the gradient is
    left as it is.

    Differences from the authors' code (``sam.py`` of cltan023/stablesam2024, ``stable=True``):
    it divides by ||g_s|| + 1e-12 (here: exact, guarded at 0); with ``adaptive=True`` it rescales
    with the ASAM-weighted norms ||w g||, whereas here gamma is always the ratio of plain gradient
    norms, as written in the paper (identical when ``adaptive=False``).  A commented-out line
    there caps gamma at 1; not offered here.

    The rescaled gradient is what the base optimizer, and so the NoiseCollector's step
    pre-hook, sees.

    References
    ----------
    .. [1] C. Tan, J. Zhang, J. Liu, Y. Wang and Y. Hao, "Stabilizing Sharpness-aware
           Minimization Through A Simple Renormalization Strategy", arXiv:2401.07250 (2024);
           JMLR 26 (2025).
    """

    def _record_norm(self, with_grad) -> None:
        self._exact_norm = self._global_norm([p.grad for _, p in with_grad])

    def _rescale(self, with_grad) -> None:
        surrogate = self._global_norm([p.grad for _, p in with_grad])
        exact = self._exact_norm.to(surrogate.device)
        gamma = torch.where(surrogate > 0, exact / surrogate, torch.ones_like(surrogate))
        for _, p in with_grad:
            p.grad.mul_(gamma.to(p.grad))
        # read by the NoiseCollector's pre-hook, which records the noise of g_s itself
        self.gradient_scale = gamma


def make_optimizer(
    name: str,
    params: Iterable,
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    rho: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.999),
    base: str = "momentum",
    adaptive: bool = False,
) -> torch.optim.Optimizer:
    """Build one of the experiments' optimizers by name.

    Parameters
    ----------
    name : {"sgd", "momentum", "adam", "adamw", "sam", "stablesam"}
        ``"sgd"``: plain SGD (no momentum); ``"momentum"``: SGD with heavy-ball ``momentum``;
        ``"adam"``, ``"adamw"``: with ``betas``; ``"sam"``, ``"stablesam"``: :class:`SAM` or
        :class:`StableSAM` with radius ``rho`` around the optimizer named by ``base``.
    params : iterable
        Parameters or parameter groups.
    lr, momentum, weight_decay, betas
        Hyper-parameters of the (base) optimizer; ``momentum`` is used by ``"momentum"`` only
        (and by ``base="momentum"``), ``betas`` by the Adam family only.
    rho, adaptive
        SAM radius and ASAM switch (SAM-type only).
    base : {"momentum", "sgd", "adam", "adamw"}
        Base optimizer of ``"sam"`` and ``"stablesam"`` (default: SGD with momentum).

    Returns
    -------
    torch.optim.Optimizer

    Raises
    ------
    SgnMemoryError
        (a ValueError) For an unknown ``name`` or ``base``; the message lists the known ones.
    """
    key = name.lower()
    if key in ("sam", "stablesam"):
        if base not in _BASES:
            raise SgnMemoryError(f"unknown base optimizer {base!r}; choose one of {_BASES}.")
        cls, kwargs = _plain(base, lr, momentum, weight_decay, betas)
        wrapper = SAM if key == "sam" else StableSAM
        return wrapper(params, cls, rho=rho, adaptive=adaptive, **kwargs)
    if key not in _BASES:
        raise SgnMemoryError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}.")
    cls, kwargs = _plain(key, lr, momentum, weight_decay, betas)
    return cls(params, **kwargs)


def check_optimizer(name: str, **kwargs: Any) -> None:
    """Check, without building it, that :func:`make_optimizer` takes this name and these extra
    options (``betas``, ``base``, ``adaptive``; each only where it is used).

    Raises
    ------
    SgnMemoryError
        (a ValueError) naming the unknown optimizer (and the known ones) or the option.
    """
    from ._options import check_options

    if name not in OPTIMIZERS:
        raise SgnMemoryError(f"optimizer {name!r} is not one of {', '.join(OPTIMIZERS)}.")
    owner = f"optimizer {name!r}"
    supplied = ("name", "params", "lr", "momentum", "weight_decay", "rho")
    check_options(make_optimizer, kwargs, key="optimizer_kwargs", owner=owner, supplied=supplied)
    sam = name in ("sam", "stablesam")
    for option in ("base", "adaptive"):
        if option in kwargs and not sam:
            raise SgnMemoryError(
                f"optimizer_kwargs.{option}: {owner} has no {option} (only sam and stablesam)."
            )
    base = kwargs.get("base", "momentum") if sam else name
    if sam and base not in _BASES:
        raise SgnMemoryError(f"optimizer_kwargs.base = {base!r} is not one of {', '.join(_BASES)}.")
    if "betas" in kwargs:
        if base not in ("adam", "adamw"):
            raise SgnMemoryError(
                f"optimizer_kwargs.betas: {owner}{f' with base {base!r}' if sam else ''} has "
                "no betas (Adam and AdamW only)."
            )
        if not all(0 <= b < 1 for b in kwargs["betas"]):
            raise SgnMemoryError(
                f"optimizer_kwargs.betas = {kwargs['betas']!r} must be two numbers in [0, 1)."
            )


def _plain(name, lr, momentum, weight_decay, betas):
    """(class, keyword arguments) of a plain optimizer named in ``_BASES``."""
    if name == "sgd":
        return torch.optim.SGD, dict(lr=lr, momentum=0.0, weight_decay=weight_decay)
    if name == "momentum":
        return torch.optim.SGD, dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls, dict(lr=lr, betas=betas, weight_decay=weight_decay)


def _is_sam(optimizer) -> bool:
    """SAM-type by the collector's rule: ``first_step``, ``second_step`` and ``base_optimizer``."""
    return all(hasattr(optimizer, a) for a in ("first_step", "second_step", "base_optimizer"))


def training_step(
    model: torch.nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    x,
    y,
    *,
    on_loss: Callable[[torch.Tensor], Any] | None = None,
) -> float:
    """One optimizer step on the minibatch ``(x, y)``; returns the minibatch loss at w.

    Parameters
    ----------
    model, loss_fn
        ``loss_fn(model(x), y)`` is the mean minibatch loss.
    optimizer : torch.optim.Optimizer
        Plain, or SAM-type (has ``first_step``, ``second_step`` and ``base_optimizer``).
    x, y
        The minibatch.
    on_loss : callable, optional
        Called with the loss at the current weights w after its backward pass and before any
        weight changes, e.g. ``collector.observe_loss``.

    Returns
    -------
    float
        The loss at w (for SAM-type optimizers: before the perturbation).

    Notes
    -----
    Plain: ``zero_grad``, forward, backward, ``on_loss``, ``step``; one forward pass.

    SAM-type: ``zero_grad``, forward, backward, ``on_loss``, then ``optimizer.step(closure)``,
    i.e. ``first_step(zero_grad=True)``, forward and backward at w + e (the closure),
    ``second_step()``, and finally ``zero_grad``; two forward passes per step, the second at the
    perturbed point, as the NoiseCollector expects.  Going through ``step`` (rather than calling
    the two halves here) also runs hooks registered on the SAM object itself and lets a
    learning-rate scheduler see that the optimizer stepped.  A custom SAM-type object without a
    closure-taking ``step`` gets the two halves called directly.  BatchNorm running statistics
    are updated by both forward passes (as in the reference implementations' closure usage).
    """
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    if on_loss is not None:
        on_loss(loss)
    if not _is_sam(optimizer):
        optimizer.step()
        return float(loss.detach())

    def closure():
        perturbed = loss_fn(model(x), y)
        perturbed.backward()
        return perturbed

    if isinstance(optimizer, SAM):
        optimizer.step(closure)
        optimizer.zero_grad()
    else:
        optimizer.first_step(zero_grad=True)
        with torch.enable_grad():
            closure()
        optimizer.second_step(zero_grad=True)
    return float(loss.detach())
