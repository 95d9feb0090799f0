r"""Toy Bernoulli policy driver (not in the paper; the place where every gradient is exact).

  python -m experiments.bernoulli.main --config=experiments/bernoulli/config.py:cpu
  maxrl-bernoulli --config.num_prompts=512 --workdir=runs/bernoulli/big

Rerunning the same command resumes an interrupted run (SIGTERM saves and exits 0) and returns at
once when the workdir is complete.
"""

from absl import flags
from ml_collections import config_flags

from experiments.bernoulli import experiment
from maxrl_jax.train import entry
from maxrl_jax.train import mesh as mesh_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", entry.config_path(__file__, "cpu"), "Driver configuration (preset after ':').")
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Output directory (default runs/bernoulli/<preset>).")


def main() -> None:
  config = _CONFIG.value
  workdir = _WORKDIR.value or f"runs/bernoulli/{config.preset}"
  summary = experiment.run(config, workdir)
  if mesh_lib.is_chief() and summary.get("complete"):
    print(f"bernoulli: wrote {workdir} (wall time {summary.get('wall_time_s', float('nan')):.1f} s)")


def cli() -> None:
  """Console script ``maxrl-bernoulli``."""
  entry.run_main(main)


if __name__ == "__main__":
  cli()
