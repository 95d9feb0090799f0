"""Executes notebooks/bernoulli.ipynb top to bottom on a fresh kernel (smoke preset)."""

from __future__ import annotations

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_bernoulli_notebook_runs_top_to_bottom(monkeypatch, tmp_path):
  monkeypatch.setenv("BERNOULLI_NOTEBOOK_PRESET", "smoke")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  # One CPU device is enough for the notebook (and faster to start than the test-wide 8).
  monkeypatch.setenv("XLA_FLAGS", "")
  # The notebook imports the installed packages; make this checkout's importable in the kernel.
  monkeypatch.setenv("PYTHONPATH", str(ROOT))
  monkeypatch.setenv("BERNOULLI_NOTEBOOK_WORKDIR", str(tmp_path))
  nb = nbformat.read(ROOT / "notebooks" / "bernoulli.ipynb", as_version=4)
  client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                   resources={"metadata": {"path": str(ROOT / "notebooks")}})
  client.execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  assert "trained in" in outputs
  assert "monotone in T: True" in outputs
  images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {}))
  assert images == 6
  assert len(list((tmp_path / "figures").glob("*.png"))) == 6
