"""Maze driver: stage-1 SFT, stage-2 on-policy RL, pass@k evaluation (SPEC section 4.3).

Stage 1 (``sft``) minimises the next-token cross-entropy of the BFS shortest path given the maze
prompt, masked to the response::

  L_SFT(theta) = - sum_{b,t} m_bt log pi_theta(y_bt | x_b, y_b,<t) / sum_{b,t} m_bt,

with AdamW. Stage 2 (``rl``) starts from the SFT parameters and is fully on-policy: each step
draws a fresh batch of ``B`` mazes, samples ``N`` rollouts ``z_1..z_N`` per maze at temperature
``rl.temperature``, scores them with the environment's verifier ``r_i in {0, 1}``, computes the
estimator's advantages ``A_i = N a(r_i, K, N)`` (``maxrl_jax.estimators.advantages``, any method by
name) and takes ONE AdamW step on the surrogate

  L_RL(theta) = - (1 / (B N)) sum_{b,i} A_bi * sum_t m_bit log pi_theta(z_bit | x_b, z_bi,<t),

whose gradient is the estimator ``g = sum_i a_i grad log pi(z_i | x)`` averaged over mazes.

Evaluation (``evaluate``): ``n`` samples per held-out test maze at temperature 1, ``c`` of them
reach the goal; ``pass@k`` is the unbiased ``1 - C(n-c, k)/C(n, k)`` averaged over mazes, for
every configured ``k <= n``.

Speed and scale: a whole chunk of training steps (sampling + rewards + advantages + update) is one
``jax.jit`` of a ``lax.scan``; the maze batch is generated on the device from the step number and
sharded over the mesh's ``"data"`` axis while parameters and optimiser state are replicated, so
the same program runs on one CPU, on 8 GPUs, or on a TPU pod. The host loop
(``maxrl_jax.train.loop.run_loop``) does logging, periodic evaluation and checkpoints; resumes
are exact because every random key is ``fold_in(key, step)``.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.maze import data as maze_data
from maxrl_jax import estimators
from maxrl_jax import metrics as metrics_lib
from maxrl_jax import sampling
from maxrl_jax.models import transformer
from maxrl_jax.train import checkpoint as checkpoint_lib
from maxrl_jax.train import logs
from maxrl_jax.train import loop as loop_lib
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train.errors import ConfigError, require

SUMMARY_FILE = "summary.json"

# Key streams (folded into the run seed) so SFT, RL, evaluation and initialisation never share
# random numbers.
_INIT_STREAM, _SFT_STREAM, _RL_STREAM, _EVAL_STREAM = 0, 1, 2, 3


@flax.struct.dataclass
class TrainState:
  """What a checkpoint holds: the step is the checkpoint's step number."""
  params: Any
  opt_state: Any


# ------------------------------------------------------------------------------------------------
# Mesh.


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """The shared 1-D ``"data"`` mesh (Auto axis: the sampler's ``while_loop`` needs GSPMD)."""
  return mesh_lib.make_mesh(devices)


# ------------------------------------------------------------------------------------------------
# Configuration.


def decoder_config(config: ml_collections.ConfigDict, task: maze_data.MazeTask
                   ) -> transformer.DecoderConfig:
  """The policy's ``DecoderConfig`` from ``config.model`` (vocabulary from the environment)."""
  m = config.model
  return transformer.DecoderConfig(
      vocab_size=task.vocab_size, num_layers=m.num_layers, hidden_dim=m.hidden_dim,
      mlp_dim=m.mlp_dim, num_heads=m.num_heads, num_kv_heads=m.num_kv_heads,
      rope_theta=m.rope_theta, rms_eps=m.rms_eps,
      max_len=m.max_len or task.prompt_length + task.max_response_length, dtype=m.dtype,
      param_dtype=m.param_dtype)


