"""The collector under the ways researchers write training loops: closures (plain torch and
LBFGS), wrapped optimizers (Accelerate), reference passes that must not replay training's
randomness, batch references drawn afresh per step, two collectors on one model, several param
groups, and resuming a run killed with SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sgn_memory.collect import NoiseCollector  # noqa: E402
from sgn_memory.errors import SgnMemoryError  # noqa: E402
from sgn_memory.store import NoiseStore  # noqa: E402

LOSS = torch.nn.MSELoss()


def _regression(n=64, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, 1, generator=g) + 0.5 * torch.randn(n, 1, generator=g)
    return x, y


def _flat_grad(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy().copy()


@torch.enable_grad()
def _full_grad(model, x, y):
    clone = torch.nn.Linear(x.shape[1], 1)
    clone.load_state_dict(model.state_dict())
    LOSS(clone(x), y).backward()
    return _flat_grad(clone)


# ----------------------------------------------------------------------------- closures
@pytest.mark.parametrize("reference", ["none", "exact"])
def test_step_with_a_closure_records_that_steps_gradient(tmp_path, reference):
    """optimizer.step(closure): the gradient exists only after the closure ran.  Before the
    fix row 0 was all zeros (-grad L with a reference) and row t held step t-1's gradient."""
    x, y = _regression()
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    collector = NoiseCollector(
        model,
        opt,
        tmp_path / "run",
        coordinates="all",
        reference=reference,
        reference_data=[(x, y)] if reference != "none" else None,
        loss_fn=LOSS,
    )
    expected = []
    for t in range(4):
        idx = torch.arange(8 * t, 8 * t + 8)

        def closure(idx=idx):
            opt.zero_grad()
            loss = LOSS(model(x[idx]), y[idx])
            loss.backward()
            collector.observe_loss(loss)
            g = _flat_grad(model)
            expected.append(g - _full_grad(model, x, y) if reference == "exact" else g)
            return loss

        opt.step(closure)
    collector.close()
    store = NoiseStore.open(tmp_path / "run")
    np.testing.assert_array_equal(store.steps, [1, 2, 3, 4])
    np.testing.assert_allclose(store.read_noise(), np.array(expected), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(store.scalar("accumulation"), [1, 1, 1, 1])
    assert np.isfinite(store.scalar("loss")).all()


def test_lbfgs_records_the_first_closure_evaluation_with_a_warning(tmp_path):
    x, y = _regression()
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)
    collector = NoiseCollector(model, opt, tmp_path / "run", coordinates="all")
    first = []

    def closure():
        opt.zero_grad()
        loss = LOSS(model(x), y)
        loss.backward()
        first.append(_flat_grad(model))
        return loss

    starts = []
    with pytest.warns(RuntimeWarning, match="evaluated the closure 4 times"):
        for _ in range(2):
            starts.append(len(first))
            opt.step(closure)
    collector.close()
    recorded = NoiseStore.open(tmp_path / "run").read_noise()
    np.testing.assert_allclose(recorded, np.array([first[i] for i in starts]), rtol=1e-6)
    np.testing.assert_array_equal(NoiseStore.open(tmp_path / "run").scalar("accumulation"), 1)


# ----------------------------------------------------------------------------- wrappers
def test_accelerate_prepared_optimizer_with_accumulation(tmp_path):
    """Accelerate's AcceleratedOptimizer (no _optimizer_step_pre_hooks of its own) is
    unwrapped; under accelerator.accumulate the rows are the real steps, with the gradient
    accumulated over both micro-batches."""
    accelerate = pytest.importorskip("accelerate")
    x, y = _regression(n=64)
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    accelerator = accelerate.Accelerator(cpu=True, gradient_accumulation_steps=2)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    seen = []
    inner = opt.optimizer
    handle = inner.register_step_pre_hook(lambda o, a, k: seen.append(_flat_grad(model)))
    collector = NoiseCollector(model, opt, tmp_path / "run", coordinates="all")
    for xb, yb in loader:
        with accelerator.accumulate(model):
            loss = LOSS(model(xb), yb)
            accelerator.backward(loss)
            collector.observe_loss(loss)
            opt.step()
            opt.zero_grad()
    collector.close()
    handle.remove()
    store = NoiseStore.open(tmp_path / "run")
    assert store.n_complete == 4 == len(seen)  # 8 micro-batches, 4 optimizer steps
    np.testing.assert_array_equal(store.read_noise(), np.array(seen, dtype=np.float32))
    np.testing.assert_array_equal(store.scalar("accumulation"), 2)
    # the accumulated gradient is the mean over the step's two micro-batches
    torch.manual_seed(0)
    fresh = torch.nn.Linear(5, 1)
    LOSS(fresh(x[:8]), y[:8]).backward()
    g0 = _flat_grad(fresh)
    fresh.zero_grad()
    LOSS(fresh(x[8:16]), y[8:16]).backward()
    np.testing.assert_allclose(seen[0], (g0 + _flat_grad(fresh)) / 2, rtol=1e-5, atol=1e-7)
    assert store.attrs["base_optimizer"] == "SGD"


