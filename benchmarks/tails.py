"""Distribution tests of sgn_memory.tails against peers: size, power, accuracy and speed.

Run from the repository root:

    .bench-venv/bin/python benchmarks/tails.py            # ~5 min on 2 cores
    .bench-venv/bin/python benchmarks/tails.py --quick    # smoke run

Peers (in .bench-venv, see benchmarks/requirements.txt): scipy.stats (per-series normality
tests, McCulloch start `_fitstart_S0`), the `levy-stable` package (`levy.fit`, maximum
likelihood in its parametrisation 0 = S0).  Stable samples come from scipy's `levy_stable.rvs`
(independent of our sampler).  Prints a Markdown report; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import time
import warnings

import _common as C
import numpy as np
import scipy.stats as st

import sgn_memory as sgn
from sgn_memory.tails import stable_rvs

ALPHAS = (1.2, 1.5, 1.8, 2.0)
SEED = 20261121


def scipy_stable(alpha, size, seed):
    return st.levy_stable.rvs(alpha, 0.0, size=size, random_state=np.random.default_rng(seed))


def size_power(reps: int, n: int) -> str:
    rng = np.random.default_rng(SEED)
    laws = {
        "N(0,1)": rng.standard_normal((reps, n)),
        "Student t(5)": rng.standard_t(5, (reps, n)),
        "Laplace": rng.laplace(size=(reps, n)),
        "uniform": rng.uniform(size=(reps, n)),
    }
    stable = {
        f"stable a={a}": scipy_stable(a, (reps, n), SEED + int(10 * a)) for a in (1.2, 1.5, 1.8)
    }
    rows = []
    for name, x in {**laws, **stable}.items():
        C.progress(f"size/power: {name}")
        g = sgn.gaussianity(x)
        s = sgn.stable_test(x, rng=1)
        rows.append(
            [name]
            + [f"{g.rejected_fraction[t]:.3f}" for t in g.tests]
            + [f"{np.mean(s.pvalue <= 0.05):.3f}", f"{np.mean(s.aggregation_drift):+.3f}"]
        )
    headers = ["law", *sgn.tails.GAUSSIANITY_TESTS, "stable_test", "alpha drift (m=8 vs 1)"]
    return C.markdown_table(headers, rows)


def lilliefors_size(reps: int) -> str:
    """Rejection rate of Lilliefors on N(0,1) at 5%: our simulated table vs statsmodels' table."""
    from statsmodels.stats._lilliefors import get_lilliefors_table

    rng = np.random.default_rng(SEED + 7)
    rows = []
    for n in (300, 500, 1000, 1500, 2000):
        C.progress(f"lilliefors size n={n}")
        x = rng.standard_normal((reps, n))
        g = sgn.gaussianity(x, tests="lilliefors")
        ours = g.pvalue["lilliefors"]
        theirs = get_lilliefors_table("norm").prob(g.statistic["lilliefors"], n)
        se = np.sqrt(0.05 * 0.95 / reps)
        rows.append(
            [n, f"{np.mean(ours <= 0.05):.4f}", f"{np.mean(theirs <= 0.05):.4f}", f"{se:.4f}"]
        )
    return C.markdown_table(["n", "ours", "statsmodels table", "MC standard error"], rows)


