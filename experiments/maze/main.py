r"""Maze driver entry point: SFT, then the RL sweep (or data-scarce runs), then the figures.

  python -m experiments.maze.main --config=experiments/maze/config.py:cpu
  python -m experiments.maze.main --config=experiments/maze/config.py:paper --workdir=gs://...
  python -m experiments.maze.main --config=experiments/maze/config.py:cpu_scarce

Any field can be overridden, e.g. ``--config.sweep.num_rollouts='(4,16)'``. Re-running the same
command on the same workdir skips finished runs and resumes interrupted ones.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments.maze import train
from maxrl_jax.train import mesh as mesh_lib

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/maze/config.py:cpu",
                                          "maze preset, e.g. experiments/maze/config.py:cpu")
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (default runs/maze/<preset>)")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep orbax's per-checkpoint INFO lines off the console
  mesh_lib.initialize_distributed()
  config = _CONFIG.value
  workdir = _WORKDIR.value or f"runs/maze/{config.preset}"
  summary = train.run(config, workdir)
  print(f"[maze] {workdir}: complete={summary['complete']}  figures={summary.get('figures')}")


if __name__ == "__main__":
  app.run(main)