def test_a_failed_constructor_leaves_nothing_behind(tmp_path):
    model = torch.nn.Linear(5, 1)

    class NotAnOptimizer:
        pass

    with pytest.raises(SgnMemoryError, match="cannot find the torch optimizer"):
        NoiseCollector(model, NotAnOptimizer(), tmp_path / "run", coordinates=3)
    assert not (tmp_path / "run").exists()
    with pytest.raises(SgnMemoryError, match="needs the batch size"):
        NoiseCollector(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            tmp_path / "run",
            coordinates=3,
            reference="batch",
            reference_data=torch.utils.data.TensorDataset(*_regression()),
            loss_fn=LOSS,
        )
    assert not (tmp_path / "run").exists()
    # the retry on the same path works
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    NoiseCollector(model, opt, tmp_path / "run", coordinates=3).close()
    assert NoiseStore.open(tmp_path / "run").n_complete == 0


# ------------------------------------------------------------------ reference independence
class _Logged(torch.utils.data.Dataset):
    """(x_i, y_i, i): the index travels with the batch; every access is logged."""

    def __init__(self, x, y):
        self.x, self.y, self.accessed = x, y, []

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.accessed.append(int(i))
        return self.x[i], self.y[i], i


class _LoggedDropout(torch.nn.Module):
    """Dropout drawn from the global generator, every mask logged with the phase it ran in."""

    def __init__(self, log):
        super().__init__()
        self.log = log
        self.phase = "train"

    def forward(self, h):
        mask = torch.rand(h.shape) < 0.5
        self.log.append((self.phase, mask.clone()))
        return h * mask * 2


