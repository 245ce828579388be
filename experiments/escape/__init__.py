"""Escape-time experiments: how long SGD, and its fBM-driven SDE model, stays in a minimum or at
a saddle.

Two claims are put to the test.  Tan, Zhang & Liu (arXiv:2105.02062) argue from the first-passage
time of dX = -U'(X) dt + sigma dB^H that SGD stays longer in flat minima when the Hurst exponent
H of its noise is larger.  Kim et al., "Stability Analysis of Sharpness-Aware Minimization"
(arXiv:2301.06308), argue that SAM escapes saddle points more slowly than SGD, and that momentum
and the batch size mitigate this.  Three parts, each resumable and each writing a CSV and a
Markdown table into ``out/``:

``sde``  (``sde_escape.csv``)
    The SDE in the flat and the sharp well of a double well of equal depth
    (:class:`~sgn_memory.sde.DoubleWell`), over a grid of H, under both noise scalings ("fbm":
    per-step std sigma dt^H; "per-step": sigma sqrt(dt) for every H).  Paths start at the bottom
    of a well and escape at the first touch of the saddle (or of the neighbouring minimum:
    ``target``); :func:`sgn_memory.simulate_sde` + :func:`sgn_memory.escape_times` give the
    Kaplan-Meier mean and median with their intervals, set next to both closed-form
    approximations of :func:`sgn_memory.mean_escape_time_approx`.  One horizon for every cell,
    so the restricted means (areas under the survival curves up to it) compare directly.
``sgd``  (``sgd_escape.csv``, ``sgd_escape_times.csv``, ``noise/sgd-*``)
    Real SGD on a small network.  Two minima of clearly different sharpness are found by the
    dynamical-stability argument of Wu, Ma & E (2018) (a minimum of top Hessian eigenvalue
    lambda is linearly stable for step size lr only if lr lambda < 2, and small-batch noise
    shrinks that region further): full-batch gradient descent with a small step (``sharp``)
    may settle in a sharp minimum, small-batch SGD with a large step (``flat``) cannot, and is
    left in a flat one.  Both are then polished by full-batch gradient descent and L-BFGS (a
    local descent, so the basin is kept) and measured: loss L_min, gradient norm, lambda_max
    (Lanczos).  From each minimum and for each (B, lr) of a grid: (a) one run of ``noise_steps``
    steps with the :class:`~sgn_memory.collect.NoiseCollector` attached (exact full-gradient
    reference every step) gives the H of the noise (median over coordinates of Whittle and DFA,
    each next to its shuffled baseline); (b) ``runs`` independent SGD runs (run r uses minibatch
    stream r) count the iterations until the full-data loss leaves the basin, i.e. first exceeds
    L_min + ``delta``, checked every ``check_every`` steps and censored at ``max_steps``.
``saddle``  (``saddle_escape.csv``, ``saddle_escape_times.csv``)
    SGD, SAM and StableSAM (momentum 0 and 0.9, several batch sizes and SAM radii) started next
    to the strict saddle w = 0 of a two-layer network without biases (linear or tanh); the
    saddle is certified by the dense Hessian there (negative eigenvalues) and by Lanczos
    (:func:`~experiments.sharpness.top_hessian_eigenvalue`, ``which="LA"``; its smallest Ritz
    value).  Every run starts from the same seeded perturbation w0 (std ``perturbation`` per
    weight), so runs differ only by their minibatch order; escape = the full-data loss first
    falls to L(0) - ``delta``.

Then ``plots/escape_*.png`` and ``escape.md``: the three tables, each with a paragraph saying what
was measured and whether it agrees with the claim.

Why the basin is a loss level and not a ball around the minimum: the sublevel set
{L < L_min + delta} is the basin of depth delta of the first-passage picture (the SDE wells have
equal depth too), it is the same set whatever parameterisation the network uses (rescalings of
ReLU layers change the sharpness but not the loss, Dinh et al. 2017), and it needs no radius per
minimum, which would have to grow with the minimum's width.  Exits between two checks are missed
(the exit time is biased up by at most ``check_every``), as with the grid-time checks of the SDE.

All escape statistics come from :func:`sgn_memory.escape_times` applied to the checked loss
paths with ``domain=Interval(high=L_min + delta)`` (or ``Interval(low=L(0) - delta)``): the
Kaplan-Meier mean is the restricted mean E[min(T, max_steps)] wherever a run is censored
(``mean_restricted``), a lower bound of E[T], never an average of censoring times.

Configuration: a TOML file with ``kind = "escape"`` and an ``[escape]`` table, e.g. the preset
``experiments/presets/escape.toml``; every key and its default is in :data:`ESCAPE_DEFAULTS`
(unknown keys raise a ``ValueError`` naming them).  Output folder::

    OUT/escape_settings.json            the resolved settings and the hash of each part
    OUT/sde_escape.{csv,md}             part 1
    OUT/sgd_escape.{csv,md}  sgd_escape_times.csv  noise/sgd-<minimum>-b<B>-lr<lr>/
    OUT/saddle_escape.{csv,md}  saddle_escape_times.csv
    OUT/plots/escape_sde.png  escape_sgd_hurst.png  escape_saddle_survival.png
    OUT/escape.md

References
----------
1. C. Tan, J. Zhang and J. Liu, "Understanding long range memory effects in deep neural
   networks", arXiv:2105.02062.
2. M. Kim, D. Li, S. X. Hu and T. Hospedales, "Stability Analysis of Sharpness-Aware
   Minimization", arXiv:2301.06308 (2023).
3. L. Wu, C. Ma and W. E, "How SGD selects the global minima in over-parameterized learning: a
   dynamical stability perspective", NeurIPS 2018.
4. N. S. Keskar et al., "On large-batch training for deep learning: generalization gap and sharp
   minima", ICLR 2017.
5. L. Dinh, R. Pascanu, S. Bengio and Y. Bengio, "Sharp minima can generalize for deep nets",
   ICML 2017.
6. P. Royston and M. K. B. Parmar, "Restricted mean survival time: an alternative to the hazard
   ratio", BMC Med. Res. Methodol. 13 (2013) 152 (comparing restricted means).
"""

from ._common import _escape as _escape
from ._common import _escape_columns as _escape_columns
from ._common import loss_paths
from ._config import ESCAPE_DEFAULTS, PARTS, resolve_settings
from ._config import ConfigError as ConfigError
from ._report import _mean_cell as _mean_cell
from ._run import run_escape
from ._saddle import dense_hessian_eigenvalues, saddle_network
from ._sgd import find_minimum

__all__ = [
    "ESCAPE_DEFAULTS",
    "PARTS",
    "dense_hessian_eigenvalues",
    "find_minimum",
    "loss_paths",
    "resolve_settings",
    "run_escape",
    "saddle_network",
]
