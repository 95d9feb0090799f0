"""Executes notebooks/own_rl_loop.ipynb top to bottom on a fresh kernel (outputs not saved)."""

from __future__ import annotations

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _outputs(nb):
  text = "".join(str(o.get("text", "")) for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))
  images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {}))
  return text, images


def test_own_rl_loop_notebook_runs_top_to_bottom(monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("XLA_FLAGS", "")  # one CPU device is enough
  monkeypatch.setenv("PYTHONPATH", str(ROOT))
  monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline
  nb = nbformat.read(ROOT / "notebooks" / "own_rl_loop.ipynb", as_version=4)
  nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
  text, images = _outputs(nb)
  assert images == 3
  assert "token_mean grad == sequence_mean grad * B*G/T: True" in text
  assert "accumulated == full batch:  token_mean True   sequence_mean True" in text
  # The point of the notebook: at the same learning rate MaxRL raises the hardest prompts'
  # mean log p far above GRPO's.
  finals = {line.split()[0]: line for line in text.splitlines()
            if line.strip().startswith(("grpo ", "maxrl "))}
  hard = {name: float(line.split("L=4: log p")[1].split(",")[0]) for name, line in finals.items()}
  assert hard["maxrl"] > hard["grpo"] + 2.0, hard
