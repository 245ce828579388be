"""Tests of the collector: invisibility, exact noise against brute force, hooks, probe."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sgn_memory.collect import NoiseCollector, probe_checkpoint, select_coordinates  # noqa: E402
from sgn_memory.errors import SgnMemoryError  # noqa: E402
from sgn_memory.store import NoiseStore  # noqa: E402

N_DATA, BATCH = 256, 16


def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_DATA, 1, 8, 8, generator=g)
    y = torch.randint(0, 3, (N_DATA,), generator=g)
    return x, y


def cnn(dropout: float = 0.2):
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 36, 3),
    )


LOSS = torch.nn.CrossEntropyLoss()


def full_batches(x, y, size=64):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


class TwoPassSAM:
    """Minimal SAM (Foret et al. 2021): ascend by rho g/|g|, take the gradient there, restore,
    step the base optimizer."""

    def __init__(self, params, base, rho=0.05):
        self.params = list(params)
        self.base_optimizer = base
        self.rho = rho
        self.param_groups = base.param_groups
        self._e = None

    @torch.no_grad()
    def first_step(self):
        norm = torch.sqrt(sum((p.grad**2).sum() for p in self.params))
        self._e = [self.rho * p.grad / (norm + 1e-12) for p in self.params]
        for p, e in zip(self.params, self._e, strict=True):
            p.add_(e)

    @torch.no_grad()
    def second_step(self):
        # the base step runs at the perturbed point's gradient, then the perturbation is removed
        for p, e in zip(self.params, self._e, strict=True):
            p.sub_(e)
        self.base_optimizer.step()

    def zero_grad(self):
        self.base_optimizer.zero_grad()


class TwoPassStableSAM(TwoPassSAM):
    """Minimal StableSAM (Tan et al. 2024): as SAM, but the perturbed-point gradient is rescaled
    to the norm of the gradient at w before the base step; the factor is exposed as
    ``gradient_scale`` (the collector then records the noise of the unscaled g_s)."""

    @torch.no_grad()
    def first_step(self):
        self._norm = torch.sqrt(sum((p.grad**2).sum() for p in self.params))
        super().first_step()

    @torch.no_grad()
    def second_step(self):
        for p, e in zip(self.params, self._e, strict=True):
            p.sub_(e)
        surrogate = torch.sqrt(sum((p.grad**2).sum() for p in self.params))
        self.gradient_scale = self._norm / surrogate
        for p in self.params:
            p.grad.mul_(self.gradient_scale)
        self.base_optimizer.step()


def train(model, optimizer, steps, *, collector_args=None, store=None, sam=False, seed=5):
    """The user's loop; returns the collector (or None)."""
    x, y = data()
    collector = None
    if collector_args is not None:
        collector = NoiseCollector(model, optimizer, store, **collector_args)
    torch.manual_seed(seed)
    try:
        for _ in range(steps):
            idx = torch.randint(0, N_DATA, (BATCH,))
            optimizer.zero_grad()
            loss = LOSS(model(x[idx]), y[idx])
            loss.backward()
            if collector is not None:
                collector.observe_loss(loss)
            if sam:
                optimizer.first_step()
                optimizer.zero_grad()
                LOSS(model(x[idx]), y[idx]).backward()
                optimizer.second_step()
            else:
                optimizer.step()
    finally:
        if collector is not None:
            collector.close()
    return collector


def test_import_does_not_pull_torch_or_zarr():
    code = "import sys, sgn_memory; print('torch' in sys.modules, 'zarr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_coordinates_are_stratified_seeded_and_valid():
    model = cnn()
    coords = select_coordinates(model, 100, seed=3)
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    assert len(coords) == 100
    names, counts = np.unique(coords.param_name, return_counts=True)
    assert set(names) == set(sizes)  # every tensor gets at least one
    for n, c in zip(names, counts, strict=True):  # proportional to size, +-1 and the minimum
        assert abs(c - 100 * sizes[n] / sum(sizes.values())) <= 1.5
    assert all(0 <= i < sizes[n] for n, i in zip(coords.param_name, coords.flat_index, strict=True))
    pairs = list(zip(coords.param_name, coords.flat_index, strict=True))
    assert len(set(pairs)) == 100
    again = select_coordinates(model, 100, seed=3)
    np.testing.assert_array_equal(again.flat_index, coords.flat_index)
    assert not np.array_equal(select_coordinates(model, 100, seed=4).flat_index, coords.flat_index)
    assert coords.layer[list(coords.param_name).index("5.weight")] == "5"
    assert len(select_coordinates(model, "all")) == sum(sizes.values())
    explicit = select_coordinates(model, [("5.bias", 2), ("0.weight", 0)])
    assert list(explicit.param_name) == ["5.bias", "0.weight"]
    with pytest.raises(SgnMemoryError):
        select_coordinates(model, [("nope", 0)])
    with pytest.raises(SgnMemoryError):
        select_coordinates(model, 10**6)