def test_reference_batches_and_masks_are_not_future_training_ones(tmp_path):
    """Training from a reshuffling DataLoader without a generator (the tutorial way), dropout
    from the global generator.  Before the fix the reference batch at step t was exactly the
    training batch of step t + E and reference dropout masks replayed the next training
    step's; now neither ever equals any later training draw, and training's own stream is
    bitwise what it is without the collector."""
    x, y = _regression(n=96, d=4)
    batch, epochs = 8, 3

    def run(with_collector):
        torch.manual_seed(3)
        log = []
        drop = _LoggedDropout(log)
        model = torch.nn.Sequential(torch.nn.Linear(4, 6), drop, torch.nn.Linear(6, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        data = _Logged(x, y)
        loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True)
        ref = torch.utils.data.DataLoader(_Logged(x, y), batch_size=batch, shuffle=True)
        collector = None
        if with_collector:
            drop.phase = "check"  # the constructor runs one reference batch through the model
            collector = NoiseCollector(
                model,
                opt,
                tmp_path / "run",
                coordinates=10,
                reference="batch",
                reference_data=ref,
                loss_fn=LOSS,
                reference_seed=11,
            )
            drop.phase = "train"
        train_batches, ref_batches = [], []
        for _ in range(epochs):
            for xb, yb, ib in loader:
                train_batches.append(frozenset(ib.tolist()))
                opt.zero_grad()
                LOSS(model(xb), yb).backward()
                drop.phase = "reference"
                n = len(ref.dataset.accessed)
                opt.step()
                ref_batches.append(frozenset(ref.dataset.accessed[n:]))
                drop.phase = "train"
        if collector is not None:
            collector.close()
        return model, train_batches, ref_batches, log

    plain, plain_batches, _, plain_log = run(False)
    model, train_batches, ref_batches, log = run(True)
    for a, b in zip(plain.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert train_batches == plain_batches
    E = 96 // batch
    assert len(ref_batches) == epochs * E and all(len(r) == batch for r in ref_batches)
    later = [set(train_batches[t + 1 :]) for t in range(len(train_batches))]
    assert not any(r in later[t] for t, r in enumerate(ref_batches))
    train_masks = [m for phase, m in log if phase == "train"]
    ref_masks = [(i, m) for i, (phase, m) in enumerate(log) if phase == "reference"]
    assert len(ref_masks) == epochs * E
    for i, mask in ref_masks:
        n_before = sum(1 for phase, _ in log[:i] if phase == "train")
        assert not any(torch.equal(mask, m) for m in train_masks[n_before:])
    assert all(torch.equal(a[1], b) for a, b in zip(plain_log, train_masks, strict=True))
    attrs = NoiseStore.open(tmp_path / "run").attrs
    assert attrs["reference_seed"] == 11 and attrs["reference_sampling"] == "random_subset"
    assert attrs["reference_size"] == batch


def _lag_autocorrelation(u: np.ndarray, lag: int) -> float:
    """Mean over coordinates of the lag autocorrelation of each column."""
    u = u - u.mean(axis=0)
    return float(np.mean((u[lag:] * u[:-lag]).sum(axis=0) / (u * u).sum(axis=0)))


@pytest.mark.parametrize("source", ["loader", "list"])
def test_batch_reference_adds_no_cycle_structure_on_pure_sampling_noise(tmp_path, source):
    """At fixed weights (lr = 0) the recorded noise is pure sampling noise.  With training
    batches reshuffled per epoch (E batches) and a batch reference that draws its batch afresh
    at every step, the lag-E autocorrelation is 0 within its standard error; before the fix a
    shuffled reference loader made it about -1/2 (the reference batch was training's batch of
    t + E) and a list of K reference batches taken in turn put +1/2 at lag K."""
    n, batch, steps = 96, 8, 1920
    E = n // batch  # 12 steps per epoch
    x, y = _regression(n=n, d=4, seed=1)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=True
    )
    if source == "loader":
        ref = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=True
        )
        lags = (E,)
    else:  # K = 10 fixed batches of the data, as the experiment runner used to pass
        ref = [(x[i : i + batch], y[i : i + batch]) for i in range(0, 80, batch)]
        lags = (E, 10)
    collector = NoiseCollector(
        model,
        opt,
        tmp_path / "run",
        coordinates="all",
        reference="batch",
        reference_data=ref,
        loss_fn=LOSS,
        reference_seed=5,
    )
    done = 0
    while done < steps:
        for xb, yb in loader:
            opt.zero_grad()
            LOSS(model(xb), yb).backward()
            opt.step()
            done += 1
    collector.close()
    u = NoiseStore.open(tmp_path / "run").read_noise().astype(np.float64)
    assert u.shape == (steps, 5)
    # SE of a lag autocorrelation of a length-T series with no correlation at that lag is
    # 1/sqrt(T); the mean over 5 (correlated) coordinates is no noisier than one of them
    se = 1 / np.sqrt(steps)
    for lag in lags:
        assert abs(_lag_autocorrelation(u, lag)) < 4 * se, lag
    # the same statistic sees the epoch structure of the training half: at lag 1 within an
    # epoch the training errors are anticorrelated by -1/(E - 1); the independent reference
    # error (M = B: the same variance) halves it
    assert abs(_lag_autocorrelation(u, 1) + 1 / (2 * (E - 1))) < 3 * se


# --------------------------------------------------------------------- bookkeeping
def test_two_collectors_and_every_param_groups_rate(tmp_path):
    x, y = _regression()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.Linear(3, 1))
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.1},
            {"params": model[1].parameters(), "lr": 0.01},
        ]
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    first = NoiseCollector(
        model,
        opt,
        tmp_path / "a",
        coordinates=5,
        reference="exact",
        reference_data=[(x[:16], y[:16]), (x[16:32], y[16:32]), (x[32:], y[32:])],
        loss_fn=LOSS,
    )
    second = NoiseCollector(model, opt, tmp_path / "b", coordinates=5)
    for _ in range(3):
        opt.zero_grad()
        LOSS(model(x[:8]), y[:8]).backward()
        opt.step()
        sched.step()
    first.close()
    second.close()
    for path in ("a", "b"):
        store = NoiseStore.open(tmp_path / path)
        np.testing.assert_array_equal(store.scalar("accumulation"), [1, 1, 1])
        np.testing.assert_allclose(store.scalar("lr"), [0.1, 0.05, 0.025])
        np.testing.assert_allclose(store.scalar("lr.1"), [0.01, 0.005, 0.0025])
        assert store.attrs["param_groups"] == 2