def validate(config: ml_collections.ConfigDict, mesh=None) -> None:
  """Raises ConfigError naming the field for any invalid value, before anything compiles."""
  mesh = mesh if mesh is not None else make_mesh()
  require(config.experiment in ("sweep", "data_scarce", "single"), "config.experiment",
          f"must be 'sweep', 'data_scarce' or 'single', got {config.experiment!r}")
  require(config.maze.size >= 5 and config.maze.size % 2 == 1, "config.maze.size",
          f"must be odd and >= 5, got {config.maze.size}")
  require(config.maze.num_test >= 1, "config.maze.num_test", "must be >= 1")
  task = maze_data.MazeTask.from_config(config)
  need = task.prompt_length + task.max_response_length
  require(config.model.max_len == 0 or config.model.max_len >= need, "config.model.max_len",
          f"must be >= prompt ({task.prompt_length}) + response ({task.max_response_length}) "
          f"= {need} tokens for {config.maze.size}x{config.maze.size} mazes, got "
          f"{config.model.max_len}")
  try:
    decoder_config(config, task).validate()
  except ValueError as e:
    raise ConfigError("config.model", str(e)) from e
  for name in ("sft", "rl"):
    sec = config[name]
    require(sec.chunk_steps >= 1, f"config.{name}.chunk_steps", "must be >= 1")
    require(sec.learning_rate > 0, f"config.{name}.learning_rate", "must be > 0")
    require(sec.eval_every >= 0, f"config.{name}.eval_every", "must be >= 0")
    require(sec.checkpoint_every >= 1, f"config.{name}.checkpoint_every", "must be >= 1")
  require(config.sft.steps >= 0, "config.sft.steps", "must be >= 0")
  mesh_lib.check_global_batch(config.sft.batch_size, mesh, "config.sft.batch_size")
  runs = grid_runs(config)
  for estimator, n, _ in runs:
    require(estimator in estimators.METHODS, "config.rl.estimator",
            f"unknown estimator {estimator!r}; choose from {sorted(estimators.METHODS)}")
    require(n >= 1, "config.rl.num_rollouts", f"must be >= 1, got {n}")
    try:  # Options the estimator rejects (e.g. truncation > N) fail here, not inside jit.
      estimators.advantages(np.zeros((1, n), np.float32), estimator,
                            **dict(config.rl.estimator_options))
    except ValueError as e:
      raise ConfigError("config.rl.estimator_options", f"{estimator} with N={n}: {e}") from e
  field = "config.rl.batch_size" if config.experiment == "single" else "config.sweep.batch_size"
  batch = config.rl.batch_size if config.experiment == "single" else config.sweep.batch_size
  mesh_lib.check_global_batch(batch, mesh, field)
  steps = config.rl.steps if config.experiment == "single" else config.sweep.steps
  require(steps >= 1, "config.sweep.steps" if config.experiment != "single" else "config.rl.steps",
          "must be >= 1")
  require(config.rl.train_set_size >= 0, "config.rl.train_set_size", "must be >= 0")
  if config.experiment == "data_scarce":
    require(config.rl.train_set_size >= 1, "config.rl.train_set_size",
            "the data-scarce regime needs a fixed training set (>= 1 maze)")
  require(config.eval.num_samples >= 1, "config.eval.num_samples", "must be >= 1")
  require(1 <= config.eval.during_num_samples <= config.eval.num_samples,
          "config.eval.during_num_samples", "must be in [1, eval.num_samples]")
  require(1 <= config.eval.num_mazes <= config.maze.num_test, "config.eval.num_mazes",
          f"must be in [1, maze.num_test={config.maze.num_test}]")
  require(0 <= config.eval.train_mazes <= max(config.rl.train_set_size, 0),
          "config.eval.train_mazes", "must be in [0, rl.train_set_size]")
  require(any(k <= config.eval.num_samples for k in config.eval.ks), "config.eval.ks",
          "needs at least one k <= eval.num_samples")
  require(config.eval.samples_per_call >= 1, "config.eval.samples_per_call", "must be >= 1")
  require(config.eval.mazes_per_call >= 1, "config.eval.mazes_per_call", "must be >= 1")


def grid_runs(config: ml_collections.ConfigDict) -> list[tuple[str, int, str]]:
  """The RL runs of the experiment: ``(estimator, num_rollouts, run name)``."""
  if config.experiment == "single":
    pairs = [(config.rl.estimator, int(config.rl.num_rollouts))]
  else:
    pairs = [(e, int(n)) for e in config.sweep.estimators for n in config.sweep.num_rollouts]
  return [(e, n, f"{e}_n{n}") for e, n in pairs]