def accuracy(reps: int, n: int, peer_reps: int) -> tuple[str, dict]:
    import levy
    from scipy.stats._levy_stable import _fitstart_S0

    rows, per_series = [], {}
    for a in ALPHAS:
        C.progress(f"accuracy alpha={a}")
        x = np.stack([scipy_stable(a, n, SEED + round(100 * a) + 1000 * i) for i in range(reps)])
        t0 = time.perf_counter()
        kw = sgn.fit_stable(x).alpha
        t_kw = (time.perf_counter() - t0) / reps
        mc = sgn.fit_stable(x, method="mcculloch").alpha
        sp = np.array([_fitstart_S0(r)[0] for r in x])
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ml = np.array([levy.fit(r).params.alpha for r in x[:peer_reps]])
        per_series[a] = ((time.perf_counter() - t0) / peer_reps, t_kw)

        def rmse(v, a=a):
            return f"{np.sqrt(np.mean((v - a) ** 2)):.4f}"

        rows.append([f"{a}", rmse(kw), rmse(kw[:peer_reps]), rmse(mc), rmse(sp), rmse(ml)])
    headers = [
        "alpha",
        f"ours koutrouvelis ({reps})",
        f"ours koutrouvelis (first {peer_reps})",
        f"ours mcculloch ({reps})",
        f"scipy McCulloch ({reps})",
        f"levy-stable ML (first {peer_reps})",
    ]
    return C.markdown_table(headers, rows), per_series


def speed(quick: bool) -> str:
    rows = []
    big = 1000 if quick else 10_000
    x = stable_rvs(1.5, 0.0, size=(big, 2000), rng=SEED)
    g = np.random.default_rng(SEED).standard_normal((big, 1000))
    sgn.fit_stable(x[:10])
    for label, fn in [
        ("fit_stable koutrouvelis, 2000 samples", lambda: sgn.fit_stable(x)),
        ("fit_stable mcculloch, 2000 samples", lambda: sgn.fit_stable(x, method="mcculloch")),
        ("gaussianity (5 tests), 1000 samples", lambda: sgn.gaussianity(g)),
        ("tail_index mohammadi, 1000 samples", lambda: sgn.tail_index(g)),
        ("tail_index hill, 1000 samples", lambda: sgn.tail_index(g, method="hill")),
    ]:
        C.progress(f"speed: {label}")
        seconds, _ = C.median_time(fn, repeats=3)
        rows.append([label, f"{big:,}", C.fmt_seconds(seconds), C.fmt_seconds(seconds / big)])
    # per-series peers
    sub = g[:200]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in sub:
            st.shapiro(r)
            st.normaltest(r)
            st.anderson(r)
            st.jarque_bera(r)
    per = (time.perf_counter() - t0) / sub.shape[0]
    rows.append(
        ["scipy shapiro+normaltest+anderson+jarque_bera loop", "200", "—", C.fmt_seconds(per)]
    )
    return C.markdown_table(["task", "series", "seconds (one call)", "per series"], rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    reps, peer_reps = (20, 3) if args.quick else (200, 25)
    sp_reps = 100 if args.quick else 1000
    C.emit(C.header("Distribution tests: size, power, accuracy, speed"))
    C.emit(f"## Rejection rates at the 5% level, n = 2000, {sp_reps} series per law\n")
    C.emit(size_power(sp_reps, 2000))
    C.emit(
        "\nGaussianity tests: size on N(0,1), power elsewhere.  stable_test: size on the stable "
        "laws (parametric bootstrap, 200 draws per (alpha, beta) cell), power on the "
        "finite-variance laws.  Drift: mean fitted alpha of 8-sums minus that of the raw series."
    )
    C.emit(f"\n## Lilliefors at the 5% level on N(0,1), {sp_reps * 8} series per n\n")
    C.emit(lilliefors_size(sp_reps * 8))
    C.emit("\n## alpha RMSE of symmetric stable fits, n = 2000 (replicates in brackets)\n")
    table, per_series = accuracy(reps, 2000, peer_reps)
    C.emit(table)
    C.emit(
        "\nlevy-stable ML seconds per series: "
        + ", ".join(
            f"alpha={a}: {v[0]:.3f} s (ours {v[1] * 1e3:.2f} ms)" for a, v in per_series.items()
        )
    )
    C.emit("\n## Speed\n")
    C.emit(speed(args.quick))
    C.emit(f"\nLoad average at end (1, 5, 15 min): {C.load_average()}")


if __name__ == "__main__":
    main()