# ------------------------------------------------------------------------------ resume
_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    import torch
    from sgn_memory import NoiseCollector

    path, steps, kill_at, flush_each = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ckpt = os.path.join(path, "ckpt.pt")
    torch.manual_seed(0)
    x = torch.randn(120, 6)
    y = (x[:, :1] > 0).float()
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Dropout(0.3),
                                torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    step, state = 0, None
    if os.path.exists(ckpt):
        saved = torch.load(ckpt, weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        torch.set_rng_state(saved["rng"])
        step, state = saved["step"], saved["collector"]
    collector = NoiseCollector(
        model, opt, os.path.join(path, "store"), coordinates=40, reference="batch",
        reference_data=torch.utils.data.TensorDataset(x, y), reference_batch_size=32,
        loss_fn=loss_fn, every=2, batch_size=12, resume=state, reference_seed=None if state else 7,
    )
    while step < steps:
        epoch, pos = divmod(step, 10)
        order = torch.randperm(120, generator=torch.Generator().manual_seed(epoch))
        idx = order[12 * pos : 12 * pos + 12]
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        collector.observe_loss(loss)
        opt.step()
        step += 1
        if step % 7 == 0:
            blob = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "rng": torch.get_rng_state(), "collector": collector.state_dict()}
            torch.save(blob, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
        if flush_each == "flush":
            collector.store.flush()
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    collector.close()
    torch.save(model.state_dict(), os.path.join(path, "final.pt"))
    """
)


def _run_script(tmp_path, name, steps, kill_at, flush):
    run = tmp_path / name
    run.mkdir(exist_ok=True)
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), str(run), str(steps), str(kill_at), flush],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("flush", ["flush", "noflush"])
def test_resume_after_sigkill_equals_an_uninterrupted_run_bitwise(
    tmp_path, flush, assert_same_store
):
    """Killed at step 26 (checkpoint at 21): with every row flushed, the store holds rows of
    steps 23 and 25 recorded after the checkpoint, which the restart drops and records again;
    without, they never reached the disk.  Either way the final store equals the uninterrupted
    run's bitwise (noise, steps, scalars), with the same reference stream (batch reference
    drawn at random, dropout in the reference passes)."""
    whole = _run_script(tmp_path, "whole", 40, -1, flush)
    assert whole.returncode == 0, whole.stderr
    killed = _run_script(tmp_path, "killed", 40, 26, flush)
    assert killed.returncode == -9, killed.stderr
    on_disk = NoiseStore.open(tmp_path / "killed" / "store").steps
    if flush == "flush":
        assert on_disk[-1] == 25  # rows after the checkpoint (21) that must be dropped
    else:
        assert on_disk[-1] == 21  # state_dict() flushed at the checkpoint
    resumed = _run_script(tmp_path, "killed", 40, -1, flush)
    assert resumed.returncode == 0, resumed.stderr
    assert "gap" not in resumed.stderr
    _, b = assert_same_store(
        tmp_path / "whole" / "store", tmp_path / "killed" / "store", np.arange(1, 41, 2)
    )
    assert b.attrs["resumed_at"] == [21] and b.attrs["reference_seed"] == 7
    final_a = torch.load(tmp_path / "whole" / "final.pt", weights_only=True)
    final_b = torch.load(tmp_path / "killed" / "final.pt", weights_only=True)
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


def test_resume_refuses_another_run_and_warns_of_a_gap(tmp_path):
    x, y = _regression()
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    collector = NoiseCollector(model, opt, tmp_path / "run", coordinates=4, every=1)
    for _ in range(5):
        opt.zero_grad()
        LOSS(model(x), y).backward()
        opt.step()
    state = collector.state_dict()
    collector.close()
    assert state["steps_seen"] == 5
    with pytest.raises(
        SgnMemoryError, match="reference='none', this collector has reference='exact'"
    ):
        NoiseCollector(
            model,
            opt,
            tmp_path / "run",
            coordinates=4,
            reference="exact",
            reference_data=[(x, y)],
            loss_fn=LOSS,
            resume=state,
        )
    with pytest.raises(SgnMemoryError, match="other coordinates"):
        NoiseCollector(model, opt, tmp_path / "run", coordinates=3, resume=state)
    with pytest.raises(SgnMemoryError, match="every=1, this collector has every=2"):
        NoiseCollector(model, opt, tmp_path / "run", coordinates=4, every=2, resume=state)
    with pytest.raises(SgnMemoryError, match="no store there"):
        NoiseCollector(model, opt, tmp_path / "elsewhere", coordinates=4, resume=state)
    assert not (tmp_path / "elsewhere").exists()
    # a checkpoint at step 8 while the store ends at step 5: three rows were never written
    with pytest.warns(RuntimeWarning, match="rows up to step 5 but the checkpoint is at step 8"):
        again = NoiseCollector(model, opt, tmp_path / "run", coordinates=4, resume=8)
    opt.zero_grad()
    LOSS(model(x), y).backward()
    opt.step()
    again.close()
    np.testing.assert_array_equal(NoiseStore.open(tmp_path / "run").steps, [1, 2, 3, 4, 5, 9])
    # resuming from an earlier step drops the later rows
    NoiseCollector(model, opt, tmp_path / "run", coordinates=4, resume=3).close()
    np.testing.assert_array_equal(NoiseStore.open(tmp_path / "run").steps, [1, 2, 3])
    json.dumps(state)  # the state is plain JSON: any checkpoint format can hold it
    assert os.path.isdir(tmp_path / "run")
    warnings.simplefilter("default")


# ------------------------------------------------------- what a review found (2026-12-01)
class _Augmented(torch.utils.data.Dataset):
    """Augmentation from Python's random and NumPy's global generator (albumentations-style)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        import random

        scale = 1.0 + 0.1 * random.random() + 0.1 * float(np.random.rand())  # noqa: NPY002
        return self.x[i] * scale, self.y[i]


