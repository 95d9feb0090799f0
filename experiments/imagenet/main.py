r"""Runs an ImageNet-experiment comparison (SPEC section 4.2): every run of the preset, resumable.

  python -m experiments.imagenet.main --config=experiments/imagenet/config.py:cpu
  python -m experiments.imagenet.main --config=experiments/imagenet/config.py:paper \
      --config.data.data_dir=/data/tfds --config.data.manual_dir=/data/imagenet_tars \
      --workdir=runs/imagenet/paper

Writes ``<workdir>/<run>/`` (config.json, metrics.jsonl, tb/, checkpoints/, summary.json) per
run and ``<workdir>/figures/*.png`` plus ``<workdir>/summary.json`` for the comparison.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/imagenet/config.py:cpu", "Comparison configuration (preset).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default runs/imagenet/<preset>).")


def main(argv: Sequence[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)  # keep orbax's per-checkpoint INFO lines off the console
  from experiments.imagenet import train  # pylint: disable=g-import-not-at-top
  from maxrl_jax.train import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  mesh_lib.initialize_distributed()
  config = _CONFIG.value
  workdir = _WORKDIR.value or os.path.join("runs", "imagenet", config.preset)
  from maxrl_jax.train import loop  # pylint: disable=g-import-not-at-top
  with loop.PreemptionGuard() as guard:
    summary = train.run(config, workdir, guard=guard)
  if mesh_lib.is_chief():
    print(json.dumps({k: v for k, v in summary.items() if k != "figures"}, indent=2))


if __name__ == "__main__":
  app.run(main)
