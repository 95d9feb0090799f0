"""notebooks/maze_sweep.ipynb runs top to bottom on a smoke sweep created here."""

import os
import pathlib

import nbformat
from nbclient import NotebookClient

from experiments.maze import config as maze_config
from experiments.maze import sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_maze_notebook_executes(tmp_path, monkeypatch):
  cfg = maze_config.get_config("smoke")
  cfg.sweep.estimators = ("maxrl", "grpo")
  cfg.sweep.num_rollouts = (4,)
  workdir = tmp_path / "sweep"
  assert sweep.run_sweep(cfg, str(workdir))["complete"]

  monkeypatch.setenv("MAZE_SWEEP_WORKDIR", str(workdir))
  monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline
  nb = nbformat.read(ROOT / "notebooks" / "maze_sweep.ipynb", as_version=4)
  NotebookClient(nb, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
  outputs = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/markdown", ""))
                    for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  assert "| maxrl | 4 |" in outputs and "| grpo | 4 |" in outputs
  assert "pass@1, N=4: best" in outputs
  assert (workdir / "notebook_figures" / "maze_fig3_neglog_passk_vs_n.png").stat().st_size > 10_000
  images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
  assert len(images) >= 3
