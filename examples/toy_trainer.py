"""A tiny reference training problem: the smallest complete use of the training infrastructure.

It drives :func:`maxrl_jax.train.loop.run_loop` directly (mesh, sharded data from the step
number, checkpoints, metrics, preemption guard); the experiment drivers wrap the same loop in
:func:`maxrl_jax.train.stage.run_stage`, which adds skip-if-complete, config checks, the workdir
lock and summaries. The tests use it for the loop, checkpoint and multi-process machinery.

Model: a one-hidden-layer MLP ``f(x) = tanh(x W1 + b1) W2 + b2`` regressing
``y = sin(x . w*)`` with the mean squared error

  L(theta) = (1/B) sum_b (f(x_b) - y_b)^2,

trained by SGD, theta_{t+1} = theta_t - lr (grad L + sigma eps_t), with a small gradient noise
``eps_t ~ N(0, I)`` drawn from ``jax.random.fold_in(key, t)`` (so the state carries an RNG key,
as the real drivers' do). The learning rate lives in the optimiser state
(``optax.inject_hyperparams``), so one compiled program serves every ``lr``; a resumed run keeps
the checkpoint's ``lr``.

The data of update ``t`` is a pure function of ``(seed, t)``, generated on the host; each process
keeps only its own rows of the global batch (``process_batch_slice``; a real input pipeline
would read only those) and the global array is assembled with ``host_local_to_global``. Parameters are replicated, the batch is sharded over ``"data"``.

Command line (used by the multi-process and SIGTERM tests)::

  python -m examples.toy_trainer --workdir=/tmp/toy --steps=64 [--lr=0.05] \
      [--coordinator_address=localhost:12345 --num_processes=2 --process_id=0]

writes ``config.json``, ``metrics.jsonl``, ``tb/``, ``checkpoints/``, and (process 0) the final
parameters ``params.npz`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import time
from typing import Any, Sequence

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from maxrl_jax.train import checkpoint as checkpoint_lib
from maxrl_jax.train import logs
from maxrl_jax.train import loop
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train.errors import require


def get_config() -> ml_collections.ConfigDict:
  """Default toy configuration (runs in about a second on CPU)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dim = 8
  c.hidden = 16
  c.batch_size = 32
  c.lr = 0.05
  c.grad_noise = 1e-3
  c.total_steps = 64
  c.chunk_steps = 4
  c.checkpoint_every = 8
  c.max_to_keep = 3
  c.log_every = 1
  c.chunk_sleep = 0.0  # Seconds of host sleep per chunk: gives tests time to send SIGTERM.
  return c


def validate(config: ml_collections.ConfigDict, mesh) -> int:
  """Checks the config before anything compiles; returns the per-process batch size."""
  for field in ("dim", "hidden", "total_steps", "chunk_steps", "checkpoint_every", "max_to_keep"):
    require(int(config[field]) >= 1, f"config.{field}", f"must be >= 1, got {config[field]}")
  require(np.isfinite(config.lr) and config.lr > 0, "config.lr", f"must be > 0, got {config.lr}")
  return mesh_lib.check_global_batch(config.batch_size, mesh, "config.batch_size")


def _teacher(config) -> np.ndarray:
  return np.random.default_rng([config.seed, 2**31 - 1]).standard_normal(config.dim)


def batch_rows(config, step: int, rows: slice) -> dict[str, np.ndarray]:
  """Rows ``rows`` of the global batch of update ``step``: a pure function of (seed, step)."""
  rng = np.random.default_rng([config.seed, step])
  x = rng.standard_normal((config.batch_size, config.dim)).astype(np.float32)[rows]
  y = np.sin(x @ _teacher(config)).astype(np.float32)
  return {"x": x, "y": y}


def _optimizer() -> optax.GradientTransformation:
  """SGD whose learning rate lives in the optimiser state (so it is data, not a constant)."""
  return optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)


def init_state(config, mesh) -> dict[str, Any]:
  """Parameters, SGD state (holding ``config.lr``) and RNG key, replicated over ``mesh``.

  The parameters are drawn on the host from ``config.seed`` (identical in every process) and
  placed with :func:`maxrl_jax.train.mesh.replicate`.
  """
  rng = np.random.default_rng([config.seed, 2**31 - 2])
  params = {
      "w1": (rng.standard_normal((config.dim, config.hidden)) / np.sqrt(config.dim)),
      "b1": np.zeros((config.hidden,)),
      "w2": (rng.standard_normal((config.hidden,)) / np.sqrt(config.hidden)),
      "b2": np.zeros(()),
  }
  params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
  opt_state = _optimizer().init(params)
  opt_state.hyperparams["learning_rate"] = np.float32(config.lr)
  state = {"params": params, "opt_state": opt_state, "key": jax.random.key(config.seed)}
  return mesh_lib.replicate(mesh, state)


def loss_fn(params, batch) -> jax.Array:
  hidden = jnp.tanh(batch["x"] @ params["w1"] + params["b1"])
  pred = hidden @ params["w2"] + params["b2"]
  return jnp.mean((pred - batch["y"]) ** 2)