def test_collector_is_bitwise_invisible(tmp_path):
    """50 steps of a CNN with BatchNorm and dropout, reference 'exact': same final state."""
    x, y = data()
    plain = cnn()
    opt = torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9)
    train(plain, opt, 50)
    rng_plain = torch.get_rng_state()

    watched = cnn()
    opt = torch.optim.SGD(watched.parameters(), lr=0.1, momentum=0.9)
    args = dict(coordinates=200, reference="exact", reference_data=full_batches(x, y), loss_fn=LOSS)
    train(watched, opt, 50, collector_args=args, store=tmp_path / "run")
    for (name, a), b in zip(plain.state_dict().items(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(rng_plain, torch.get_rng_state())
    store = NoiseStore.open(tmp_path / "run")
    assert store.n_complete == 50 and store.attrs["reference"] == "exact"


def fresh_copy(model):
    """Same weights and buffers, no hooks (deepcopy would copy the collector's hook)."""
    clone = cnn(dropout=0.0)
    clone.load_state_dict(model.state_dict())
    return clone


@torch.enable_grad()
def brute_force_noise(model, coords, x, y, shift=None, grad_scale=1.0):
    """g (current .grad) minus the full gradient of a fresh copy (at w + shift), at the
    recorded coordinates."""
    clone = fresh_copy(model)
    if shift is not None:
        with torch.no_grad():
            for p, e in zip(clone.parameters(), shift, strict=True):
                p.add_(e)
    params = dict(clone.named_parameters())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for xb, yb in full_batches(x, y):
        clone.zero_grad()
        (LOSS(clone(xb), yb) * len(yb)).backward()
        for n, p in params.items():
            total[n] += p.grad
    current = dict(model.named_parameters())
    out = []
    for n, i in zip(coords.param_name, coords.flat_index, strict=True):
        g = current[n].grad.reshape(-1)[i] / grad_scale
        out.append(float(g - total[n].reshape(-1)[i] / len(y)))
    return np.array(out, dtype=np.float64)


@pytest.mark.parametrize("optim", ["sgd", "adam", "sam", "stablesam"])
def test_recorded_noise_equals_brute_force(tmp_path, optim):
    """u_t = g_B(w_t) - grad L(w_t) recomputed independently at every step (float32); under
    StableSAM the noise of the unscaled perturbed-point gradient, with gamma stored."""
    x, y = data()
    model = cnn(dropout=0.0)
    if optim == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
    elif optim == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
    else:
        two_pass = TwoPassSAM if optim == "sam" else TwoPassStableSAM
        opt = two_pass(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.05))
    sam = optim in ("sam", "stablesam")
    expected, scales = [], []
    base = opt.base_optimizer if sam else opt

    def check(optimizer, args, kwargs):  # runs before the collector's hook, same state
        # under SAM the gradient was taken at w + e (e is known here); SAM has restored w
        shift = opt._e if sam else None
        scale = float(opt.gradient_scale) if optim == "stablesam" else 1.0
        scales.append(scale)
        expected.append(brute_force_noise(model, coords, x, y, shift, scale))

    coords = select_coordinates(model, 60, seed=1)
    handle = base.register_step_pre_hook(check)
    args = dict(
        coordinates=60, reference="exact", reference_data=full_batches(x, y), loss_fn=LOSS, seed=1
    )
    train(model, opt, 8, collector_args=args, store=tmp_path / "run", sam=sam)
    handle.remove()
    store = NoiseStore.open(tmp_path / "run")
    recorded = store.read_noise()
    assert recorded.shape == (8, 60)
    np.testing.assert_allclose(recorded, np.array(expected), rtol=1e-4, atol=2e-6)
    assert store.attrs["base_optimizer"] == type(base).__name__
    if optim == "stablesam":
        assert min(abs(np.log(scales))) > 5e-3, scales  # gamma != 1: the test has teeth
        np.testing.assert_allclose(store.scalar("gradient_scale"), scales, rtol=1e-6)
    elif optim == "sam":
        assert np.isnan(store.scalar("gradient_scale")).all()


def test_hooks_are_removed_on_exit_even_on_error(tmp_path):
    model = cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="boom"):
        with NoiseCollector(model, opt, tmp_path / "run", coordinates=10):
            opt.zero_grad()
            LOSS(model(data()[0][:4]), data()[1][:4]).backward()
            opt.step()
            raise RuntimeError("boom")
    assert not opt._optimizer_step_pre_hooks
    assert not model._forward_pre_hooks
    store = NoiseStore.open(tmp_path / "run")
    assert store.n_complete == 1  # the row taken before the error is on disk


