"""First-passage (escape) times of fBM-driven SDEs: Monte Carlo, survival analysis, approximations.

- :func:`escape_times`  first exit of each simulated path from an interval or basin, with
  censoring at the horizon kept explicit: Kaplan-Meier survival, mean and median with
  censoring-aware confidence intervals, and a test of the exponential law
- :func:`kaplan_meier`  the survival curve with Greenwood standard errors and a log-log band
- :func:`mean_escape_time_approx`  closed-form approximations of the mean escape time for
  fractional noise; both reduce exactly to Kramers' formula at H = 1/2
- :func:`brownian_mean_exit_time`  the exact mean exit time of the H = 1/2 diffusion (quadrature),
  the yardstick for the Monte Carlo and for Kramers' formula
- :func:`escape_study`  Monte Carlo against the approximations over a grid of H, sigma, barrier
  and curvature, under both noise scalings, as a tidy table (:class:`EscapeStudy`)

Conventions: the SDE is dX = -U'(X) dt + sigma dB^H (see :mod:`sgn_memory.sde` for the two noise
scalings); at H = 1/2 its stationary density is proportional to exp(-2U / sigma^2), i.e. the
diffusivity is D = sigma^2 / 2 and Kramers' mean transition time over a barrier dU from a
minimum of curvature k through a saddle of curvature -k_s is

    tau_K = 2 pi / sqrt(k k_s) * exp(dU / D) = 2 pi / sqrt(k k_s) * exp(2 dU / sigma^2).

References
----------
1. H. A. Kramers, "Brownian motion in a field of force and the diffusion model of chemical
   reactions", Physica 7 (1940) 284-304.
2. P. Hänggi, P. Talkner and M. Borkovec, "Reaction-rate theory: fifty years after Kramers",
   Rev. Mod. Phys. 62 (1990) 251-341 (mean first-passage time formula, Sec. VII).
3. E. L. Kaplan and P. Meier, "Nonparametric estimation from incomplete observations",
   J. Am. Stat. Assoc. 53 (1958) 457-481.
4. M. Greenwood, "The natural duration of cancer", Rep. Public Health Med. Subj. 33 (1926).
5. J. D. Kalbfleisch and R. L. Prentice, "The Statistical Analysis of Failure Time Data",
   Wiley (1980), Sec. 1.3 (log-log confidence band).
6. R. Brookmeyer and J. Crowley, "A confidence interval for the median survival time",
   Biometrics 38 (1982) 29-41.
7. J. P. Klein and M. L. Moeschberger, "Survival Analysis", Springer (2003), Sec. 4.5
   (restricted mean and its variance).
8. W. Q. Meeker and L. A. Escobar, "Statistical Methods for Reliability Data", Wiley (1998),
   Sec. 7.6 (exponential mean from time-censored data).
9. C. Tan, J. Zhang and J. Liu, "Understanding long range memory effects in deep neural
   networks", arXiv:2105.02062 (the first-passage argument with D(t) = H sigma^2 t^(2H-1)).
"""

from ._approx import EscapeApproximation, Method, brownian_mean_exit_time, mean_escape_time_approx
from ._study import EscapeStudy, escape_study
from ._survival import (
    EscapeTimes,
    ExponentialCheck,
    SurvivalCurve,
    escape_times,
    kaplan_meier,
)

__all__ = [
    "EscapeApproximation",
    "EscapeStudy",
    "EscapeTimes",
    "ExponentialCheck",
    "Method",
    "SurvivalCurve",
    "brownian_mean_exit_time",
    "escape_study",
    "escape_times",
    "kaplan_meier",
    "mean_escape_time_approx",
]
