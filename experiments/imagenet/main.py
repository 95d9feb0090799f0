r"""Runs an ImageNet-experiment comparison (paper section 6.1): every run of the preset,
resumable.

  python -m experiments.imagenet.main                      # the cpu preset (generated data)
  maxrl-imagenet --config=experiments/imagenet/config.py:paper \
      --config.data.data_dir=/data/tfds --config.data.manual_dir=/data/imagenet_tars \
      --workdir=gs://BUCKET/runs/imagenet/paper

Writes ``<workdir>/<run>/`` (config.json, metrics.jsonl, tb/, checkpoints/,
analysis_checkpoint/, final_eval.npz, summary.json) per run and ``<workdir>/figures/`` plus
``<workdir>/summary.json`` for the comparison. SIGTERM: the current run checkpoints, the
process exits 0, and the same command resumes.
"""

from __future__ import annotations

import json
import os

from absl import flags
from ml_collections import config_flags

from experiments.imagenet import experiment
from maxrl_jax.train import entry
from maxrl_jax.train import mesh as mesh_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", entry.config_path(__file__, "cpu"), "Comparison configuration (preset).")
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Output directory, local or gs:// (default runs/imagenet/<preset>).")


def _main() -> None:
  config = _CONFIG.value
  workdir = _WORKDIR.value or os.path.join("runs", "imagenet", config.preset)
  summary = experiment.run(config, workdir)
  if mesh_lib.is_chief():
    print(json.dumps({k: v for k, v in summary.items() if k != "figures"}, indent=2))


def cli() -> None:
  """Console-script entry point (``maxrl-imagenet``): flags from ``sys.argv``."""
  entry.run_main(_main)


if __name__ == "__main__":
  cli()