def make_train_chunk(config, mesh):
  """``(state, step0, data[n, B, ...]) -> (state, metrics[n])``: ``lax.scan`` over n updates.

  Cached on what the program depends on, so repeated runs in one process compile once per
  chunk length.
  """
  return _train_chunk_fn(float(config.grad_noise), mesh)


TRACE_COUNTS: collections.Counter = collections.Counter()


@functools.lru_cache(maxsize=16)
def _train_chunk_fn(grad_noise: float, mesh):
  opt = _optimizer()
  state_sharding = mesh_lib.replicated(mesh)
  data_sharding = mesh_lib.batch_sharding(mesh, batch_axis=1)

  def update(state, inputs):
    step, batch = inputs
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch)
    grad_norm = optax.tree.norm(grads)
    # One normal draw for all parameters (cheaper to compile than one per leaf).
    flat, unravel = ravel_pytree(grads)
    noise = jax.random.normal(jax.random.fold_in(state["key"], step), flat.shape, flat.dtype)
    grads = unravel(flat + grad_noise * noise)
    updates, opt_state = opt.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new_state = {"params": params, "opt_state": opt_state, "key": state["key"]}
    return new_state, {"loss": loss, "grad_norm": grad_norm}

  @functools.partial(
      jax.jit,
      in_shardings=(state_sharding, state_sharding, data_sharding),
      out_shardings=(state_sharding, state_sharding),
      donate_argnums=0,
  )
  def chunk(state, step0, data):
    TRACE_COUNTS[mesh] += 1  # Runs only while tracing: counts (re)compilations for the tests.
    n = data["x"].shape[0]
    steps = step0 + jnp.arange(n, dtype=jnp.int32)
    return jax.lax.scan(update, state, (steps, data))

  return chunk


def train(config, workdir: str, devices: Sequence[jax.Device] | None = None,
          guard: loop.PreemptionGuard | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
  """Trains (resuming from ``workdir/checkpoints`` if present); returns ``(state, summary)``."""
  mesh = mesh_lib.make_mesh(devices)
  validate(config, mesh)
  rows = mesh_lib.process_batch_slice(mesh, config.batch_size)

  writer = logs.MetricWriter(workdir)
  writer.write_config(config)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), config.max_to_keep)

  state = init_state(config, mesh)
  start_step = 0
  restored = ckpt.restore_latest(state)
  if restored is not None:
    start_step, state, _ = restored

  chunk_fn = make_train_chunk(config, mesh)

  def train_chunk(state, step0, n):
    local = [batch_rows(config, step0 + i, rows) for i in range(n)]
    data = {k: np.stack([b[k] for b in local]) for k in local[0]}
    data = mesh_lib.host_local_to_global(mesh, data, batch_axis=1)
    state, metrics = chunk_fn(state, np.int32(step0), data)
    if config.chunk_sleep:
      time.sleep(config.chunk_sleep)
    return state, metrics

  progress = logs.Progress(config.total_steps, start_step, every_seconds=5.0, name="toy")
  try:
    spec = loop.LoopSpec(total_steps=config.total_steps, chunk_steps=config.chunk_steps,
                         checkpoint_every=config.checkpoint_every, log_every=config.log_every)
    state, step, reason = loop.run_loop(
        state, start_step, train_chunk, spec, checkpointer=ckpt, writer=writer,
        hooks=loop.Hooks(checkpoint_meta=lambda s: {"data_step": s}), progress=progress,
        guard=guard)
  finally:
    ckpt.close()
    writer.close()
  summary = {"step": int(step), "stopped_reason": reason, "start_step": int(start_step),
             "num_devices": int(mesh.devices.size), "num_processes": jax.process_count()}
  return state, summary


def params_to_numpy(state) -> dict[str, np.ndarray]:
  """The replicated parameters as host arrays (works in every process)."""
  return {k: np.asarray(v.addressable_data(0)) for k, v in state["params"].items()}


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--lr", type=float, default=None)
  parser.add_argument("--batch_size", type=int, default=None)
  parser.add_argument("--chunk_steps", type=int, default=None)
  parser.add_argument("--checkpoint_every", type=int, default=None)
  parser.add_argument("--chunk_sleep", type=float, default=None)
  parser.add_argument("--coordinator_address", default=None)
  parser.add_argument("--num_processes", type=int, default=None)
  parser.add_argument("--process_id", type=int, default=None)
  args = parser.parse_args(argv)

  mesh_lib.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
  config = get_config()
  for name, field in (("steps", "total_steps"), ("lr", "lr"), ("batch_size", "batch_size"),
                      ("chunk_steps", "chunk_steps"), ("checkpoint_every", "checkpoint_every"),
                      ("chunk_sleep", "chunk_sleep")):
    if getattr(args, name) is not None:
      config[field] = getattr(args, name)

  with loop.PreemptionGuard() as guard:
    state, summary = train(config, args.workdir, guard=guard)
  if mesh_lib.is_chief():
    np.savez(os.path.join(args.workdir, "params.npz"), **params_to_numpy(state))
    with open(os.path.join(args.workdir, "summary.json"), "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=2)
  print(json.dumps(summary), flush=True)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