def test_scalars_accumulation_clipping_and_batch_reference(tmp_path):
    x, y = data()
    model = cnn(dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    coords = select_coordinates(model, 30, seed=0)
    ref_batches = [(x[:128], y[:128]), (x[128:], y[128:])]
    seen, norms, expected = [], [], []

    def at_coords(grads):
        return np.array(
            [
                float(grads[n].reshape(-1)[i])
                for n, i in zip(coords.param_name, coords.flat_index, strict=True)
            ]
        )

    def grab(optimizer, args, kwargs):  # runs before the collector's hook, same state
        grads = {n: p.grad for n, p in model.named_parameters()}
        seen.append(at_coords(grads))
        norms.append(float(torch.sqrt(sum((g**2).sum() for g in grads.values()))))
        if len(seen) % 2 == 1:  # a recorded step: the collector draws one of the two batches
            options = []
            for xb, yb in ref_batches:
                clone = fresh_copy(model)
                with torch.enable_grad():
                    LOSS(clone(xb), yb).backward()
                ref = {n: p.grad for n, p in clone.named_parameters()}
                options.append(seen[-1] - at_coords(ref))
            expected.append(options)

    h = opt.register_step_pre_hook(grab)
    collector = NoiseCollector(
        model,
        opt,
        tmp_path / "run",
        coordinates=30,
        reference="batch",
        reference_data=ref_batches,
        loss_fn=LOSS,
        batch_size=BATCH,
        every=2,
    )
    torch.manual_seed(0)
    for _ in range(6):
        opt.zero_grad()
        for _ in range(3):  # gradient accumulation over 3 micro-batches
            idx = torch.randint(0, N_DATA, (BATCH,))
            (LOSS(model(x[idx]), y[idx]) / 3).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
        opt.step()
    collector.close()
    h.remove()
    store = NoiseStore.open(tmp_path / "run")
    assert store.n_complete == 3  # every=2 over 6 steps
    np.testing.assert_array_equal(store.steps, [1, 3, 5])
    np.testing.assert_array_equal(store.scalar("accumulation"), [3, 3, 3])
    np.testing.assert_allclose(store.scalar("lr"), 0.05)
    assert store.attrs["reference_size"] == 128
    # the hook saw the clipped gradient (total norm <= 0.01), and the recorded noise is that
    # accumulated, clipped gradient minus the gradient of one of the listed reference batches
    assert max(norms) <= 0.01 * (1 + 1e-5)
    assert store.attrs["reference_sampling"] == "random_listed_batch"
    for row, options in zip(store.read_noise(), expected, strict=True):
        distance = [np.max(np.abs(row - o) / (2e-7 + 1e-4 * np.abs(o))) for o in options]
        assert min(distance) <= 1, distance
    b = store.scalar("b_simple")
    np.testing.assert_allclose(
        b, BATCH * store.scalar("noise_norm_sq") / store.scalar("grad_norm_sq"), rtol=1e-12
    )


def test_probe_checkpoint_matches_brute_force_and_touches_nothing(tmp_path):
    x, y = data()
    model = cnn(dropout=0.0)
    state = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    loader = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, N_DATA, BATCH)]
    probe_checkpoint(
        model,
        LOSS,
        loader,
        n_batches=20,
        store=tmp_path / "probe",
        coordinates=40,
        reference_data=full_batches(x, y),
    )
    for (name, a), b in zip(state.items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state())
    store = NoiseStore.open(tmp_path / "probe")
    assert store.protocol == "checkpoint" and store.n_complete == 20
    coords = store.coordinates
    # brute force for batch k (cycling the 16 loader batches)
    for k in (0, 5, 17):
        xb, yb = loader[k % len(loader)]
        clone = fresh_copy(model)
        LOSS(clone(xb), yb).backward()
        model_grad = clone
        want = brute_force_noise(model_grad, coords, x, y)
        np.testing.assert_allclose(store.read_noise(rows=slice(k, k + 1))[0], want, atol=2e-6)
    # with the default reference (one pass over the same loader) the 16 minibatch noises of an
    # epoch average to 0 exactly (BatchNorm sees the same batches in both)
    probe_checkpoint(model, LOSS, loader, n_batches=16, store=tmp_path / "p2", coordinates=40)
    epoch = NoiseStore.open(tmp_path / "p2").read_noise().mean(axis=0)
    np.testing.assert_allclose(epoch, 0, atol=1e-6)


