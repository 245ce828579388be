"""What sampling minibatches without replacement alone does to Hurst estimates.

At fixed weights (the frozen-checkpoint protocol), the noise of minibatch k is
u_k = (1/B) sum_{i in B_k} xi_i with per-sample noise xi_i = grad l_i(w) - grad L(w), which sums
to zero over the training set.  When the batches of an epoch partition the training set (a fresh
permutation per epoch, what training loops do), the m = n/B batch noises of an epoch sum to
exactly zero: the series is a chain of independent "bridges" of length m, white within an epoch
(correlation -1/(m-1) between two batches of it) and with no variance at all at the epoch scale.
Every estimator that looks at scales near m or beyond reads that as anti-persistence, H < 1/2,
without any memory in the dynamics.  With independently drawn batches ("iid") there is none.

    python -m experiments.epoch_model --n-train 4000 --batch-sizes 16 32 64 256 --steps 1500

prints H by Whittle, DFA-1, corrected R/S and the seed authors' R/S statistic on such series
(Gaussian per-sample noise; the result depends only on n, B and the series length), to set next
to measured checkpoint noise.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np


def epoch_sampling_noise(
    n_train: int,
    batch_size: int,
    steps: int,
    size: int,
    *,
    sampling: str = "epoch",
    rng=None,
) -> np.ndarray:
    """``(size, steps)`` minibatch-mean noise series of i.i.d. N(0, 1) per-sample noise centred
    on the training set (it sums to 0 over the ``n_train`` samples).

    ``sampling="epoch"``: each epoch a new permutation, cut into ``n_train // batch_size``
    batches (the rest dropped, as ``drop_last``); ``"iid"``: every batch ``batch_size`` distinct
    samples drawn independently of the other batches.
    """
    if sampling not in ("epoch", "iid"):
        raise ValueError(f"sampling must be 'epoch' or 'iid'; got {sampling!r}.")
    if not 1 <= batch_size <= n_train:
        raise ValueError(f"batch_size must lie in [1, {n_train}]; got {batch_size}.")
    gen = np.random.default_rng(rng)
    xi = gen.standard_normal((size, n_train))
    xi -= xi.mean(axis=1, keepdims=True)
    m = n_train // batch_size
    out = np.empty((size, steps))
    index = np.tile(np.arange(n_train), (size, 1))
    t = 0
    while t < steps:
        perm = gen.permuted(index, axis=1)
        if sampling == "epoch":
            batches = perm[:, : m * batch_size].reshape(size, m, batch_size)
        else:  # one independent draw per batch
            batches = perm[:, None, :batch_size]
        k = min(batches.shape[1], steps - t)
        picked = np.take_along_axis(xi, batches[:, :k].reshape(size, -1), axis=1)
        out[:, t : t + k] = picked.reshape(size, k, batch_size).mean(axis=2)
        t += k
    return out


def hurst_table(series: np.ndarray) -> dict[str, float]:
    """Median H by Whittle, DFA-1 and corrected R/S, and the tan2021 statistic."""
    import sgn_memory as sgn
    from sgn_memory.hurst import tan2021_mean_hurst

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tan, _ = tan2021_mean_hurst(sgn.hurst_rs(series, preset="tan2021").hurst)
    return {
        "whittle": float(np.median(sgn.hurst_whittle(series).hurst)),
        "dfa": float(np.median(sgn.hurst_dfa(series).hurst)),
        "rs": float(np.median(sgn.hurst_rs(series).hurst)),
        "tan2021": tan,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m experiments.epoch_model", description=__doc__)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 256])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--series", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(f"n_train = {args.n_train}, {args.steps} steps, {args.series} series per row")
    print("| sampling | B | batches per epoch | H Whittle | H DFA-1 | H R/S (corr.) | tan2021 |")
    print("|---|---|---|---|---|---|---|")
    for sampling in ("epoch", "iid"):
        for b in args.batch_sizes:
            x = epoch_sampling_noise(
                args.n_train, b, args.steps, args.series, sampling=sampling, rng=[args.seed, b]
            )
            h = hurst_table(x)
            print(
                f"| {sampling} | {b} | {args.n_train // b} | {h['whittle']:.3f} | "
                f"{h['dfa']:.3f} | {h['rs']:.3f} | {h['tan2021']:.3f} |"
            )


if __name__ == "__main__":
    main()
