"""Executes notebooks/imagenet.ipynb top to bottom on a fresh kernel: it runs its reduced smoke
comparison into a temporary directory and reads the run files back (outputs not saved)."""

from __future__ import annotations

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("tensorflow_datasets")

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_imagenet_notebook_runs_top_to_bottom(monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("XLA_FLAGS", "")  # one CPU device is enough
  monkeypatch.setenv("PYTHONPATH", str(ROOT))
  monkeypatch.delenv("IMAGENET_NOTEBOOK_WORKDIR", raising=False)
  monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline
  nb = nbformat.read(ROOT / "notebooks" / "imagenet.ipynb", as_version=4)
  nbclient.NotebookClient(nb, timeout=400, kernel_name="python3",
                          resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
  outputs = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/markdown", ""))
                    for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  assert "smoke comparison finished in" in outputs
  assert "(GENERATED data, not ImageNet)" in outputs
  for label in ("| cross-entropy (ML) | 32 |", "| MaxRL N=8 | 32 |",
                "| REINFORCE (mean baseline) N=8 | 32 |"):
    assert label in outputs
  assert "40 images, 256 rollouts per image; missing runs: none" in outputs
  images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {}))
  assert images == 3