def test_reference_passes_leave_python_numpy_rng_and_every_buffer_untouched(tmp_path):
    """Training whose augmentation draws from random / np.random, a spectral-norm layer (its
    power-iteration buffers move in every training-mode forward), a batch reference over the
    same augmented dataset: parameters and buffers bitwise those of a run without the
    collector, and the Python and NumPy generators end where they would."""
    import random

    x, y = _regression(n=64, d=4)

    def run(with_collector):
        random.seed(0)
        np.random.seed(0)  # noqa: NPY002
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.utils.parametrizations.spectral_norm(torch.nn.Linear(4, 6)),
            torch.nn.Tanh(),
            torch.nn.Linear(6, 1),
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        data = _Augmented(x, y)
        loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True)
        collector = None
        if with_collector:
            collector = NoiseCollector(
                model,
                opt,
                tmp_path / "run",
                coordinates=10,
                reference="batch",
                reference_data=data,
                reference_batch_size=16,
                loss_fn=LOSS,
                reference_seed=1,
            )
        for xb, yb in loader:
            opt.zero_grad()
            LOSS(model(xb), yb).backward()
            opt.step()
        if collector is not None:
            collector.close()
        return model.state_dict(), random.random(), float(np.random.rand())  # noqa: NPY002

    plain, watched = run(False), run(True)
    for name, value in plain[0].items():
        assert torch.equal(value, watched[0][name]), name
    assert plain[1:] == watched[1:]
    assert NoiseStore.open(tmp_path / "run").n_complete == 8


def test_a_skipped_amp_step_does_not_lend_its_loss_and_forwards_to_the_next_row(tmp_path):
    """The GradScaler skips iteration 2 (inf loss): row 2 (the next step) would have averaged
    the skipped iteration's observed loss and counted its forward; those are NaN instead."""
    x, y = _regression()
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    collector = NoiseCollector(model, opt, tmp_path / "run", coordinates=3, scaler=scaler)
    for it in range(4):
        opt.zero_grad()
        loss = LOSS(model(x), y) * (float("inf") if it == 1 else 1.0)
        collector.observe_loss(100.0 + it)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    collector.close()
    store = NoiseStore.open(tmp_path / "run")
    np.testing.assert_array_equal(store.steps, [1, 2, 3])
    np.testing.assert_array_equal(store.scalar("skipped"), [np.nan, 1, 0])
    np.testing.assert_array_equal(store.scalar("loss"), [100, np.nan, 103])
    np.testing.assert_array_equal(store.scalar("accumulation"), [1, np.nan, 1])


def test_after_a_recording_failure_steps_are_still_counted_for_resume(tmp_path):
    x, y = _regression()
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    collector = NoiseCollector(
        model,
        opt,
        tmp_path / "run",
        coordinates=3,
        reference="exact",
        reference_data=[(x, y)],
        loss_fn=LOSS,
    )
    with pytest.warns(RuntimeWarning, match="recording stopped at optimizer step 3"):
        for step in range(6):
            if step == 2:
                collector.reference_data = [(torch.randn(4, 2), y[:4])]  # a batch that fails
            opt.zero_grad()
            LOSS(model(x), y).backward()
            opt.step()
    assert collector.state_dict()["steps_seen"] == 6
    assert len(opt._optimizer_step_pre_hooks) == 1  # counting only
    collector.close()
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    np.testing.assert_array_equal(NoiseStore.open(tmp_path / "run").steps, [1, 2])


