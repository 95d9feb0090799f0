r"""Maze driver entry point (paper section 6.2): SFT, then the RL sweep (or data-scarce runs).

  python -m experiments.maze.main --config=experiments/maze/config.py:cpu
  maxrl-maze --config=experiments/maze/config.py:paper --workdir=gs://BUCKET/runs/maze/paper
  maxrl-maze --config=experiments/maze/config.py:cpu_scarce

Any field can be overridden, e.g. ``--config.sweep.num_rollouts='(4,16)'``. Re-running the same
command on the same workdir skips finished runs and resumes interrupted ones; SIGTERM saves and
exits 0.
"""

from absl import flags
from ml_collections import config_flags

from experiments.maze import experiment
from maxrl_jax.train import entry
from maxrl_jax.train import mesh as mesh_lib

_CONFIG = config_flags.DEFINE_config_file("config", entry.config_path(__file__, "cpu"),
                                          "maze preset, e.g. experiments/maze/config.py:cpu")
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (default runs/maze/<preset>)")


def main() -> None:
  config = _CONFIG.value
  workdir = _WORKDIR.value or f"runs/maze/{config.preset}"
  summary = experiment.run(config, workdir)
  if mesh_lib.is_chief() and not summary.get("preempted"):
    print(f"[maze] {workdir}: complete={summary['complete']}  figures={summary.get('figures')}")


def cli() -> None:
  """Console script ``maxrl-maze``."""
  entry.run_main(main)


if __name__ == "__main__":
  cli()
