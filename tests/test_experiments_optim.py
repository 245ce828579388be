"""Tests of experiments.optim (SAM, StableSAM, training_step) and experiments.sharpness.

SAM-type steps are checked against the hand formulas on a quadratic L(w) = 1/2 w'Aw - b'w in
float64 (tolerance 1e-12: the same arithmetic up to summation order); eigenvalues against the
dense Hessian from torch.autograd.functional.hessian.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from experiments.optim import SAM, StableSAM, make_optimizer, training_step  # noqa: E402
from experiments.sharpness import _Hessian, hessian_trace, top_hessian_eigenvalue  # noqa: E402
from sgn_memory.collect import NoiseCollector  # noqa: E402
from sgn_memory.store import NoiseStore  # noqa: E402

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tensors here are tiny: intra-op threads only contend (3x slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- quadratic
def quadratic_problem(dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(dim, dim, generator=g, dtype=F64)
    a = m @ m.T + dim * torch.eye(dim, dtype=F64)  # SPD, known
    b = torch.randn(dim, generator=g, dtype=F64)
    w0 = torch.randn(dim, generator=g, dtype=F64)
    return a, b, w0


class Quadratic(torch.nn.Module):
    """L(w) = 1/2 w'Aw - b'w, returned by forward (the inputs are ignored)."""

    def __init__(self, a, b, w0):
        super().__init__()
        self.register_buffer("a", a)
        self.register_buffer("b", b)
        self.w = torch.nn.Parameter(w0.clone())

    def forward(self, x):
        return 0.5 * self.w @ self.a @ self.w - self.b @ self.w


def identity_loss(out, y):
    return out


X0, Y0 = torch.zeros(3, 1, dtype=F64), torch.zeros(3, dtype=F64)


def grad_q(a, b, w):
    return a @ w - b


def sam_point(a, b, w, rho, adaptive=False):
    """w + e(w) by the formula of Foret et al. (ASAM with T_w = |w| if adaptive)."""
    g = grad_q(a, b, w)
    if adaptive:
        return w + rho * w**2 * g / torch.linalg.vector_norm(w * g)
    return w + rho * g / torch.linalg.vector_norm(g)


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_sgd_step_equals_hand_formula(adaptive):
    a, b, w0 = quadratic_problem()
    lr, rho = 0.1, 0.3
    model = Quadratic(a, b, w0)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=rho, adaptive=adaptive, lr=lr)
    loss = training_step(model, identity_loss, opt, X0, Y0)
    want = w0 - lr * grad_q(a, b, sam_point(a, b, w0, rho, adaptive))
    assert loss == pytest.approx(float(0.5 * w0 @ a @ w0 - b @ w0), rel=1e-15)
    torch.testing.assert_close(model.w.detach(), want, rtol=0, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())


def test_sam_momentum_two_steps_by_hand():
    a, b, w0 = quadratic_problem(seed=1)
    lr, rho, mu = 0.05, 0.2, 0.9
    model = Quadratic(a, b, w0)
    opt = make_optimizer("sam", model.parameters(), lr=lr, momentum=mu, rho=rho)
    training_step(model, identity_loss, opt, X0, Y0)
    training_step(model, identity_loss, opt, X0, Y0)
    buf1 = grad_q(a, b, sam_point(a, b, w0, rho))  # torch SGD: first buffer = gradient
    w1 = w0 - lr * buf1
    buf2 = mu * buf1 + grad_q(a, b, sam_point(a, b, w1, rho))
    w2 = w1 - lr * buf2
    torch.testing.assert_close(model.w.detach(), w2, rtol=0, atol=1e-12)


def test_stablesam_step_renormalises_the_surrogate_gradient():
    a, b, w0 = quadratic_problem(seed=2)
    lr, rho = 0.1, 0.5
    model = Quadratic(a, b, w0)
    opt = StableSAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr)
    training_step(model, identity_loss, opt, X0, Y0)
    g = grad_q(a, b, w0)
    g_s = grad_q(a, b, sam_point(a, b, w0, rho))
    want = w0 - lr * g_s * torch.linalg.vector_norm(g) / torch.linalg.vector_norm(g_s)
    torch.testing.assert_close(model.w.detach(), want, rtol=0, atol=1e-12)
    # and it is not plain SAM (rho large enough for the norms to differ)
    assert not torch.allclose(model.w.detach(), w0 - lr * g_s, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls", [SAM, StableSAM])
def test_restore_is_bitwise(cls):
    """With lr = 0 a full step must give back the very same bits (float32: w + e - e != w)."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))
    x, y = torch.randn(16, 5), torch.randn(16, 2)
    opt = cls(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.0)
    before = [p.detach().clone() for p in model.parameters()]
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.first_step(zero_grad=True)
    moved = [p.detach().clone() for p in model.parameters()]
    assert not all(torch.equal(m, w) for m, w in zip(moved, before, strict=True))
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.second_step(zero_grad=True)
    for p, w in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), w)
    # the test has teeth: restoring by subtraction would not be bitwise here
    e = [m - w for m, w in zip(moved, before, strict=True)]
    assert not all(torch.equal(m - d, w) for m, d, w in zip(moved, e, before, strict=True))


