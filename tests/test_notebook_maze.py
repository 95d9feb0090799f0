"""notebooks/maze_sweep.ipynb runs top to bottom: on a sweep given by MAZE_SWEEP_WORKDIR, and on
the smoke sweep it runs itself when none is given."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

from experiments.maze import config as maze_config
from experiments.maze import experiment

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _execute(monkeypatch):
  monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("XLA_FLAGS", "")
  # The notebook imports the installed packages; make this checkout's importable in the kernel.
  monkeypatch.setenv("PYTHONPATH", str(ROOT))
  nb = nbformat.read(ROOT / "notebooks" / "maze_sweep.ipynb", as_version=4)
  NotebookClient(nb, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
  outputs = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/markdown", ""))
                    for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
  return outputs, images


def test_maze_notebook_executes(tmp_path, monkeypatch):
  cfg = maze_config.get_config("smoke")
  cfg.sweep.estimators = ("maxrl", "grpo")
  cfg.sweep.num_rollouts = (4,)
  workdir = tmp_path / "sweep"
  assert experiment.run_sweep(cfg, str(workdir))["complete"]

  monkeypatch.setenv("MAZE_SWEEP_WORKDIR", str(workdir))
  outputs, images = _execute(monkeypatch)
  assert "| maxrl | 4 |" in outputs and "| grpo | 4 |" in outputs
  assert "maxrl above grpo at N = 4, pass@1 |" in outputs  # the claims table
  assert (workdir / "notebook_figures" / "maze_fig3_neglog_passk_vs_n.png").stat().st_size > 10_000
  assert len(images) >= 3


@pytest.mark.slow
def test_maze_notebook_runs_its_own_smoke_sweep(monkeypatch):
  monkeypatch.delenv("MAZE_SWEEP_WORKDIR", raising=False)
  outputs, images = _execute(monkeypatch)
  assert "smoke sweep finished in" in outputs
  for n in (2, 4):
    assert f"| maxrl | {n} |" in outputs and f"| grpo | {n} |" in outputs
  assert "SFT start" in outputs
  assert len(images) >= 3
