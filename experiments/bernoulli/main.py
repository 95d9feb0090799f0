"""Toy Bernoulli policy driver: ``python -m experiments.bernoulli.main --config=...:cpu``."""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments.bernoulli import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/bernoulli/config.py:cpu", "Driver configuration (preset after ':').")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default runs/bernoulli/<preset>).")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep orbax's per-checkpoint INFO lines off the console
  config = _CONFIG.value
  workdir = _WORKDIR.value or f"runs/bernoulli/{config.preset}"
  summary = train.run(config, workdir)
  print(f"bernoulli: wrote {workdir} (wall time {summary.get('wall_time_s', float('nan')):.1f} s)")


if __name__ == "__main__":
  app.run(main)