@pytest.mark.parametrize("cls", [SAM, StableSAM])
def test_zero_gradient_gives_no_perturbation_and_no_nan(cls):
    a = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=F64)
    w0 = torch.tensor([1.0, -2.0], dtype=F64)
    model = Quadratic(a, a @ w0, w0)  # exact minimum: the gradient is exactly 0
    opt = cls(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    training_step(model, identity_loss, opt, X0, Y0)
    assert torch.equal(model.w.detach(), w0)


def test_sam_step_without_closure_raises_and_closure_error_restores():
    a, b, w0 = quadratic_problem()
    model = Quadratic(a, b, w0)
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    identity_loss(model(X0), Y0).backward()

    def failing():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        opt.step(failing)
    assert torch.equal(model.w.detach(), w0)  # back at w, ready for the next step
    with pytest.raises(RuntimeError, match="without a preceding first_step"):
        opt.second_step()


# ------------------------------------------------------------------------ make_optimizer
def test_make_optimizer_names_and_bases():
    params = [torch.nn.Parameter(torch.zeros(3))]
    expect = {
        "sgd": torch.optim.SGD,
        "momentum": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sam": SAM,
        "stablesam": StableSAM,
    }
    for name, cls in expect.items():
        assert type(make_optimizer(name, params, lr=0.1)) is cls
    assert make_optimizer("sgd", params, lr=0.1).param_groups[0]["momentum"] == 0.0
    assert (
        make_optimizer("momentum", params, lr=0.1, momentum=0.8).param_groups[0]["momentum"] == 0.8
    )
    sam = make_optimizer("sam", params, lr=0.1)
    assert type(sam.base_optimizer) is torch.optim.SGD
    assert sam.base_optimizer.param_groups[0]["momentum"] == 0.9
    for base, cls in [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)]:
        opt = make_optimizer("stablesam", params, lr=0.1, base=base, betas=(0.8, 0.99))
        assert type(opt.base_optimizer) is cls
    assert make_optimizer("sam", params, lr=1, base="adam").param_groups[0]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="stablesam"):
        make_optimizer("lion", params, lr=0.1)
    with pytest.raises(ValueError, match="momentum"):
        make_optimizer("sam", params, lr=0.1, base="lion")


def test_weight_decay_reaches_the_base_optimizer():
    a, b, w0 = quadratic_problem(seed=4)
    lr, rho, wd = 0.1, 0.2, 0.01
    model = Quadratic(a, b, w0)
    opt = make_optimizer("sam", model.parameters(), lr=lr, rho=rho, weight_decay=wd, base="sgd")
    assert opt.base_optimizer.param_groups[0]["weight_decay"] == wd
    training_step(model, identity_loss, opt, X0, Y0)
    # torch SGD: grad + wd * w at the restored weights w
    want = w0 - lr * (grad_q(a, b, sam_point(a, b, w0, rho)) + wd * w0)
    torch.testing.assert_close(model.w.detach(), want, rtol=0, atol=1e-12)