def test_resume_takes_no_bool_and_restores_the_skip_count(tmp_path):
    x, y = _regression()
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)

    def steps(collector, n):
        for _ in range(n):
            opt.zero_grad()
            scaler.scale(LOSS(model(x), y)).backward()
            scaler.step(opt)
            scaler.update()

    collector = NoiseCollector(model, opt, tmp_path / "run", coordinates=3, scaler=scaler)
    steps(collector, 3)
    state = collector.state_dict()
    collector.close()
    for bad in (False, True, "yes"):
        with pytest.raises(SgnMemoryError, match="resume must be None"):
            NoiseCollector(model, opt, tmp_path / "run", coordinates=3, resume=bad)
    assert NoiseStore.open(tmp_path / "run").n_complete == 3  # nothing was dropped
    again = NoiseCollector(model, opt, tmp_path / "run", coordinates=3, scaler=scaler, resume=state)
    steps(again, 2)
    again.close()
    np.testing.assert_array_equal(
        NoiseStore.open(tmp_path / "run").scalar("skipped"), [np.nan, 0, 0, 0, 0]
    )


def test_a_store_still_being_written_in_this_process_is_refused(tmp_path):
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    first = NoiseCollector(model, opt, tmp_path / "run", coordinates=3)
    with pytest.raises(SgnMemoryError, match="open for writing in this process"):
        NoiseCollector(model, opt, tmp_path / "run", coordinates=3, resume=0)
    with pytest.raises(SgnMemoryError, match="open for writing in this process"):
        NoiseCollector(model, opt, tmp_path / "run", coordinates=3, overwrite=True)
    first.close()
    NoiseCollector(model, opt, tmp_path / "run", coordinates=3, overwrite=True).close()


def test_misuse_is_one_sentence_before_anything_is_written(tmp_path):
    x, y = _regression()
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    samples = list(zip(x, y[:, 0], strict=True))  # samples, not batches
    cases = [
        (dict(reference_data=[(x, y)], loss_fn=LOSS), "reference='none' .the default."),
        (dict(reference="batch", reference_data=x, loss_fn=LOSS), "got a tensor"),
        (dict(reference="batch", reference_data=samples, loss_fn=LOSS), "list of samples"),
        (dict(reference="exact", reference_data=[(x[:, :3], y)], loss_fn=LOSS), "does not go"),
        (dict(coordinates=1e4), "coordinates must be an int"),
    ]
    for kwargs, match in cases:
        kwargs.setdefault("coordinates", 3)
        with pytest.raises(SgnMemoryError, match=match):
            NoiseCollector(model, opt, tmp_path / "run", **kwargs)
        assert not (tmp_path / "run").exists(), kwargs
    NoiseCollector(model, opt, tmp_path / "run", coordinates=3).close()
    with pytest.raises(SgnMemoryError, match="with its 'steps_seen'"):
        NoiseCollector(model, opt, tmp_path / "run", coordinates=3, resume={})
    with pytest.raises(SgnMemoryError, match=r"column 0 is weight\[\d+\] there and"):
        NoiseCollector(model, opt, tmp_path / "run", coordinates=3, seed=9, resume=0)
    assert not opt._optimizer_step_pre_hooks


def test_resume_into_a_foreign_or_damaged_folder_touches_nothing(tmp_path):
    """resume= on a folder that is not a NoiseStore (the user's notes) or whose store attributes
    are damaged: one InvalidStoreError, nothing in the folder changed."""
    from sgn_memory.errors import InvalidStoreError

    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InvalidStoreError):
        NoiseCollector(model, opt, foreign, coordinates=3, resume=2)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert (foreign / "notes.txt").read_text() == "mine"
    NoiseCollector(model, opt, tmp_path / "run", coordinates=3).close()
    meta = tmp_path / "run" / "zarr.json"
    damaged = meta.read_bytes()[:40]
    meta.write_bytes(damaged)
    with pytest.raises(InvalidStoreError):
        NoiseCollector(model, opt, tmp_path / "run", coordinates=3, resume=2)
    assert meta.read_bytes() == damaged
    assert not opt._optimizer_step_pre_hooks
