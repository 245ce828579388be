"""How low can the pooled RMSE of corrected R/S go?  A scan over window ranges.

Run from the repository root (needs only sgn_memory):

    .venv/bin/python benchmarks/rs_windows.py            # 200 replicates, n = 2048 (~15 s)
    .venv/bin/python benchmarks/rs_windows.py --quick    # 20 replicates

Same data as ``benchmarks/accuracy.py`` (exact fGn, one seed per H, H in {0.2 ... 0.95}).  For
every smallest window (8 ... 64), largest window (n/8 ... n) and overlap setting, 20 log-spaced
window sizes are fitted with the Anis-Lloyd-Peters correction, and the pooled RMSE and the part
of it that bias alone explains, sqrt(mean over H of bias^2), are printed, best first.  The bias
part is what no window choice removes: R/S reads fGn closer to H = 1/2 than it is at every
window range (the window standard deviation shrinks by sqrt(1 - s^(2H-2)) at high H).
"""

from __future__ import annotations

import argparse

import _common as C
import numpy as np

import sgn_memory as sgn

H_VALUES = (0.2, 0.35, 0.5, 0.65, 0.8, 0.95)
SEED = 20240611  # as benchmarks/accuracy.py
N = 2048


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 replicates instead of 200")
    args = ap.parse_args(argv)
    reps = 20 if args.quick else 200
    data = {h: sgn.fgn(N, h, size=reps, rng=SEED + round(1000 * h)) for h in H_VALUES}

    rows = []
    for lo in (8, 10, 16, 24, 32, 50, 64):
        for hi in (N // 8, N // 4, N // 3, N // 2, N):
            for overlap in (False, True):
                scales = np.unique(np.round(np.geomspace(lo, hi, 20)).astype(int))
                errors, biases = [], []
                for h in H_VALUES:
                    est = sgn.hurst_rs(data[h], scales=scales, overlap=overlap).hurst
                    errors.append(est - h)
                    biases.append(float(np.mean(est - h)))
                e = np.concatenate(errors)
                rmse = float(np.sqrt(np.mean(e**2)))
                bias_part = float(np.sqrt(np.mean(np.square(biases))))
                rows.append((rmse, bias_part, lo, hi, overlap, biases))
        C.progress(f"smallest window {lo} done")
    rows.sort(key=lambda r: r[0])

    default = sgn.rs_scales(N)
    C.emit(
        C.header(
            "Corrected R/S: pooled RMSE over window ranges",
            extra=[
                f"data: `sgn.fgn({N}, H, size={reps}, rng={SEED} + round(1000 H))`, "
                f"H in {list(H_VALUES)}",
                "estimator: `hurst_rs(x, scales=<20 log-spaced sizes lo..hi>, overlap=...)`, "
                "Anis-Lloyd-Peters correction, ddof=1",
                f"the default `rs_scales({N})` is {int(default[0])}…{int(default[-1])} "
                "non-overlapping",
            ],
        )
    )
    headers = ["rank", "windows", "overlap", "pooled RMSE", "bias part"]
    headers += ["bias H=0.2", "bias H=0.95"]
    table = [
        (
            i + 1,
            f"{lo}…{hi}",
            "yes" if ov else "no",
            f"{rmse:.4f}",
            f"{bp:.4f}",
            f"{b[0]:+.3f}",
            f"{b[-1]:+.3f}",
        )
        for i, (rmse, bp, lo, hi, ov, b) in enumerate(rows)
        if i < 15 or (lo == int(default[0]) and hi == int(default[-1]) and not ov)
    ]
    C.emit(C.markdown_table(headers, table, "rllrrrr"))
    C.emit()
    C.emit(
        f"{len(rows)} settings scanned; the best pooled RMSE is {rows[0][0]:.4f}, of which bias "
        f"alone explains {rows[0][1]:.4f}."
    )


if __name__ == "__main__":
    main()