def test_lr_scheduler_on_sam_changes_the_base_lr():
    a, b, w0 = quadratic_problem()
    model = Quadratic(a, b, w0)
    opt = make_optimizer("stablesam", model.parameters(), lr=0.1)
    assert opt.param_groups is opt.base_optimizer.param_groups
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "lr_scheduler.step() before optimizer.step()"
        training_step(model, identity_loss, opt, X0, Y0)
        sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    # a state-dict round trip keeps the groups shared
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert opt.param_groups is opt.base_optimizer.param_groups
    assert "momentum_buffer" in opt.base_optimizer.state[model.w]


# ------------------------------------------------------------------------- training_step
def tiny_mlp(seed=0, dtype=F64):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).to(
        dtype
    )


def tiny_data(n=32, seed=1, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=dtype), torch.randn(n, 2, generator=g, dtype=dtype)


MSE = torch.nn.functional.mse_loss


def test_training_step_two_forwards_and_base_hook_sees_perturbed_gradient():
    model = tiny_mlp()
    x, y = tiny_data()
    rho = 0.1
    opt = make_optimizer("sam", model.parameters(), lr=0.05, rho=rho)
    names = [n for n, _ in model.named_parameters()]
    forwards, seen, expected = [], [], []
    counting = [True]  # the hand computation's own forward calls are not counted
    model.register_forward_pre_hook(lambda m, args: forwards.append(1) if counting[0] else None)

    @torch.enable_grad()  # the hook runs inside second_step, under no_grad
    def hand_gradient():  # at the weights the hook is called with (SAM has restored w)
        w = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
        loss = MSE(torch.func.functional_call(model, w, (x,)), y)
        g = torch.autograd.grad(loss, list(w.values()))
        norm = torch.linalg.vector_norm(torch.cat([t.reshape(-1) for t in g]))
        w_adv = {n: (w[n] + rho * gi / norm).detach() for n, gi in zip(names, g, strict=True)}
        w_adv = {n: t.requires_grad_() for n, t in w_adv.items()}
        loss = MSE(torch.func.functional_call(model, w_adv, (x,)), y)
        return torch.autograd.grad(loss, list(w_adv.values()))

    def hook(optimizer, args, kwargs):
        seen.append([p.grad.clone() for p in model.parameters()])
        counting[0] = False
        expected.append(hand_gradient())
        counting[0] = True

    opt.base_optimizer.register_step_pre_hook(hook)
    for _ in range(3):
        training_step(model, MSE, opt, x, y)
    assert len(forwards) == 6
    assert len(seen) == 3
    for got, want in zip(seen, expected, strict=True):
        for g, h in zip(got, want, strict=True):
            torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-14)


def test_training_step_plain_optimizer_and_on_loss():
    model = tiny_mlp()
    x, y = tiny_data()
    opt = make_optimizer("adam", model.parameters(), lr=1e-3)
    losses = []
    out = training_step(model, MSE, opt, x, y, on_loss=losses.append)
    assert len(losses) == 1 and out == float(losses[0].detach())


# ------------------------------------------------------------- with the NoiseCollector
def _train(name, steps, store=None):
    model = tiny_mlp(seed=7, dtype=torch.float32)
    x, y = tiny_data(n=40, dtype=torch.float32)
    opt = make_optimizer(name, model.parameters(), lr=0.05, rho=0.05)
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 40, 8)]
    collector = None
    if store is not None:
        collector = NoiseCollector(
            model,
            opt,
            store,
            coordinates="all",
            reference="exact",
            reference_data=[(x, y)],
            loss_fn=MSE,
            batch_size=8,
            on_error="raise",
        )
    with collector or _null():
        for t in range(steps):
            xb, yb = batches[t % len(batches)]
            on_loss = collector.observe_loss if collector else None
            training_step(model, MSE, opt, xb, yb, on_loss=on_loss)
    return model


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


@pytest.mark.parametrize("name", ["sam", "stablesam"])
def test_collector_records_sam_steps(tmp_path, name):
    _train(name, 3, store=tmp_path / "run")
    store = NoiseStore.open(tmp_path / "run")
    assert store.n_complete == 3
    np.testing.assert_array_equal(store.scalar("accumulation"), [2.0, 2.0, 2.0])
    assert np.all(np.isfinite(store.read_noise()))
    assert store.attrs["base_optimizer"] == "SGD"


