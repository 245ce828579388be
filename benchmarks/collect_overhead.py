"""What the NoiseCollector costs a training step, on CPU.

Run from the repository root (needs torch; the package's test environment has it):

    .venv/bin/python benchmarks/collect_overhead.py            # ~3 min on 2 cores
    .venv/bin/python benchmarks/collect_overhead.py --quick

Three models (an MLP 784-512-512-10, a small CNN and a wider CNN on 1x28x28 inputs), batch
128, SGD with momentum, synthetic data.  For each: the median time of a plain training step; the
same with the collector recording k = 10^5 and 10^4 coordinates (reference "none"), with
``optimizer.step()`` and with ``optimizer.step(closure)`` (the path PyTorch Lightning takes),
as an overhead in percent and as the fixed cost per recorded row in microseconds; with reference
"exact" over R reference samples, the extra time per step next to one plain forward+backward
pass over those R samples (the unavoidable cost of an exact reference); and the process's
memory over a long run with the collector attached (it must stay flat: rows go to disk in
blocks).  Goals (issue 12): <= 3% on steps of 10 ms or more; the exact reference <= 1.3x.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

import _common as C
import torch

from sgn_memory.collect import NoiseCollector

BATCH = 128
K = 100_000


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    )


def cnn(c1=16, c2=32):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, c1, 5),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(c1, c2, 5),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(c2 * 16, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )


def wide_cnn():
    return cnn(32, 64)


LOSS = torch.nn.CrossEntropyLoss()


def batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, n, BATCH)]


def step_times(model, opt, data, steps, collector=None, closure=False) -> list[float]:
    times = []
    for i in range(steps):
        x, y = data[i % len(data)]
        t0 = time.perf_counter()
        if closure:

            def step_closure(x=x, y=y):
                opt.zero_grad()
                loss = LOSS(model(x), y)
                loss.backward()
                if collector is not None:
                    collector.observe_loss(loss)
                return loss

            opt.step(step_closure)
        else:
            opt.zero_grad()
            loss = LOSS(model(x), y)
            loss.backward()
            if collector is not None:
                collector.observe_loss(loss)
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


def _time_the_hook(collector, out: list) -> None:
    """Benchmark-only instrumentation: time each recorded row inside the step pre-hook."""
    record = collector._guarded

    def timed(optimizer):
        t0 = time.perf_counter()
        record(optimizer)
        out.append(time.perf_counter() - t0)

    collector._guarded = timed


def forward_backward_time(model, data) -> float:
    params = [p for p in model.parameters()]
    t0 = time.perf_counter()
    for x, y in data:
        torch.autograd.grad(LOSS(model(x), y), params)
    return time.perf_counter() - t0


def _rss_mib() -> float:
    """Current resident set size of this process (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(name, make, steps, ref_samples, long_steps, tmp) -> list[list[str]]:
    data = batches(BATCH * 32)
    rows = []
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step_times(model, opt, data, 10)  # warm-up
    # interleave plain and collected rounds so drifts in machine load hit both alike
    plain, plain_closure, in_hook = [], [], []
    recorded = {(k, c): [] for k in (K, K // 10) for c in (False, True)}
    for r in range(6):
        plain += step_times(model, opt, data, steps // 6)
        plain_closure += step_times(model, opt, data, steps // 6, closure=True)
        for (k, closure), out in recorded.items():
            collector = NoiseCollector(
                model, opt, f"{tmp}/{name}-none-{k}-{closure}-{r}", coordinates=k
            )
            if (k, closure) == (K, False):
                _time_the_hook(collector, in_hook)
            out += step_times(model, opt, data, steps // 6, collector, closure=closure)
            collector.close()
    t_plain = statistics.median(plain)
    n_params = sum(p.numel() for p in model.parameters())
    rows.append([name, "plain step", C.fmt_seconds(t_plain), "—", f"{n_params:,} parameters"])
    goal = "goal <= +3% (steps >= 10 ms)" if t_plain >= 0.01 else "step < 10 ms: no goal"
    rows.append(
        [
            name,
            f"time inside the collector's hook per row, k = {K:,}",
            C.fmt_seconds(statistics.median(in_hook)),
            f"{1e6 * statistics.median(in_hook) / (K / 1e5):.0f} µs per 10^5 coordinates",
            "the fixed cost per recorded row (the writer thread's disk writes come on top)",
        ]
    )
    for (k, closure), times in recorded.items():
        base = statistics.median(plain_closure if closure else plain)
        t = statistics.median(times)
        rows.append(
            [
                name,
                f"collector, k = {k:,}, reference 'none'" + (", step(closure)" if closure else ""),
                C.fmt_seconds(t),
                f"{100 * (t / base - 1):+.1f}%; {1e6 * (t - base):+.0f} µs per row",
                goal,
            ]
        )
    ref = batches(ref_samples, seed=1)
    collector = NoiseCollector(
        model,
        opt,
        f"{tmp}/{name}-exact",
        coordinates=K,
        reference="exact",
        reference_data=ref,
        loss_fn=LOSS,
    )
    exact = step_times(model, opt, data, 10, collector)
    collector.close()
    fb = statistics.median(forward_backward_time(model, ref) for _ in range(3))
    extra = statistics.median(exact) - t_plain
    rows.append(
        [
            name,
            f"collector, reference 'exact' over {ref_samples:,} samples",
            C.fmt_seconds(statistics.median(exact)),
            f"extra {C.fmt_seconds(extra)} = {extra / fb:.2f}x one forward+backward over them",
            "goal <= 1.3x",
        ]
    )
    # memory over a long run: current RSS at 10%, 50% and 100% of the steps (must stay flat)
    collector = NoiseCollector(model, opt, f"{tmp}/{name}-long", coordinates=K, reference="none")
    marks = []
    done = 0
    long_steps = long_steps if t_plain < 0.02 else long_steps // 5  # the slow model: 1/5
    for frac in (0.1, 0.5, 1.0):
        todo = int(long_steps * frac) - done
        step_times(model, opt, data, todo, collector)
        done += todo
        marks.append(f"{_rss_mib():.0f}")
    collector.close()
    rows.append(
        [
            name,
            f"RSS over {long_steps:,} steps with the collector",
            "—",
            f"{' / '.join(marks)} MiB at 10% / 50% / 100% of the steps",
            "goal: flat",
        ]
    )
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    steps, ref_samples, long_steps = (60, 512, 500) if args.quick else (300, 4096, 10_000)
    torch.set_num_threads(2)
    C.emit(
        C.header(
            "Collector overhead on CPU",
            extra=[f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}"],
        )
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in (("MLP", mlp), ("CNN", cnn), ("wide CNN", wide_cnn)):
            C.progress(f"{name}")
            rows += measure(name, make, steps, ref_samples, long_steps, tmp)
    C.emit(C.markdown_table(["model", "configuration", "median step", "overhead", "note"], rows))
    C.emit(f"\nLoad average at end (1, 5, 15 min): {C.load_average()}")


if __name__ == "__main__":
    main()
