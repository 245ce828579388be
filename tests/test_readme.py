"""The README's examples run as they are written (each in a fresh interpreter and folder)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"```python\n# README example: (?P<name>[\w ]+)\n(?P<code>.*?)```", re.S)
EXAMPLES = {m["name"]: m["code"] for m in _BLOCK.finditer(README.read_text())}


def test_the_readme_has_its_examples():
    assert set(EXAMPLES) >= {"plain loop", "resume", "lightning", "accelerate", "huggingface"}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_readme_example_runs(tmp_path, name):
    pytest.importorskip("torch")
    needs = {"lightning": "pytorch_lightning", "accelerate": "accelerate"}
    needs["huggingface"] = "transformers"
    if name in needs:
        pytest.importorskip(needs[name])
    script = tmp_path / "example.py"
    script.write_text(EXAMPLES[name])
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert any((tmp_path / "runs").iterdir())
    if name == "resume":  # a second run finds the checkpoint and continues the store
        again = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True
        )
        assert again.returncode == 0, again.stderr[-3000:]
