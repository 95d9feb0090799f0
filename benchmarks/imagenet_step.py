r"""Train-step time of MaxRL (N = 1024 sampled labels per image) against cross-entropy.

Both steps use the same model, batch and optimiser (the ImageNet driver's own
``make_train_step``); they are compiled first and then timed alternately, side by side in one
process, so the ratio is measured under the same conditions. The honest target: sampling N
labels (inverse CDF, ``B x N`` uniforms), computing advantages and gathering ``B x N``
log-probabilities add almost nothing to a ResNet-50 step.

  python benchmarks/imagenet_step.py                       # CPU-sized (the cpu preset's model)
  python benchmarks/imagenet_step.py --size=paper          # ResNet-50, 224x224, batch 256, bf16

Prints one JSON object: milliseconds per step of each objective and ``ratio = maxrl / ce``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from experiments.imagenet import config as config_lib  # noqa: E402
from experiments.imagenet import runs as runs_lib  # noqa: E402
from experiments.imagenet import steps as steps_lib  # noqa: E402
from experiments.imagenet import validation  # noqa: E402
from maxrl_jax.train import mesh as mesh_lib  # noqa: E402


def _config(size: str, batch: int | None, rollouts: int):
  config = config_lib.get_config("paper" if size == "paper" else "cpu")
  num_classes = 1000 if size == "paper" else int(config.data.pattern.num_classes)
  if batch:
    config.optim.batch_size = batch
  runs = {"cross_entropy": {"name": "ce", "objective": "cross_entropy", "num_rollouts": 1},
          "maxrl": {"name": "maxrl", "objective": "maxrl", "num_rollouts": rollouts}}
  return config, num_classes, runs


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", choices=("cpu", "paper"), default="cpu")
  parser.add_argument("--batch", type=int, default=None)
  parser.add_argument("--rollouts", type=int, default=1024)
  parser.add_argument("--steps", type=int, default=10)
  args = parser.parse_args(argv)

  config, num_classes, runs = _config(args.size, args.batch, args.rollouts)
  mesh = mesh_lib.make_mesh()
  validation.validate(config, mesh)
  model = steps_lib.build_model(config, num_classes)
  tx, schedule = steps_lib.make_optimizer(config, total_steps=10_000, warmup_steps=100)
  size, b = int(config.data.image_size), int(config.optim.batch_size)
  rng = np.random.default_rng(0)
  batch = mesh_lib.host_local_to_global(mesh, {
      "image": rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8),
      "label": rng.integers(0, num_classes, (b,), dtype=np.int32)})
  replicated = mesh_lib.replicated(mesh)

  steps, states = {}, {}
  for name, run in runs.items():
    rc = runs_lib.run_config(config, run)
    step_fn = steps_lib.make_train_step(rc, model, tx, schedule)
    steps[name] = jax.jit(step_fn, donate_argnums=0, out_shardings=(replicated, replicated))
    states[name] = steps_lib.init_state(config, model, tx, mesh)
    t0 = time.perf_counter()
    states[name], m = steps[name](states[name], batch, np.int32(0))
    jax.block_until_ready(m)
    print(f"compiled {name} in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)

  times = {name: [] for name in runs}
  for i in range(args.steps):
    for name in runs:
      t0 = time.perf_counter()
      states[name], m = steps[name](states[name], batch, np.int32(i + 1))
      jax.block_until_ready((states[name], m))
      times[name].append(time.perf_counter() - t0)
  ms = {name: 1e3 * float(np.median(v)) for name, v in times.items()}
  result = {
      "benchmark": "imagenet_step",
      "device": str(jax.devices()[0].device_kind), "num_devices": jax.device_count(),
      "model": config.model.name, "width": int(config.model.width),
      "image_size": size, "batch": b, "num_classes": num_classes,
      "dtype": config.model.dtype, "rollouts": args.rollouts, "steps_timed": args.steps,
      "cross_entropy_ms": ms["cross_entropy"], "maxrl_ms": ms["maxrl"],
      "ratio_maxrl_over_ce": ms["maxrl"] / ms["cross_entropy"],
  }
  print(json.dumps(result, indent=2))
  return result


if __name__ == "__main__":
  main()