def rl_config(config: ml_collections.ConfigDict, estimator: str, num_rollouts: int
              ) -> ml_collections.ConfigDict:
  """The config of one grid run: ``config.rl`` with the sweep's estimator, N, batch and steps."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.rl.estimator = estimator
  c.rl.num_rollouts = int(num_rollouts)
  if config.experiment != "single":
    c.rl.batch_size = config.sweep.batch_size
    c.rl.steps = config.sweep.steps
  return c


# ------------------------------------------------------------------------------------------------
# Evaluation.


def _compile_options(config) -> tuple:
  """``config.compile_options`` as a hashable tuple (XLA options of every compiled program)."""
  return _freeze(config.get("compile_options", {}) or {})


@functools.lru_cache(maxsize=None)
def _eval_program(task, model_cfg, num_samples, temperature, compile_options):
  """Jitted ``(params, grids[M, S, S], key) -> successes[M]`` among ``num_samples`` rollouts."""

  @functools.partial(jax.jit, compiler_options=dict(compile_options) or None)
  def successes(params, grids, key):
    prompts = task.prompts(grids)
    out = sampling.sample(params, model_cfg, prompts, key, num_samples=num_samples,
                          max_new_tokens=task.max_response_length, temperature=temperature,
                          stop_tokens=task.stop_tokens, pad_id=task.pad_id)
    return task.rewards(grids, out.tokens).sum(-1).astype(jnp.int32)

  return successes


def _divisor_at_most(n: int, cap: int) -> int:
  """The largest divisor of ``n`` that is <= ``cap``."""
  return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def success_counts(params, model_cfg, task: maze_data.MazeTask, grids: jax.Array,
                   key: jax.Array, *, num_samples: int, samples_per_call: int,
                   mazes_per_call: int, temperature: float = 1.0, mesh=None,
                   compile_options: tuple = ()) -> np.ndarray:
  """Successes ``c`` per maze among ``num_samples`` samples (host int array ``[M]``).

  Sampling is split into calls of at most ``mazes_per_call`` mazes x ``samples_per_call``
  rollouts (a memory bound); the sample block is the largest divisor of ``num_samples`` within
  the bound and the maze block a multiple of the device count (a last partial maze block is
  padded and the padding dropped), so every call reuses one compiled program.
  """
  grids = np.asarray(grids)
  m = grids.shape[0]
  mesh = mesh if mesh is not None else make_mesh()
  ndev = mesh.devices.size
  mb = -(-min(mazes_per_call, m) // ndev) * ndev
  sb = _divisor_at_most(num_samples, samples_per_call)
  program = _eval_program(task, model_cfg, sb, float(temperature), compile_options)
  counts = np.zeros((m,), np.int64)
  for i0 in range(0, m, mb):
    block = grids[i0:i0 + mb]
    valid = block.shape[0]
    if valid < mb:
      block = np.concatenate([block, np.repeat(block[:1], mb - valid, 0)], 0)
    block = jax.device_put(block, mesh_lib.batch_sharding(mesh))
    for j0 in range(0, num_samples, sb):
      k = jax.random.fold_in(jax.random.fold_in(key, i0), j0)
      c = program(params, block, k)
      counts[i0:i0 + valid] += np.asarray(c)[:valid]
  return counts


def pass_at_k_table(counts: np.ndarray, num_samples: int, ks) -> dict[str, float]:
  """Mean unbiased pass@k over mazes for every ``k <= num_samples``: ``{"pass@k": value}``."""
  counts = np.asarray(counts)
  out = {}
  for k in ks:
    if k <= num_samples:
      per_maze = np.asarray(metrics_lib.pass_at_k(num_samples, counts, k), np.float64)
      out[f"pass@{k}"] = float(per_maze.mean())
  return out


def evaluate(params, model_cfg, task: maze_data.MazeTask, grids, key, *, num_samples: int,
             ks, samples_per_call: int, mazes_per_call: int, temperature: float = 1.0,
             mesh=None, compile_options: tuple = ()) -> dict[str, float]:
  """pass@k (unbiased, averaged over ``grids``) for every ``k <= num_samples``.

  Returns ``{"pass@k": ...}`` plus ``"solved_any"`` (fraction of mazes with at least one
  success among the ``num_samples``).
  """
  counts = success_counts(params, model_cfg, task, grids, key, num_samples=num_samples,
                          samples_per_call=samples_per_call, mazes_per_call=mazes_per_call,
                          temperature=temperature, mesh=mesh, compile_options=compile_options)
  out = pass_at_k_table(counts, num_samples, ks)
  out["solved_any"] = float((counts > 0).mean())
  return out


def _eval_sets(config, task) -> dict[str, np.ndarray]:
  """Named maze sets evaluated: ``test`` always, ``train`` in the data-scarce regime."""
  sets = {"test": np.asarray(task.test_grids())[: config.eval.num_mazes]}
  if config.eval.train_mazes:
    sets["train"] = np.asarray(task.fixed_train_grids(config.rl.train_set_size)
                               )[: config.eval.train_mazes]
  return sets


def _evaluate_sets(params, model_cfg, task, config, step: int, num_samples: int, mesh
                   ) -> dict[str, float]:
  """``{"eval/<set>/pass@k": ...}`` over every evaluation set (keys fixed by ``step``)."""
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), _EVAL_STREAM), step)
  out = {}
  for i, (name, grids) in enumerate(_eval_sets(config, task).items()):
    res = evaluate(params, model_cfg, task, grids, jax.random.fold_in(key, i),
                   num_samples=num_samples, ks=config.eval.ks,
                   samples_per_call=config.eval.samples_per_call,
                   mazes_per_call=config.eval.mazes_per_call,
                   temperature=config.eval.temperature, mesh=mesh,
                   compile_options=_compile_options(config))
    out.update({f"eval/{name}/{k}": v for k, v in res.items()})
  return out


# ------------------------------------------------------------------------------------------------
# Training steps.
#
# A chunk program is ``(state, start_step, grids[n, B, S, S], method_index) -> (state, metrics)``:
# a ``lax.scan`` of ``n`` steps, jitted once and cached per shape-defining setting, so runs that
# differ only in the estimator (a traced index into ``methods``) share one compiled program.


def _optimizer_spec(sec: ml_collections.ConfigDict) -> tuple:
  return (float(sec.learning_rate), float(sec.weight_decay), int(sec.get("warmup_steps", 0)),
          float(sec.get("max_grad_norm", 0.0)))


def _make_optimizer(sec_or_spec) -> optax.GradientTransformation:
  """AdamW with optional linear warmup and optional global-norm clipping."""
  lr, wd, warmup, clip = (sec_or_spec if isinstance(sec_or_spec, tuple)
                          else _optimizer_spec(sec_or_spec))
  schedule = optax.linear_schedule(0.0, lr, warmup) if warmup else lr
  parts = [optax.clip_by_global_norm(clip)] if clip else []
  parts.append(optax.adamw(schedule, weight_decay=wd))
  return optax.chain(*parts)


def _freeze(options) -> tuple:
  return tuple(sorted(dict(options).items()))


def _sft_step_fn(task, model_cfg, optimizer):
  """One SFT step ``(state, grids[B, S, S]) -> (state, metrics)``."""

  def step_fn(state: TrainState, grids):
    prompts = task.prompts(grids)
    targets = task.targets(grids)  # [B, Lr], BFS path then DONE <eos>, padded
    mask = (targets != task.pad_id).astype(jnp.float32)

    def loss_fn(params):
      lp = sampling.response_logprobs(params, model_cfg, prompts, targets[:, None, :])[:, 0]
      return -(lp * mask).sum() / jnp.maximum(mask.sum(), 1.0), lp

    (loss, lp), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
               # Probability of the whole BFS answer under the policy (teacher-forced).
               "train/bfs_answer_prob": jnp.exp((lp * mask).sum(-1)).mean()}
    return TrainState(params, opt_state), metrics

  return step_fn


def _rl_step_fn(task, model_cfg, optimizer, n, methods, temperature, base_key, method_index):
  """One on-policy RL step ``(state, (step, grids[B, S, S])) -> (state, metrics)``."""
  adv_fns = [functools.partial(estimators.advantages, method=m, **dict(o)) for m, o in methods]

  def step_fn(state: TrainState, xs):
    step, grids = xs
    key = jax.random.fold_in(base_key, step)
    prompts = task.prompts(grids)
    out = sampling.sample(state.params, model_cfg, prompts, key, num_samples=n,
                          max_new_tokens=task.max_response_length, temperature=temperature,
                          stop_tokens=task.stop_tokens, pad_id=task.pad_id)
    rewards = task.rewards(grids, out.tokens)  # [B, N] in {0, 1}
    if len(adv_fns) == 1:
      adv = adv_fns[0](rewards)
    else:
      adv = jax.lax.switch(method_index, adv_fns, rewards)
    adv = jax.lax.stop_gradient(adv)

    def loss_fn(params):
      lp = sampling.response_logprobs(params, model_cfg, prompts, out.tokens)
      return estimators.surrogate_loss(lp, out.mask, adv)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    k = rewards.sum(-1)
    metrics = {
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
        "train/reward": rewards.mean(),
        "train/frac_all_fail": (k == 0).mean(),
        "train/frac_all_pass": (k == n).mean(),
        "train/response_len": out.mask.sum(-1).mean(),
        "train/neg_logprob_per_token": -(out.logprobs * out.mask).sum()
                                       / jnp.maximum(out.mask.sum(), 1.0),
    }
    return TrainState(params, opt_state), metrics

  return step_fn


@functools.lru_cache(maxsize=None)
def _sft_program(task, model_cfg, opt_spec, mesh, compile_options):
  """Jitted SFT chunk ``(state, grids[n, B, S, S]) -> (state, metrics[n])``."""
  step_fn = _sft_step_fn(task, model_cfg, _make_optimizer(opt_spec))

  @functools.partial(jax.jit, donate_argnums=0, out_shardings=mesh_lib.replicated(mesh),
                     compiler_options=dict(compile_options) or None)
  def chunk(state, grids):
    return jax.lax.scan(step_fn, state, grids)

  return chunk


@functools.lru_cache(maxsize=None)
def _rl_program(task, model_cfg, opt_spec, n, methods, temperature, seed, mesh, compile_options):
  """Jitted RL chunk ``(state, steps[n], grids[n, B, S, S], method_index) -> (state, metrics)``."""
  optimizer = _make_optimizer(opt_spec)
  base_key = jax.random.fold_in(jax.random.key(seed), _RL_STREAM)

  @functools.partial(jax.jit, donate_argnums=0, out_shardings=mesh_lib.replicated(mesh),
                     compiler_options=dict(compile_options) or None)
  def chunk(state, steps, grids, method_index):
    step_fn = _rl_step_fn(task, model_cfg, optimizer, n, methods, temperature, base_key,
                          method_index)
    return jax.lax.scan(step_fn, state, (steps, grids))

  return chunk


def _methods(config) -> tuple:
  """The estimators one compiled RL program can switch between: ``((name, options), ...)``."""
  names = [config.rl.estimator]
  if config.experiment != "single":
    names = list(dict.fromkeys(list(config.sweep.estimators) + names))
  return tuple((m, _freeze(config.rl.estimator_options)) for m in names)


def _grid_sharding(mesh):
  return mesh_lib.batch_sharding(mesh, batch_axis=1)  # [steps, batch, S, S]


def make_sft_chunk(config, task, model_cfg, mesh) -> Callable:
  """``train_chunk(state, start_step, num_steps)`` of stage 1 for ``run_loop``."""
  program = _sft_program(task, model_cfg, _optimizer_spec(config.sft), mesh,
                         _compile_options(config))
  batch = int(config.sft.batch_size)

  def train_chunk(state, start_step, num_steps):
    grids = task.chunk_grids("sft", start_step, num_steps, batch)
    return program(state, jax.device_put(grids, _grid_sharding(mesh)))

  return train_chunk


def make_rl_chunk(config, task, model_cfg, mesh) -> Callable:
  """``train_chunk(state, start_step, num_steps)`` of stage 2 for ``run_loop``."""
  rl = config.rl
  methods = _methods(config)
  index = jnp.asarray([m for m, _ in methods].index(rl.estimator), jnp.int32)
  program = _rl_program(task, model_cfg, _optimizer_spec(rl), int(rl.num_rollouts), methods,
                        float(rl.temperature), int(config.seed), mesh, _compile_options(config))
  batch, m = int(rl.batch_size), int(rl.train_set_size)

  def train_chunk(state, start_step, num_steps):
    grids = task.chunk_grids("rl", start_step, num_steps, batch, m)
    steps = jnp.arange(start_step, start_step + num_steps, dtype=jnp.int32)
    return program(state, steps, jax.device_put(grids, _grid_sharding(mesh)), index)

  return train_chunk


# ------------------------------------------------------------------------------------------------
# Stages.


def write_json(path: str, obj: Any) -> None:
  if not mesh_lib.is_chief():
    return
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def read_summary(workdir: str) -> dict | None:
  """The run's ``summary.json`` if it is complete, else None."""
  path = os.path.join(workdir, SUMMARY_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return None
  return summary if summary.get("complete") else None


def _train_stage(*, name: str, config, workdir: str, train_chunk, optimizer, init_params,
                 total_steps: int, chunk_steps: int, eval_every: int, checkpoint_every: int,
                 mesh, task, model_cfg, stop_step: int | None, initial_eval: dict | None):
  """Shared host loop of both stages: resume, run chunks, periodic eval, final checkpoint."""
  os.makedirs(workdir, exist_ok=True)
  writer = logs.MetricWriter(workdir)
  writer.write_config(config)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=2)
  # A private copy: the state is donated to the jitted chunks, the caller keeps init_params.
  params = jax.tree.map(jnp.copy, mesh_lib.replicate(mesh, init_params))
  state = TrainState(params, mesh_lib.replicate(mesh, optimizer.init(params)))
  start_step = 0
  restored = ckpt.restore_latest(state)
  if restored is not None:
    start_step, state, _ = restored
    print(f"[maze {name}] resumed from step {start_step} in {workdir}", flush=True)
  elif initial_eval:
    writer.write_scalars(0, initial_eval)
  end_step = total_steps if stop_step is None else min(stop_step, total_steps)

  def on_chunk_end(state, step):
    if eval_every and step % eval_every == 0 and step < total_steps:
      res = _evaluate_sets(state.params, model_cfg, task, config, step,
                           config.eval.during_num_samples, mesh)
      writer.write_scalars(step, res)

  chunk = max(1, min(chunk_steps, eval_every or chunk_steps, checkpoint_every))
  progress = logs.Progress(end_step, start_step, name=f"maze {name}")
  t0 = time.time()
  state, step, reason = loop_lib.run_loop(
      state=state, start_step=start_step, total_steps=end_step, chunk_steps=chunk,
      train_chunk=train_chunk, checkpointer=ckpt, writer=writer,
      checkpoint_every=checkpoint_every, progress=progress, on_chunk_end=on_chunk_end)
  ckpt.wait()
  ckpt.close()
  return state, int(step), reason, writer, time.time() - t0