@pytest.mark.parametrize("name", ["sam", "stablesam"])
def test_collector_is_invisible_under_sam(tmp_path, name):
    plain = _train(name, 5)
    watched = _train(name, 5, store=tmp_path / "run")
    for p, q in zip(plain.parameters(), watched.parameters(), strict=True):
        assert torch.equal(p, q)


# ----------------------------------------------------------------------------- sharpness
def dense_hessian(model, loss_fn, x, y):
    """Exact Hessian of the mean loss over the flattened parameters (functional_call)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def loss_of(v):
        params = {
            n: c.view(s) for n, c, s in zip(names, torch.split(v, sizes), shapes, strict=True)
        }
        return loss_fn(torch.func.functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(loss_of, flat)


def mlp_problem():
    torch.manual_seed(11)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)).to(
        F64
    )  # 44 parameters
    g = torch.Generator().manual_seed(12)
    x = torch.randn(50, 4, generator=g, dtype=F64)
    y = torch.randn(50, 2, generator=g, dtype=F64)
    batches = [(x[:13], y[:13]), (x[13:20], y[13:20]), (x[20:], y[20:])]  # unequal sizes
    return model, x, y, batches


def test_lanczos_and_power_match_the_dense_hessian():
    model, x, y, batches = mlp_problem()
    evals = torch.linalg.eigvalsh(dense_hessian(model, MSE, x, y))
    top_la = float(evals[-1])
    top_lm = float(evals[torch.argmax(evals.abs())])
    s = top_hessian_eigenvalue(model, MSE, batches, max_iter=60, tol=1e-12)
    assert s.converged and s.n_samples == 50 and s.method == "lanczos" and s.which == "LA"
    assert abs(s.eigenvalue - top_la) / abs(top_la) < 1e-6
    assert s.ritz_values[0] >= float(evals[0]) - 1e-9  # interlacing: Ritz values within
    lm = top_hessian_eigenvalue(model, MSE, batches, max_iter=60, tol=1e-12, which="LM")
    assert abs(lm.eigenvalue - top_lm) / abs(top_lm) < 1e-6
    p = top_hessian_eigenvalue(model, MSE, batches, method="power", max_iter=2000, tol=1e-10)
    assert p.which == "LM"
    assert abs(p.eigenvalue - top_lm) / abs(top_lm) < 1e-3
    # the default tolerance stops early and says so through rel_change and residual
    quick = top_hessian_eigenvalue(model, MSE, batches)
    assert quick.rel_change < 1e-3 and quick.n_iter < 60
    assert abs(quick.eigenvalue - top_la) <= 1.001 * quick.residual * abs(quick.eigenvalue)


def test_quadratic_hessian_is_a_and_batches_are_weighted_by_size():
    a, b, w0 = quadratic_problem(dim=6, seed=5)
    model = Quadratic(a, b, w0)
    s = top_hessian_eigenvalue(model, identity_loss, [(X0, Y0)], tol=1e-14)
    top = float(torch.linalg.eigvalsh(a)[-1])
    assert s.converged and s.n_iter <= 6
    assert s.eigenvalue == pytest.approx(top, rel=1e-12)
    # least squares with batches of 3 and 7: H = X'X / N only with size weighting
    g = torch.Generator().manual_seed(6)
    x = torch.randn(10, 3, generator=g, dtype=F64) * torch.tensor([1.0, 3.0, 0.3], dtype=F64)
    y = torch.randn(10, 1, generator=g, dtype=F64)
    lin = torch.nn.Linear(3, 1, bias=False).to(F64)
    batches = [(x[:3], y[:3]), (x[3:], y[3:])]
    s = top_hessian_eigenvalue(lin, lambda out, t: 0.5 * MSE(out, t), batches, tol=1e-14)
    want = float(torch.linalg.eigvalsh(x.T @ x / 10)[-1])
    assert s.eigenvalue == pytest.approx(want, rel=1e-10)


def test_which_at_a_saddle():
    """Indefinite H with eigenvalues (-5, 1, 2, 3): LA gives 3, LM and power give -5."""
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(8), dtype=F64))
    a = q @ torch.diag(torch.tensor([-5.0, 1.0, 2.0, 3.0], dtype=F64)) @ q.T
    model = Quadratic(a, torch.zeros(4, dtype=F64), torch.ones(4, dtype=F64))
    la = top_hessian_eigenvalue(model, identity_loss, [(X0, Y0)], tol=1e-14)
    lm = top_hessian_eigenvalue(model, identity_loss, [(X0, Y0)], tol=1e-14, which="LM")
    pw = top_hessian_eigenvalue(model, identity_loss, [(X0, Y0)], method="power", tol=1e-13)
    assert la.eigenvalue == pytest.approx(3.0, rel=1e-12)
    assert lm.eigenvalue == pytest.approx(-5.0, rel=1e-12)
    assert pw.converged and pw.eigenvalue == pytest.approx(-5.0, rel=1e-10)
    np.testing.assert_allclose(la.ritz_values, [-5.0, 1.0, 2.0, 3.0], rtol=1e-12)


def test_sharpness_leaves_the_model_untouched():
    torch.manual_seed(2)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 5),
        torch.nn.BatchNorm1d(5),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(5, 1),
    ).to(F64)
    x, y = torch.randn(30, 4, dtype=F64), torch.randn(30, 1, dtype=F64)
    model.train()
    MSE(model(x), y).backward()  # running stats move off their init, .grad is set
    model[1].eval()  # a mixed set of flags must come back as it was
    params = [p.detach().clone() for p in model.parameters()]
    grads = [p.grad.clone() for p in model.parameters()]
    model[4].weight.grad = None
    stats = [b.clone() for b in model[1].buffers()]
    flags = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    for mode in ("eval", "train"):
        top_hessian_eigenvalue(model, MSE, [(x, y)], max_iter=5, mode=mode)
        top_hessian_eigenvalue(model, MSE, [(x, y)], max_iter=5, mode=mode, method="power")
        hessian_trace(model, MSE, [(x, y)], n_vectors=3, mode=mode)
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == flags
    for p, w in zip(model.parameters(), params, strict=True):
        assert torch.equal(p.detach(), w)
    assert model[4].weight.grad is None
    for p, g in zip(model.parameters(), grads, strict=True):
        if p.grad is not None:
            assert torch.equal(p.grad, g)
    for b, s in zip(model[1].buffers(), stats, strict=True):
        assert torch.equal(b, s)


def test_train_mode_operator_is_fixed_despite_dropout():
    """The RNG is reseeded before every product: the same dropout masks, a fixed operator."""
    torch.manual_seed(4)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1)
    ).to(F64)
    x, y = torch.randn(40, 4, dtype=F64), torch.randn(40, 1, dtype=F64)
    hessian = _Hessian(model, MSE, [(x, y)], "train", 0)
    v = hessian.start_vector(0, rademacher=False)
    with hessian.untouched():
        assert model.training
        first, second = hessian.matvec(v), hessian.matvec(v)
    assert torch.equal(first, second)
    s = top_hessian_eigenvalue(model, MSE, [(x, y)], mode="train", tol=1e-10, max_iter=30)
    assert s.converged and s.n_iter < 30 and s.mode == "train"


def test_hutchinson_trace_within_four_standard_errors():
    model, x, y, batches = mlp_problem()
    exact = float(torch.trace(dense_hessian(model, MSE, x, y)))
    est = hessian_trace(model, MSE, batches, n_vectors=100, seed=3)
    assert est.n_vectors == 100 and est.n_samples == 50 and est.stderr > 0
    assert abs(est.trace - exact) < 4 * est.stderr


def test_sharpness_input_errors():
    model, _, _, batches = mlp_problem()
    with pytest.raises(ValueError, match="method"):
        top_hessian_eigenvalue(model, MSE, batches, method="arnoldi")
    with pytest.raises(ValueError, match="which='LM'"):
        top_hessian_eigenvalue(model, MSE, batches, method="power", which="LA")
    with pytest.raises(ValueError, match="re-iterable"):
        top_hessian_eigenvalue(model, MSE, iter(batches), max_iter=3)
    assert math.isnan(hessian_trace(model, MSE, batches, n_vectors=1).stderr)