def _mlp():
    torch.manual_seed(2)
    return torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))


def _shard(rank):
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(8, 10, generator=g), torch.randint(0, 2, (8,), generator=g)


def _full_data():
    g = torch.Generator().manual_seed(7)
    return [(torch.randn(32, 10, generator=g), torch.randint(0, 2, (32,), generator=g))]


def _ddp_worker(rank, root, world):
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{root}/init", rank=rank, world_size=world
    )
    try:
        model = torch.nn.parallel.DistributedDataParallel(_mlp())
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        raw = NoiseCollector(model, opt, f"{root}/run", coordinates="all")
        exact = NoiseCollector(
            model,
            opt,
            f"{root}/exact",
            coordinates="all",
            reference="exact",
            reference_data=_full_data(),
            loss_fn=LOSS,
        )
        x, y = _shard(rank)
        opt.zero_grad()
        LOSS(model(x), y).backward()
        opt.step()
        raw.close()
        exact.close()
        # rank 0 is still writing its store; tearing gloo down on one rank while the other is
        # busy aborts the process ("terminate called without an active exception")
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_rank0_records_the_all_reduced_gradient(tmp_path):
    """2 processes on gloo: the row rank 0 writes is the mean of both ranks' gradients."""
    torch.multiprocessing.spawn(_ddp_worker, args=(str(tmp_path), 2), nprocs=2, join=True)
    store = NoiseStore.open(tmp_path / "run")
    assert store.n_complete == 1
    model = _mlp()
    grads = []
    for rank in range(2):
        model.zero_grad()
        x, y = _shard(rank)
        LOSS(model(x), y).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy())
    np.testing.assert_allclose(store.read_noise()[0], np.mean(grads, axis=0), rtol=1e-5, atol=1e-7)
    # with an exact reference (run on rank 0 only, on the unwrapped module)
    model.zero_grad()
    ((xf, yf),) = _full_data()
    LOSS(model(xf), yf).backward()
    full = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()
    exact = NoiseStore.open(tmp_path / "exact")
    np.testing.assert_allclose(
        exact.read_noise()[0], np.mean(grads, axis=0) - full, rtol=1e-5, atol=1e-6
    )
    assert exact.attrs["reference_size"] == 32