def sft(config: ml_collections.ConfigDict, workdir: str, *, mesh=None,
        stop_step: int | None = None) -> tuple[Any, dict]:
  """Stage 1: supervised next-token training on BFS shortest paths, then a test evaluation.

  Resumes from ``workdir/checkpoints``; a workdir holding a complete ``summary.json`` is
  restored without training. ``stop_step`` stops early (no summary; for tests/interruptions).

  Returns:
    ``(params, summary)``; ``summary["eval"]`` holds the final ``eval/test/pass@k`` values from
    ``eval.num_samples`` samples per maze (the RL runs' step-0 point).
  """
  mesh = mesh if mesh is not None else make_mesh()
  validate(config, mesh)
  task = maze_data.MazeTask.from_config(config)
  model_cfg = decoder_config(config, task)
  optimizer = _make_optimizer(config.sft)
  init_params = transformer.init_params(
      jax.random.fold_in(jax.random.key(config.seed), _INIT_STREAM), model_cfg)
  done = read_summary(workdir)
  if done is not None:
    params = _restore_params(workdir, init_params, optimizer, mesh)
    return params, done
  # The starting point (random initialisation) on the test mazes, logged as step 0.
  pre = None
  if not os.path.exists(os.path.join(workdir, logs.METRICS_FILE)):
    pre = _evaluate_sets(mesh_lib.replicate(mesh, init_params), model_cfg, task, config, 0,
                         config.eval.during_num_samples, mesh)
  state, step, reason, writer, wall = _train_stage(
      name="sft", config=config, workdir=workdir,
      train_chunk=make_sft_chunk(config, task, model_cfg, mesh), optimizer=optimizer,
      init_params=init_params, total_steps=config.sft.steps, chunk_steps=config.sft.chunk_steps,
      eval_every=config.sft.eval_every, checkpoint_every=config.sft.checkpoint_every, mesh=mesh,
      task=task, model_cfg=model_cfg, stop_step=stop_step, initial_eval=pre)
  summary = {"stage": "sft", "step": step, "stopped": reason, "complete": False,
             "num_params": transformer.num_params(init_params), "train_wall_s": wall}
  _finish_stage(summary, state, config.sft.steps, writer, workdir=workdir, config=config,
                task=task, model_cfg=model_cfg, mesh=mesh)
  return state.params, summary


