"""Every bad input to sgn-analyze gets one line, the right exit code, and touches nothing.

Each case runs the real command (a subprocess, as a user runs it) in a folder whose every file is
fingerprinted before and compared after: an input, a store or an unrelated file changed or gone
is a failure, whatever the exit code.  ``BAD_CLI`` and ``BAD_API`` are the tallies quoted in the
README.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sgn_memory as sgn
from sgn_memory import cli
from sgn_memory.errors import InsufficientDataError, UsageError
from sgn_memory.store import CoordinateMap, NoiseStore

REPO = Path(__file__).resolve().parent.parent


def fingerprint(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def sgn_analyze(*args, cwd=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "sgn_memory.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        **kw,
    )


def make_store(path: Path, n=256, k=40) -> Path:
    c = CoordinateMap(np.array(["fc.weight"] * k), np.arange(k), np.array(["fc"] * k))
    x = sgn.fgn(n, 0.5, size=k, rng=3).T.astype(np.float32)
    with NoiseStore.create(path, coordinates=c, chunk_rows=128) as store:
        store.append(x, step=np.arange(n))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    good = rng.standard_normal((256, 4))
    np.save(d / "good.npy", good)
    (d / "notes.txt").write_text("my notes\n")
    (d / "existing_file.txt").write_text("keep me\n")
    make_store(d / "mystore")
    np.save(d / "oned.npy", good[:, 0])
    np.save(d / "threed.npy", good.reshape(64, 4, 4))
    np.save(d / "complex.npy", good + 1j)
    np.savez(d / "two.npz", a=good, b=good)
    (d / "random.npy").write_bytes(rng.bytes(4096))
    np.save(d / "allnan.npy", np.full((256, 3), np.nan))
    np.save(d / "constant.npy", np.ones((256, 3)))
    lines = [",".join(f"{v:.6f}" for v in r) for r in good]
    lines[50] = "0.1,abc,0.3,0.4"  # line 51
    (d / "textcell.csv").write_text("\n".join(lines) + "\n")
    (d / "decimal_comma.csv").write_text(
        "\n".join(";".join(f"{v:.6f}".replace(".", ",") for v in r) for r in good) + "\n"
    )
    (d / "link_to_store").symlink_to(d / "mystore")
    ro = d / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    return d


# (arguments, exit code, words the one line must hold); "{d}" is the data folder
BAD_CLI = [
    # --overwrite replaces only an earlier report: never an input, a folder, a file
    (["{d}/mystore", "--out", "{d}/mystore", "--overwrite"], 2, "input"),
    (["{d}/good.npy", "--out", "{d}", "--overwrite"], 2, "input"),
    (["{d}/mystore", "--out", "{d}/mystore/report"], 2, "inside the input"),
    (["{d}/good.npy", "--out", "{d}/existing_file.txt", "--overwrite"], 2, "is a file"),
    (["{d}/good.npy", "--out", "{d}/mystore", "--overwrite"], 2, "not a report"),
    (["{d}/good.npy", "--out", "."], 2, "already exists"),
    (["{d}/good.npy", "--out", ".", "--overwrite"], 2, "not a report"),
    (["{d}/good.npy", "--out", "{d}/no/such/parent"], 2, "does not exist"),
    (["{d}/good.npy", "--out", "{d}/link_to_store", "--overwrite"], 2, "symbolic link"),
    (["{d}/good.npy", "--scheduler", "tcp://127.0.0.1:abc"], 2, "not a Dask scheduler"),
    # values out of range
    (["{d}/good.npy", "--seed", "-1"], 2, "--seed"),
    (["{d}/good.npy", "--block", "-5"], 2, "--block"),
    (["{d}/good.npy", "--block", "0"], 2, "--block"),
    (["{d}/good.npy", "--max-coords", "-3"], 2, "--max-coords"),
    (["{d}/good.npy", "--level", "0"], 2, "--level"),
    (["{d}/good.npy", "--level", "5"], 2, "--level"),
    (["{d}/good.npy", "--seed", "abc"], 2, "invalid int"),
    # inputs that are not steps x series numbers: one clean sentence each
    (["{d}/oned.npy"], 1, "needs a 2-D array"),
    (["{d}/threed.npy"], 1, "needs a 2-D array"),
    (["{d}/complex.npy"], 1, "complex"),
    (["{d}/two.npz"], 1, "holds 2 arrays"),
    (["{d}/random.npy"], 1, "not a .npy file"),
    (["{d}/allnan.npy"], 1, "none of its 3 series could be analysed"),
    (["{d}/constant.npy"], 1, "none of its 3 series could be analysed"),
    (["{d}/textcell.csv"], 1, "line 51, column 2 holds 'abc'"),
    (["{d}/decimal_comma.csv"], 1, "both ',' and ';'"),
    (["{d}/notes.txt"], 1, "unknown input"),
    (["{d}/nothere.npy"], 1, "no such file"),
]


@pytest.mark.parametrize(("args", "code", "words"), BAD_CLI, ids=lambda v: str(v)[:40])
def test_bad_cli_input_one_line_right_code_nothing_touched(data, tmp_path, args, code, words):
    before = fingerprint(data)
    res = sgn_analyze(*(a.format(d=data) for a in args), cwd=tmp_path)
    assert res.returncode == code, res.stderr
    assert words in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert fingerprint(data) == before  # every input and unrelated file as it was
    assert not list(data.glob(".*")) and not list(tmp_path.iterdir())  # nothing half-written


def test_the_out_check_comes_before_the_analysis(data, tmp_path, monkeypatch, capsys):
    import sgn_memory.analyze as analyze_module

    def never(*a, **k):
        raise AssertionError("the analysis ran before --out was checked")

    monkeypatch.setattr(analyze_module, "analyze", never)
    (tmp_path / "taken").mkdir()
    assert cli.main([str(data / "good.npy"), "--out", str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_overwrite_replaces_an_earlier_report_only_when_the_new_one_is_whole(
    data, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "rep"
    assert cli.main([str(data / "good.npy"), "--out", str(out)]) == 0
    assert (out / ".sgn-report").is_file()
    earlier = fingerprint(out)
    # the disk fills up while the new report is written: the earlier one stays as it was
    real = Path.write_text

    def full(self, *a, **k):
        if self.name == "report.html":
            raise OSError(28, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    capsys.readouterr()
    assert cli.main([str(data / "good.npy"), "--out", str(out), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "earlier report is unchanged" in err
    assert len(err.strip().splitlines()) == 1
    assert fingerprint(out) == earlier and sorted(p.name for p in tmp_path.iterdir()) == ["rep"]
    monkeypatch.undo()
    assert cli.main([str(data / "good.npy"), "--out", str(out), "--overwrite", "--seed", "1"]) == 0
    assert json.loads((out / "summary.json").read_text())["settings"]["seed"] == 1


def test_a_read_only_parent_is_refused_before_the_analysis(data, tmp_path):
    target = data / "readonly" / "rep"
    if os.geteuid() == 0:  # root writes through permissions: use a read-only mount
        mnt = tmp_path / "ro"
        mnt.mkdir()
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)])
        if made.returncode != 0:
            pytest.skip("root, and no read-only mount possible here")
        target = mnt / "rep"
    try:
        res = sgn_analyze(data / "good.npy", "--out", target)
        assert res.returncode == 2 and "not writable" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(tmp_path / "ro")], check=False)


def test_a_csv_header_comes_from_the_first_line_and_separators_are_detected(tmp_path):
    from sgn_memory.analyze import open_source

    x = np.random.default_rng(1).standard_normal((200, 3))
    body = "\n".join(";".join(f"{v:.17g}" for v in r) for r in x)
    (tmp_path / "semi.csv").write_text("a;b;c\n" + body + "\n")
    src = open_source(tmp_path / "semi.csv")
    assert list(src.name) == ["a", "b", "c"] and src.n_steps == 200
    np.testing.assert_array_equal(src.read(np.arange(3)), x)
    (tmp_path / "tab.csv").write_text(body.replace(";", "\t") + "\n")
    np.testing.assert_array_equal(open_source(tmp_path / "tab.csv").read(np.arange(3)), x)
    # no header: the first data row is data, not names
    (tmp_path / "plain.csv").write_text(body.replace(";", ",") + "\n")
    src = open_source(tmp_path / "plain.csv")
    assert src.n_steps == 200 and list(src.name) == ["0", "1", "2"]
    np.testing.assert_array_equal(src.read(np.arange(3)), x)
    (tmp_path / "quoted.csv").write_text('"loss, train",b,"c"\n' + body.replace(";", ",") + "\n")
    assert list(open_source(tmp_path / "quoted.csv").name) == ["loss, train", "b", "c"]
    bom = b"\xef\xbb\xbf"
    (tmp_path / "bom.csv").write_bytes(bom + body.replace(";", ",").encode() + b"\n")
    src = open_source(tmp_path / "bom.csv")  # a BOM before data: no header, no row lost
    assert src.n_steps == 200 and list(src.name) == ["0", "1", "2"]
    np.testing.assert_array_equal(src.read(np.arange(3)), x)
    (tmp_path / "bomh.csv").write_bytes(bom + b"a,b,c\r\n" + body.replace(";", ",").encode())
    assert list(open_source(tmp_path / "bomh.csv").name) == ["a", "b", "c"]
    (tmp_path / "ragged.csv").write_text("1,2,3\n4,5\n")
    with pytest.raises(sgn.SgnMemoryError, match=r"line 2, column 3 is empty|same number"):
        open_source(tmp_path / "ragged.csv")


def test_a_damaged_store_is_an_error_and_salvage_says_what_it_excluded(tmp_path):
    k, n = 10_000, 384  # two chunk columns of 5000 coordinates, three chunk rows of 128
    c = CoordinateMap(np.array(["fc.weight"] * k), np.arange(k), np.array(["fc"] * k))
    x = np.random.default_rng(2).standard_normal((n, k)).astype(np.float32)
    with NoiseStore.create(tmp_path / "run", coordinates=c, chunk_rows=128) as store:
        store.append(x, step=np.arange(n))
    (tmp_path / "run" / "noise" / "c" / "1" / "0").unlink()
    res = sgn_analyze(tmp_path / "run", "--out", tmp_path / "rep", "--max-coords", "400")
    assert res.returncode == 1 and "noise chunk (1, 0)" in res.stderr and "missing" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "rep").exists()
    res = sgn_analyze(
        tmp_path / "run", "--out", tmp_path / "rep", "--max-coords", "400", "--salvage",
        "--format", "json",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    run = summary["runs"][0]
    subset = np.sort(np.random.default_rng([0, 0, 0]).choice(k, size=400, replace=False))
    expected_excluded = int((subset < 5000).sum())  # the columns of the missing chunk
    assert run["n_series"] == 400 and run["n_excluded"] == expected_excluded
    assert run["n_analysed"] == 400 - expected_excluded
    assert "1 chunk(s) unreadable" in res.stderr and f"{expected_excluded} of 400" in res.stderr
    [damage] = summary["inputs"][0]["damaged_chunks"]
    assert "noise chunk (1, 0)" in damage
    assert "Salvaged" in (tmp_path / "rep" / "report.md").read_text()
    assert "series no bad chunk touches" in (tmp_path / "rep" / "report.md").read_text()
    assert "series no bad chunk touches" in res.stderr and "Warning" not in res.stderr
    assert "series no bad chunk touches" in summary["inputs"][0]["salvage"]


def test_salvage_keeps_the_longest_clean_stretch_when_every_series_is_touched(tmp_path):
    # k below the chunk width (the usual case): one bad chunk touches every series, so the
    # analysis keeps every series over the rows no bad chunk touches instead of none
    k, n = 40, 3 * 128
    c = CoordinateMap(np.array(["fc.weight"] * k), np.arange(k), np.array(["fc"] * k))
    x = np.random.default_rng(5).standard_normal((n, k)).astype(np.float32)
    with NoiseStore.create(tmp_path / "run", coordinates=c, chunk_rows=128) as store:
        store.append(x, step=np.arange(n))
    f = tmp_path / "run" / "noise" / "c" / "2" / "0"
    f.write_bytes(f.read_bytes()[:1000])  # truncated
    result = sgn.analyze(tmp_path / "run", salvage=True)
    src = result.sources[0]
    assert src.rows == (0, 256) and src.n_steps == 256 and "rows 0-255 of 384" in src.salvaged
    assert result.runs.loc[0, "n_analysed"] == k
    np.testing.assert_array_equal(src.read(np.arange(k)), x[:256])
    from sgn_memory.report import write_report

    write_report(result, tmp_path / "rep", plots=False)  # the report says what was kept
    assert (
        "analysed: rows 0-255 of 384 of every series"
        in (tmp_path / "rep" / "report.md").read_text()
    )
    expected = sgn.analyze(x[:256].astype(np.float64))  # the same numbers as the clean rows
    np.testing.assert_allclose(
        result.series["hurst_whittle"].to_numpy(), expected.series["hurst_whittle"].to_numpy()
    )


def test_dask_workers_get_an_absolute_store_path(tmp_path, monkeypatch):
    from sgn_memory.analyze import _remote_source, open_source

    make_store(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    path, damage = _remote_source(open_source("run"))
    assert path == str(tmp_path / "run") and damage == ()


def test_inf_in_a_series_is_excluded_quietly(tmp_path):
    x = np.random.default_rng(0).standard_normal((300, 3))
    x[5, 1] = np.inf
    np.save(tmp_path / "x.npy", x)
    res = sgn_analyze(tmp_path / "x.npy", "--out", tmp_path / "rep")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert "excluded" in res.stdout


def test_overwrite_refuses_a_report_holding_files_we_did_not_write(data, tmp_path):
    out = tmp_path / "rep"
    assert sgn_analyze(data / "good.npy", "--out", out).returncode == 0
    np.save(out / "my_array.npy", np.zeros(3))
    res = sgn_analyze(data / "good.npy", "--out", out, "--overwrite")
    assert res.returncode == 2 and "did not write (my_array.npy)" in res.stderr, res.stderr
    assert (out / "my_array.npy").is_file()


def test_a_closed_pipe_ends_quietly(data, tmp_path):
    for fmt in ("csv", "table", "json"):
        cmd = (
            f"{sys.executable} -m sgn_memory.cli {data / 'good.npy'} --out {tmp_path / fmt} "
            f"--format {fmt} | head -c 1"
        )
        res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True)
        assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
        assert res.returncode in (0, 141)
        assert (tmp_path / fmt / "summary.json").is_file()  # the report was written first


def test_ctrl_c_prints_one_line_exits_130_and_leaves_nothing(tmp_path):
    # ~10 s of analysis on 2 cores: long enough that the signal lands inside it
    x = np.random.default_rng(0).standard_normal((8192, 3000), dtype=np.float32)
    np.save(tmp_path / "big.npy", x)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sgn_memory.cli", str(tmp_path / "big.npy"), "--out",
         str(tmp_path / "rep"), "--block", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C as a terminal delivers it (a background CI shell ignores SIGINT, inherited)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    time.sleep(3)  # well into the analysis (python and numpy are imported within ~2 s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "sgn-analyze: interrupted; nothing was written."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npy"]


# the Python API: a setting out of range is a UsageError naming it
BAD_API = [
    ({"max_coords": 0}, "max_coords"),
    ({"max_coords": -3}, "max_coords"),
    ({"acf_lags": 0}, "acf_lags"),
    ({"seed": -1}, "seed"),
    ({"level": 0}, "level"),
    ({"level": 5}, "level"),
    ({"block": 0}, "block"),
    ({"n_bootstrap": 0}, "n_bootstrap"),
    ({"window": -1}, "window"),
    ({"preset": "tan2020"}, "preset"),
]


@pytest.mark.parametrize(("kwargs", "name"), BAD_API, ids=lambda v: str(v))
def test_bad_api_settings_are_one_sentence_usage_errors(kwargs, name):
    x = np.random.default_rng(0).standard_normal((256, 3))
    with pytest.raises(UsageError, match=name):
        sgn.analyze(x, **kwargs)


def test_no_analysable_series_is_an_error_in_the_api_too():
    with pytest.raises(InsufficientDataError, match="none of its 2 series"):
        sgn.analyze(np.zeros((256, 2)))
    x = np.random.default_rng(0).standard_normal((256, 3))
    x[:, 1] = np.nan
    result = sgn.analyze(x)  # one bad series among good ones: counted, not fatal
    assert result.runs.loc[0, "n_excluded"] == 1 and result.runs.loc[0, "n_analysed"] == 2


def test_a_report_of_an_earlier_release_without_the_marker_may_be_overwritten(data, tmp_path):
    out = tmp_path / "rep"
    assert sgn_analyze(data / "good.npy", "--out", out).returncode == 0
    (out / ".sgn-report").unlink()  # what releases before the marker wrote
    assert sgn_analyze(data / "good.npy", "--out", out, "--overwrite").returncode == 0
    assert (out / ".sgn-report").is_file()
    (out / ".sgn-report").unlink()
    (out / "notes.txt").write_text("mine")  # not only our files: not recognisably ours
    res = sgn_analyze(data / "good.npy", "--out", out, "--overwrite")
    assert res.returncode == 2 and "not a report" in res.stderr and (out / "notes.txt").exists()
