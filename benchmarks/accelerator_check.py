r"""One-command check of the paper-scale programs on an accelerator; writes ONE JSON file.

  python benchmarks/accelerator_check.py --out=accelerator_check.json           # GPU, <= 8 min
  python benchmarks/accelerator_check.py --size=tiny --out=/tmp/check.json      # CPU, < 1 min

What it measures, with the drivers' own jitted programs (``experiments.maze.steps``,
``experiments.imagenet.steps``), in this order:

1. maze SFT (paper section 6.2, appendix E.1): ``sft.steps`` steps of the ``paper`` preset
   (17x17, batch 32, the ~3.9M-parameter decoder in bfloat16), the loss curve, its first and last
   value (it must fall), compile time and seconds per step;
2. maze RL step of the scaling sweep (Figure 3): 256 mazes x N = 128, shared prompt, the
   preset's micro-batches, starting from the SFT parameters of 1 (responses of a partly trained
   policy, not of a random one); compile time, seconds per step, mean response length;
3. the same step with the prompt repeated N times in the sampler and in the loss (the driver's
   step with ``sampling.sample(share_prompt=False)`` and ``response_logprobs_naive`` swapped in
   while it is traced), at ``naive_batch`` mazes (32: the ratio is per maze) x N = 128 against
   the shared step at the same batch: the ratio repeated / shared of seconds per step;
4. ImageNet (paper section 6.1): ResNet-50 train step at batch 256, 224x224, synthetic images,
   MaxRL N = 1024 against cross-entropy (the ``paper`` preset; compile times, ms per step).

Also: JAX version, device kind, peak device memory (``device.memory_stats()``, null where the
backend has none), wall time of every part. The JSON is rewritten after every part, so a run cut
short leaves what it measured; parts are skipped (``"skipped"``) once ``--budget_seconds`` is
spent. ``--size=tiny`` runs the same code paths with tiny shapes (the ``smoke`` presets).

Only jax, flax, optax, chex, orbax-checkpoint, absl-py, numpy, ml_collections and tensorboardX are
needed; TensorFlow and tensorflow_datasets are never imported (``tensorflow_imported`` in the
JSON checks it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

SIZES = {
    "paper": dict(maze_preset="paper", sft_steps=300, sft_chunk=50, rl_batch=256, rl_n=128,
                  rl_steps=2, naive_batch=32, naive_steps=1, imagenet_preset="paper",
                  imagenet_batch=256, imagenet_rollouts=1024, imagenet_steps=5,
                  imagenet_compile_options={}),
    # The smoke presets' shapes; naive_batch == rl_batch reuses the shared step's program.
    "tiny": dict(maze_preset="smoke", sft_steps=40, sft_chunk=20, rl_batch=8, rl_n=8,
                 rl_steps=2, naive_batch=8, naive_steps=1, imagenet_preset="smoke",
                 imagenet_batch=16, imagenet_rollouts=64, imagenet_steps=2,
                 imagenet_compile_options={"xla_backend_optimization_level": 0}),
}


def peak_memory_gib():
  """Peak bytes in use on device 0 (``memory_stats``), or None where the backend has none."""
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  if not stats or "peak_bytes_in_use" not in stats:
    return None
  return stats["peak_bytes_in_use"] / float(1 << 30)


def _timed_calls(fn, state, steps: int):
  """Runs ``state, metrics = fn(state)`` ``steps`` times; (state, seconds per call, metrics)."""
  times, metrics = [], None
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = fn(state)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t0)
  return state, float(np.median(times)), metrics


@contextlib.contextmanager
def repeated_prompt():
  """While tracing: the prompt repeated N times in the sampler and in the loss."""
  from maxrl_jax import sampling
  sample = sampling.sample

  def sample_repeated(*args, **kwargs):
    kwargs["share_prompt"] = False
    return sample(*args, **kwargs)

  with mock.patch.object(sampling, "sample", sample_repeated), \
       mock.patch.object(sampling, "response_logprobs", sampling.response_logprobs_naive):
    yield


# --------------------------------------------------------------------------------------------

def maze_parts(p: dict, out: dict, save, deadline: float):
  from experiments.maze import config as config_lib
  from experiments.maze import data as maze_data
  from experiments.maze import steps
  from maxrl_jax.train import mesh as mesh_lib

  config = config_lib.get_config(p["maze_preset"])
  task = maze_data.MazeTask.from_config(config)
  model_cfg = steps.decoder_config(config, task)
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  params = steps.init_params(config, model_cfg)

  # 1. SFT.
  t_part = time.perf_counter()
  sft_spec = steps.optimizer_spec(config.sft)
  program = steps.sft_program(task, model_cfg, sft_spec, mesh, steps.compile_options(config))
  state = steps.init_state(params, steps.make_optimizer(sft_spec), mesh)
  b, chunk = int(config.sft.batch_size), int(p["sft_chunk"])
  grids0 = task.chunk_grids("sft", 0, chunk, b)
  t0 = time.perf_counter()
  compiled = program.lower(state, grids0).compile()
  compile_s = time.perf_counter() - t0
  losses, run_s = [], 0.0
  for start in range(0, int(p["sft_steps"]), chunk):
    grids = grids0 if start == 0 else task.chunk_grids("sft", start, chunk, b)
    t0 = time.perf_counter()
    state, m = compiled(state, grids)
    losses.extend(np.asarray(m["loss"], np.float64).tolist())
    run_s += time.perf_counter() - t0
  out["maze_sft"] = {
      "preset": p["maze_preset"], "maze_size": task.size, "batch": b, "steps": len(losses),
      "dtype": model_cfg.dtype, "compile_seconds": compile_s, "seconds_per_step": run_s /
      len(losses), "loss_first": losses[0], "loss_last": losses[-1],
      "loss_fell": bool(np.mean(losses[-10:]) < np.mean(losses[:10])),
      "loss_curve": losses, "peak_memory_gib": peak_memory_gib(),
      "wall_seconds": time.perf_counter() - t_part}
  save()
  sft_params = state.params

  # 2-3. RL steps.
  rl = config.rl
  rl_spec = steps.optimizer_spec(rl)
  n = int(p["rl_n"])
  index = jnp.asarray(0, jnp.int32)

  def rl_case(name, batch, num_steps, naive):
    if time.perf_counter() > deadline:
      out[name] = "skipped"
      save()
      return None
    t_case = time.perf_counter()
    sm = min(int(rl.sample_mazes or batch), batch)
    gm = min(int(rl.grad_mazes or batch), batch)
    make = steps.rl_program.__wrapped__  # a fresh closure: traced under the patch below
    spec = dataclasses.replace(steps.rl_program_spec(config, batch, n), sample_mazes=sm,
                               grad_mazes=gm, loss_lengths=())
    program = make(task, model_cfg, rl_spec, spec, mesh, steps.compile_options(config))
    key = steps.rl_key(config)
    st = steps.init_state(sft_params, steps.make_optimizer(rl_spec, spec.loss_scale), mesh)
    grids = task.chunk_grids("rl", 0, 1, batch)
    step_ids = jnp.zeros((1,), jnp.int32)
    t0 = time.perf_counter()
    with repeated_prompt() if naive else contextlib.nullcontext():
      compiled = program.lower(st, step_ids, grids, index, key).compile()
    compile_s = time.perf_counter() - t0
    # One untimed call (first-call transfers), then the timed ones.
    st, _ = compiled(st, step_ids, grids, index, key)
    jax.block_until_ready(st)
    st, sec, m = _timed_calls(lambda s: compiled(s, step_ids, grids, index, key), st, num_steps)
    res = {"batch": batch, "num_rollouts": n, "sample_mazes": sm, "grad_mazes": gm,
           "remat": model_cfg.remat, "response_cap": task.max_response_length,
           "prompt": "repeated" if naive else "shared", "compile_seconds": compile_s,
           "seconds_per_step": sec, "steps_timed": num_steps,
           "mean_response_len": float(np.asarray(m["train/response_len"]).mean()),
           "reward": float(np.asarray(m["train/reward"]).mean()),
           "loss": float(np.asarray(m["loss"]).mean()),
           "peak_memory_gib": peak_memory_gib(), "wall_seconds": time.perf_counter() - t_case}
    out[name] = res
    save()
    return res

  sweep = rl_case("maze_rl_sweep_shared", int(p["rl_batch"]), int(p["rl_steps"]), naive=False)
  nb = int(p["naive_batch"])
  if nb == int(p["rl_batch"]):
    shared = sweep
    out["maze_rl_ratio_shared"] = "maze_rl_sweep_shared"
  else:
    shared = rl_case("maze_rl_ratio_shared", nb, int(p["naive_steps"]), naive=False)
  naive = rl_case("maze_rl_ratio_repeated", nb, int(p["naive_steps"]), naive=True)
  if shared and naive:
    out["maze_rl_repeated_over_shared_seconds"] = (naive["seconds_per_step"]
                                                   / shared["seconds_per_step"])
  save()


def imagenet_part(p: dict, out: dict, save, deadline: float):
  if time.perf_counter() > deadline:
    out["imagenet"] = "skipped"
    save()
    return
  from experiments.imagenet import config as config_lib
  from experiments.imagenet import runs as runs_lib
  from experiments.imagenet import steps as steps_lib
  from maxrl_jax.train import mesh as mesh_lib
  t_part = time.perf_counter()
  config = config_lib.get_config(p["imagenet_preset"])
  config.optim.batch_size = int(p["imagenet_batch"])
  num_classes = 1000 if p["imagenet_preset"] == "paper" else int(config.data.pattern.num_classes)
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  model = steps_lib.build_model(config, num_classes)
  tx, schedule = steps_lib.make_optimizer(config, total_steps=100_000, warmup_steps=100)
  size, b = int(config.data.image_size), int(config.optim.batch_size)
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8)),
           "label": jnp.asarray(rng.integers(0, num_classes, (b,), dtype=np.int32))}
  replicated = mesh_lib.replicated(mesh)
  res = {"preset": p["imagenet_preset"], "model": str(config.model.name), "image_size": size,
         "batch": b, "num_classes": num_classes, "dtype": str(config.model.dtype),
         "num_rollouts": int(p["imagenet_rollouts"]), "synthetic_images": True}
  runs = (("cross_entropy", "cross_entropy", 1), ("maxrl", "maxrl", int(p["imagenet_rollouts"])))
  for name, objective, rollouts in runs:
    rc = runs_lib.run_config(config, {"name": name, "objective": objective,
                                       "num_rollouts": rollouts})
    step = jax.jit(steps_lib.make_train_step(rc, model, tx, schedule), donate_argnums=0,
                   out_shardings=(replicated, replicated),
                   compiler_options=p["imagenet_compile_options"] or None)
    state = steps_lib.init_state(config, model, tx, mesh)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, jnp.int32(0)).compile()
    res[f"{name}_compile_seconds"] = time.perf_counter() - t0
    state, m = compiled(state, batch, jnp.int32(0))
    jax.block_until_ready(m)
    i = [0]

    def one(s, compiled=compiled):
      i[0] += 1
      return compiled(s, batch, jnp.int32(i[0]))

    state, sec, m = _timed_calls(one, state, int(p["imagenet_steps"]))
    res[f"{name}_ms_per_step"] = 1e3 * sec
    res[f"{name}_loss"] = float(m["loss"])
    del state
  res["maxrl_over_cross_entropy"] = res["maxrl_ms_per_step"] / res["cross_entropy_ms_per_step"]
  res["peak_memory_gib"] = peak_memory_gib()
  res["wall_seconds"] = time.perf_counter() - t_part
  out["imagenet"] = res
  save()


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", choices=sorted(SIZES), default="paper")
  parser.add_argument("--out", required=True, help="path of the JSON file written")
  parser.add_argument("--budget_seconds", type=float, default=360.0,
                      help="parts not started by then are skipped")
  args = parser.parse_args(argv)
  p = SIZES[args.size]
  t_start = time.perf_counter()
  deadline = t_start + args.budget_seconds
  dev = jax.devices()[0]
  out = {"benchmark": "accelerator_check", "size": args.size, "jax": jax.__version__,
         "backend": jax.default_backend(), "device_kind": dev.device_kind,
         "num_devices": jax.device_count(), "settings": p}

  def save():
    out["wall_seconds"] = time.perf_counter() - t_start
    out["peak_memory_gib"] = peak_memory_gib()
    out["tensorflow_imported"] = any(m == "tensorflow" or m.startswith("tensorflow")
                                     for m in sys.modules)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
      json.dump(out, f, indent=1)
    os.replace(tmp, args.out)

  save()
  maze_parts(p, out, save, deadline)
  imagenet_part(p, out, save, deadline)
  out["complete"] = True
  save()
  print(json.dumps({k: v for k, v in out.items() if k != "maze_sft"}, indent=1))
  assert not out["tensorflow_imported"], "TensorFlow was imported"
  return out


if __name__ == "__main__":
  main()
