"""Tests of the sgn-analyze command line and the report folder."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import sgn_memory as sgn
from sgn_memory import cli


@pytest.fixture
def arrays(tmp_path):
    np.save(tmp_path / "a.npy", sgn.fgn(1024, 0.7, size=20, rng=1).T)
    x = sgn.fgn(1024, 0.5, size=20, rng=2).T
    x[:, 3] = np.nan  # one broken series among good ones
    np.save(tmp_path / "b.npy", x)
    return tmp_path


def test_report_folder_and_formats(arrays, capsys):
    out = arrays / "rep"
    assert cli.main([str(arrays / "a.npy"), str(arrays / "b.npy"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "series.csv", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())  # strict JSON: NaN became null
    assert summary["schema_version"] == 1
    assert [r["run"] for r in summary["runs"]] == ["a.npy", "b.npy"]
    assert summary["runs"][0]["hurst_whittle_median"] == pytest.approx(0.7, abs=0.03)
    table = capsys.readouterr().out
    assert "a.npy" in table and "H Whittle" in table
    md = (out / "report.md").read_text()
    assert "## Runs" in md and "b.npy" in md
    import pandas as pd

    series = pd.read_csv(out / "series.csv")
    assert len(series) == 40 and series["hurst_rs"].isna().sum() == 1
    # json and csv on stdout
    assert (
        cli.main([str(arrays / "a.npy"), "--out", str(out), "--overwrite", "--format", "json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["runs"][0]["run"] == "a.npy"
    assert (
        cli.main([str(arrays / "a.npy"), "--out", str(out), "--overwrite", "--format", "csv"]) == 0
    )
    assert capsys.readouterr().out.startswith("run,layer,n_series")
    assert not list(arrays.glob(".rep*"))  # no temporary folders left


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "sgn_memory.cli", *map(str, args)], capture_output=True, text=True
    )


def test_exit_codes_and_one_line_errors(arrays):
    (arrays / "notastore").mkdir()
    np.save(arrays / "pickled.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    np.save(arrays / "short.npy", np.zeros((10, 2)))
    cases = [
        ((arrays / "missing.npy",), 1, "no such file"),
        ((arrays / "notastore",), 1, "notastore"),
        ((arrays / "pickled.npy",), 1, "never loaded"),
        ((arrays / "short.npy",), 1, "at least 128"),
        ((arrays / "a.npy", "--max-coords", "0"), 2, "--max-coords"),
        ((arrays / "a.npy", "--format", "xml"), 2, "invalid choice"),
        ((), 2, "PATH"),
    ]
    for args, code, words in cases:
        res = run(*args, "--out", arrays / "r")
        assert res.returncode == code, (args, res.stderr)
        assert words in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
        if code == 1:
            assert len(res.stderr.strip().splitlines()) == 1
    assert not (arrays / "r").exists()
    assert run(arrays / "a.npy", "--out", arrays / "r").returncode == 0
    res = run(arrays / "a.npy", "--out", arrays / "r")  # the report exists: not overwritten
    assert res.returncode == 1 and "already exists" in res.stderr


def test_an_interrupted_report_leaves_nothing_that_looks_whole(arrays, monkeypatch):
    from sgn_memory import report

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "_markdown", broken)
    with pytest.raises(KeyboardInterrupt):
        cli.main([str(arrays / "a.npy"), "--out", str(arrays / "rep")])
    assert not (arrays / "rep").exists()
    assert not list(arrays.glob(".rep*"))
