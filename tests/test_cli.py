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
    files = {p.name for p in out.iterdir()}
    assert {"report.md", "report.html", "series.csv", "summary.json"} <= files
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
    assert res.returncode == 2 and "already exists" in res.stderr  # a usage error


def test_an_interrupted_report_leaves_nothing_that_looks_whole(arrays, monkeypatch):
    from sgn_memory import report

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "_markdown", broken)
    assert cli.main([str(arrays / "a.npy"), "--out", str(arrays / "rep")]) == 130
    assert not (arrays / "rep").exists()
    assert not list(arrays.glob(".rep*"))


def test_html_report_embeds_every_plot_and_the_numbers(tmp_path):
    """A store with two layers, per-step B_simple and enough steps for the windows: every plot
    is drawn, embedded in report.html with its name, and the summary numbers appear there."""
    from sgn_memory.store import CoordinateMap, NoiseStore
    from sgn_memory.tails import stable_rvs

    x = np.concatenate(
        [sgn.fgn(2048, 0.7, size=10, rng=1), stable_rvs(1.7, size=(10, 2048), rng=2)]
    ).T
    coords = CoordinateMap(
        param_name=np.array(["a.w"] * 10 + ["b.w"] * 10),
        flat_index=np.r_[np.arange(10), np.arange(10)],
        layer=np.array(["a"] * 10 + ["b"] * 10),
    )
    with NoiseStore.create(tmp_path / "run", coordinates=coords) as store:
        store.append(x, step=np.arange(2048), scalars={"b_simple": np.linspace(10, 20, 2048)})
    out = tmp_path / "rep"
    assert cli.main([str(tmp_path / "run"), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    plots = sorted(p.name for p in out.glob("*.png"))
    assert plots == sorted(
        [
            "acf.png",
            "b_simple.png",
            "comparison.png",
            "hurst_histograms.png",
            "loglog_fits.png",
            "over_training.png",
            "qq_gaussian.png",
            "tail_loglog.png",
        ]
    )
    for name in plots:
        assert f"alt='{name}'" in html
    assert html.count("data:image/png;base64,") == len(plots)
    summary = json.loads((out / "summary.json").read_text())
    h = summary["runs"][0]["hurst_whittle_median"]
    assert f"{h:.3f}" in html
    md = (out / "report.md").read_text()
    assert all(f"]({name})" in md for name in plots)


def test_shipped_example_store_opens_and_is_analysed(tmp_path):
    """data/example_store (recorded by data/make_example_store.py from a real training run)."""
    from pathlib import Path

    from sgn_memory.store import NoiseStore

    path = Path(__file__).resolve().parent.parent / "data" / "example_store"
    store = NoiseStore.open(path)
    assert store.n_complete == 3000 and store.n_coords == 256
    assert store.attrs["reference"] == "exact"
    assert np.isfinite(store.scalar("b_simple")).all()
    assert cli.main([str(path), "--out", str(tmp_path / "rep"), "--max-coords", "32"]) == 0


def test_damaged_and_foreign_stores_exit_1_with_one_line(tmp_path):
    """A truncated chunk file, a store from a newer schema, an empty CSV."""
    import shutil
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "data" / "example_store"
    truncated = tmp_path / "truncated"
    shutil.copytree(example, truncated)
    chunk = sorted((truncated / "noise" / "c").rglob("*"))
    chunk = next(c for c in chunk if c.is_file())
    with open(chunk, "r+b") as f:
        f.truncate(100)
    newer = tmp_path / "newer"
    shutil.copytree(example, newer)
    meta = json.loads((newer / "zarr.json").read_text())
    meta["attributes"]["schema_version"] = 99
    (newer / "zarr.json").write_text(json.dumps(meta))
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "blank.csv").write_text("\n\n")
    for path, words in (
        (truncated, "damaged"),
        (newer, "schema"),
        (tmp_path / "empty.csv", "empty"),
        (tmp_path / "blank.csv", "CSV"),
    ):
        res = run(path, "--out", tmp_path / "r")
        assert res.returncode == 1, (path, res.stderr)
        assert words in res.stderr and "Traceback" not in res.stderr, (path, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