def _finish_stage(summary: dict, state, total_steps: int, writer, *, workdir: str, config,
                  task, model_cfg, mesh) -> None:
  """Once a stage reached ``total_steps``: final evaluation, logged, and ``summary.json``."""
  step = summary["step"]
  if step >= total_steps:
    t0 = time.time()
    summary["eval"] = _evaluate_sets(state.params, model_cfg, task, config, step,
                                     config.eval.num_samples, mesh)
    summary["eval_wall_s"] = time.time() - t0
    writer.write_scalars(step, summary["eval"])
    summary["complete"] = True
    write_json(os.path.join(workdir, SUMMARY_FILE), summary)
  writer.close()


def _restore_params(workdir, init_params, optimizer, mesh):
  """Parameters of the latest checkpoint in ``workdir``."""
  params = mesh_lib.replicate(mesh, init_params)
  template = TrainState(params, mesh_lib.replicate(mesh, optimizer.init(params)))
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  restored = ckpt.restore_latest(template)
  ckpt.close()
  if restored is None:
    raise FileNotFoundError(f"{workdir} has a summary but no readable checkpoint")
  return restored[1].params


def rl(config: ml_collections.ConfigDict, workdir: str, init_params, *, mesh=None,
       stop_step: int | None = None, initial_eval: dict | None = None) -> tuple[Any, dict]:
  """Stage 2: on-policy RL with ``config.rl.estimator`` from ``init_params``, then evaluation.

  ``config`` is one run's config (see ``rl_config``). ``initial_eval`` (the SFT model's pass@k)
  is logged as step 0 so every run's curve starts at the shared starting point. A workdir with
  a complete ``summary.json`` is skipped (its summary returned, params None).

  Returns:
    ``(params, summary)``: ``summary["eval"]`` the final ``eval/<set>/pass@k`` from
    ``eval.num_samples`` samples per maze.
  """
  mesh = mesh if mesh is not None else make_mesh()
  done = read_summary(workdir)
  if done is not None:
    return None, done
  task = maze_data.MazeTask.from_config(config)
  model_cfg = decoder_config(config, task)
  optimizer = _make_optimizer(config.rl)
  state, step, reason, writer, wall = _train_stage(
      name=f"rl {config.rl.estimator} N={config.rl.num_rollouts}", config=config,
      workdir=workdir, train_chunk=make_rl_chunk(config, task, model_cfg, mesh),
      optimizer=optimizer, init_params=init_params,
      total_steps=config.rl.steps, chunk_steps=config.rl.chunk_steps,
      eval_every=config.rl.eval_every, checkpoint_every=config.rl.checkpoint_every, mesh=mesh,
      task=task, model_cfg=model_cfg, stop_step=stop_step, initial_eval=initial_eval)
  summary = {"stage": "rl", "estimator": config.rl.estimator,
             "num_rollouts": int(config.rl.num_rollouts), "batch_size": int(config.rl.batch_size),
             "step": step, "stopped": reason, "complete": False, "train_wall_s": wall}
  _finish_stage(summary, state, config.rl.steps, writer, workdir=workdir, config=config,
                task=task, model_cfg=model_cfg, mesh=mesh)
  return state.params, summary


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The experiment ``config.experiment`` in ``workdir`` (resumable); returns its summary."""
  from experiments.maze import sweep  # pylint: disable=g-import-not-at-top  # avoids a cycle
  return sweep.run_sweep(config, workdir)