def test_compiled_model_and_amp_scaler(tmp_path):
    """Hooks registered before torch.compile still fire; under a GradScaler the recorded
    gradient is the unscaled one and the scale is stored."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    collector = NoiseCollector(model, opt, tmp_path / "run", coordinates="all", scaler=scaler)
    compiled = torch.compile(model, backend="aot_eager")
    xs, ys = torch.randn(16, 10), torch.randint(0, 2, (16,))
    expected = []
    for _ in range(3):
        opt.zero_grad()
        reference = _mlp()
        reference.load_state_dict(model.state_dict())
        LOSS(reference(xs), ys).backward()
        expected.append(torch.cat([p.grad.reshape(-1) for p in reference.parameters()]).numpy())
        scaler.scale(LOSS(compiled(xs), ys)).backward()
        scaler.step(opt)
        scaler.update()
    collector.close()
    store = NoiseStore.open(tmp_path / "run")
    assert store.n_complete == 3
    np.testing.assert_allclose(store.read_noise(), np.array(expected), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(store.scalar("amp_scale"), 1024.0)
    np.testing.assert_array_equal(store.scalar("accumulation"), [1, 1, 1])


@pytest.mark.parametrize("every", [1, 2])
def test_steps_the_amp_scaler_skips_are_counted(tmp_path, every):
    """Iterations with inf gradients never reach the optimizer; the next recorded row counts
    them (across scale growth at the growth interval and across unrecorded steps)."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=3)
    collector = NoiseCollector(
        model, opt, tmp_path / "run", coordinates=5, scaler=scaler, every=every
    )
    xs, ys = torch.randn(16, 10), torch.randint(0, 2, (16,))
    pattern = "..xx...x.xxx....x.."  # x: an iteration whose gradients are inf
    for it in pattern:
        opt.zero_grad()
        loss = LOSS(model(xs), ys) * (math.inf if it == "x" else 1.0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    collector.close()
    # expected: skipped iterations since the previous recorded row; NaN on the first row
    expected, since, steps = [], math.nan, 0
    for it in pattern:
        if it == "x":
            since += 1
            continue
        steps += 1
        if (steps - 1) % every == 0:
            expected.append(since)
            since = 0.0
        elif math.isnan(since):
            since = 0.0
    store = NoiseStore.open(tmp_path / "run")
    assert store.n_complete == len(expected)
    np.testing.assert_array_equal(store.scalar("skipped"), expected)
    assert np.nansum(store.scalar("skipped")) >= 5  # the pattern's skips after the first row


def test_explicit_coordinates_in_any_order(tmp_path):
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pairs = [("2.bias", 1), ("0.weight", 7), ("2.weight", 3), ("0.weight", 0), ("2.bias", 0)]
    collector = NoiseCollector(model, opt, tmp_path / "run", coordinates=pairs)
    x, y = torch.randn(8, 10), torch.randint(0, 2, (8,))
    LOSS(model(x), y).backward()
    params = dict(model.named_parameters())
    want = [float(params[n].grad.reshape(-1)[i]) for n, i in pairs]
    opt.step()
    collector.close()
    np.testing.assert_array_equal(NoiseStore.open(tmp_path / "run").read_noise()[0], want)


def test_a_recording_failure_never_stops_training(tmp_path):
    """A reference batch the model cannot take: at construction, one SgnMemoryError and no
    store; when it turns bad later (here: swapped in), one warning, recording stops, rows
    kept, the run goes on exactly as without the collector; on_error='raise' propagates."""
    x, y = data()
    bad = [(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))]  # wrong input shape
    good = full_batches(x, y)
    model = cnn(dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SgnMemoryError, match="does not go through the model and loss"):
        NoiseCollector(
            model,
            opt,
            tmp_path / "run",
            coordinates=10,
            reference="exact",
            reference_data=bad,
            loss_fn=LOSS,
        )
    assert not (tmp_path / "run").exists() and not opt._optimizer_step_pre_hooks
    plain = cnn(dropout=0.0)
    popt = torch.optim.SGD(plain.parameters(), lr=0.1)
    collector = NoiseCollector(
        model,
        opt,
        tmp_path / "run",
        coordinates=10,
        reference="exact",
        reference_data=good,
        loss_fn=LOSS,
    )
    with pytest.warns(RuntimeWarning, match="recording stopped at optimizer step 2"):
        for m, o in ((model, opt), (plain, popt)):
            for step in range(3):
                if step == 1:
                    collector.reference_data = bad
                o.zero_grad()
                LOSS(m(x[:8]), y[:8]).backward()
                o.step()
    collector.close()
    assert collector.error is not None and not opt._optimizer_step_pre_hooks
    for a, b in zip(model.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b)
    assert NoiseStore.open(tmp_path / "run").n_complete == 1
    model2 = cnn(dropout=0.0)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1)
    with NoiseCollector(
        model2,
        opt2,
        tmp_path / "run2",
        coordinates=10,
        reference="exact",
        reference_data=good,
        loss_fn=LOSS,
        on_error="raise",
    ) as raising:
        raising.reference_data = bad
        LOSS(model2(x[:8]), y[:8]).backward()
        with pytest.raises(RuntimeError):
            opt2.step()
