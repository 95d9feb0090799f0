r"""The maze driver's jitted programs: the policy, its optimisers, SFT and RL chunks.

SFT (paper section 6.2, appendix E.1): next-token cross-entropy of the BFS shortest path, a
token-mean over the response tokens of the batch,
``L_SFT = -sum_{b,t} m_bt log pi(y_bt | x_b, y_b,<t) / sum_{b,t} m_bt``.

RL (fully on-policy): each step takes ``B`` mazes (fresh, or epochs over ``maze.num_train``),
samples ``N`` rollouts per maze, scores them with the verifier, computes the estimator's
advantages over each maze's ``N`` rollouts and takes ONE optimiser step on the surrogate loss
(:func:`experiments.maze.update.rl_update`: verl's per-micro-batch token-mean as in the
authors' code, a global token-mean or a per-sequence mean; the log-probs of
``logits / rl.temperature``). For memory, a step is split:

* sampling runs in chunks of ``rl.sample_mazes`` mazes (``lax.map``); prompt ``b`` of the batch
  always draws with ``fold_in(key, b)``, so the rollouts do not depend on the chunking;
* the gradient is accumulated over chunks of ``rl.grad_mazes`` mazes (``lax.scan``), each
  chunk's loss normalised by the WHOLE batch's count, so the sum of the chunk gradients is
  exactly the gradient of the unchunked loss; then one update.

A chunk of steps is one ``jax.jit`` of a ``lax.scan``; the estimator is a traced index into
``methods`` (``lax.switch``), so the runs of a sweep that differ only in the estimator share one
compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.maze import data as maze_data
from experiments.maze import loss_scale as loss_scale_lib
from experiments.maze import optimizers
from experiments.maze import update as update_lib
from maxrl_jax import estimators
from maxrl_jax import sampling
from maxrl_jax.models import transformer
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train.state import TrainState

rl_update = update_lib.rl_update  # the RL update (experiments.maze.update), under its old name

# Key streams folded into the run seed: SFT, RL, evaluation and initialisation never share keys.
INIT_STREAM, SFT_STREAM, RL_STREAM, EVAL_STREAM = 0, 1, 2, 3


def decoder_config(config, task: maze_data.MazeTask) -> transformer.DecoderConfig:
  """The policy's ``DecoderConfig`` from ``config.model`` (vocabulary from the environment)."""
  m = config.model
  return transformer.DecoderConfig(
      vocab_size=task.vocab_size, num_layers=m.num_layers, hidden_dim=m.hidden_dim,
      mlp_dim=m.mlp_dim, num_heads=m.num_heads, num_kv_heads=m.num_kv_heads,
      rope_theta=m.rope_theta, rms_eps=m.rms_eps,
      max_len=m.max_len or task.prompt_length + task.max_response_length, dtype=m.dtype,
      param_dtype=m.param_dtype, remat=bool(m.get("remat", False)))


def freeze(options) -> tuple:
  """A hashable copy of a (nested) options mapping."""
  if hasattr(options, "to_dict"):
    options = options.to_dict()
  return tuple(sorted((k, freeze(v) if isinstance(v, dict) else v)
                      for k, v in dict(options).items()))


def compile_options(config) -> tuple:
  return freeze(config.get("compile_options", {}) or {})


# The optimisers (experiments.maze.optimizers), under their earlier names.
optimizer_spec = optimizers.optimizer_spec
make_optimizer = optimizers.make_optimizer
loss_scale_spec = optimizers.loss_scale_spec


def init_state(params, optimizer, mesh) -> TrainState:
  """A private, replicated state (chunks donate their input state)."""
  params = jax.tree.map(jnp.copy, mesh_lib.replicate(mesh, params))
  return TrainState(params, mesh_lib.replicate(mesh, optimizer.init(params)))


def _sft_step_fn(task, model_cfg, optimizer, loss_scaling=False):
  def step_fn(state: TrainState, grids):
    prompts = task.prompts(grids)
    targets = task.targets(grids)  # [B, Lr]: BFS path, DONE <eos>, padding
    mask = (targets != task.pad_id).astype(jnp.float32)
    scale = loss_scale_lib.scale_of(state.opt_state) if loss_scaling else None

    def loss_fn(params):
      lp = sampling.response_logprobs(params, model_cfg, prompts, targets[:, None, :])[:, 0]
      loss = -(lp * mask).sum() / jnp.maximum(mask.sum(), 1.0)
      return (loss if scale is None else loss * scale), lp

    (loss, lp), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if scale is not None:
      loss, grads = loss / scale, jax.tree.map(lambda x: x / scale, grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
               # Probability of the whole BFS answer under the policy (teacher-forced).
               "train/bfs_answer_prob": jnp.exp((lp * mask).sum(-1)).mean()}
    metrics = loss_scale_lib.scaled_metrics(metrics, opt_state, grads, loss_scaling)
    return TrainState(optax.apply_updates(state.params, updates), opt_state), metrics

  return step_fn


def sample_batch(params, model_cfg, task, prompts, key, *, n, temperature, sample_mazes):
  """Rollouts of every maze, sampled ``sample_mazes`` mazes at a time (``SampleOutput``)."""
  b = prompts.shape[0]
  c = min(sample_mazes, b)

  def one(args):
    i, p = args
    return sampling.sample(params, model_cfg, p, key, num_samples=n,
                           max_new_tokens=task.max_response_length, temperature=temperature,
                           stop_tokens=task.stop_tokens, pad_id=task.pad_id, first_prompt=i * c)

  if c == b:
    return one((0, prompts))
  out = jax.lax.map(one, (jnp.arange(b // c), update_lib.blocks(prompts, c)))
  return sampling.SampleOutput(*(x.reshape((b,) + x.shape[2:]) for x in out))


def adv_fn(method: str, options) -> Callable:
  """``(rewards, mean token log-prob) -> advantages``; only ``dsgrpo`` uses the log-probs."""
  fn = estimators.make_advantage_fn(method, **dict(options))
  if method in estimators.LOGPROB_METHODS:
    return lambda r, lp: fn(r, logprobs=lp)
  return lambda r, lp: fn(r)


@dataclasses.dataclass(frozen=True)
class RLProgramSpec:
  """The static settings of one compiled RL program (hashable: a key of :func:`rl_program`).

  ``methods``: ``((estimator, options), ...)`` the program switches between (:func:`methods`);
  ``sample_mazes`` / ``grad_mazes``: mazes per sampling call / per gradient-accumulation chunk;
  ``aggregation``, ``entropy_coef``, ``loss_lengths``, ``microbatch_size`` (sequences per micro-
  batch of ``"microbatch_token_mean"``): the loss (:func:`update.rl_update`); ``loss_scale``:
  ``(init_scale, period)`` of float16's dynamic loss scale or None (:func:`loss_scale_spec`).
  """
  num_rollouts: int
  methods: tuple
  temperature: float
  sample_mazes: int
  grad_mazes: int
  aggregation: str
  entropy_coef: float = 0.0
  loss_lengths: tuple[int, ...] = ()
  microbatch_size: int = 0
  loss_scale: tuple[float, int] | None = None


def rl_program_spec(config, batch: int | None = None, n: int | None = None) -> RLProgramSpec:
  """The :class:`RLProgramSpec` of a run's config (``batch``, ``n``: ``rl.batch_size`` and
  ``rl.num_rollouts`` unless given)."""
  rl = config.rl
  batch = int(rl.batch_size if batch is None else batch)
  n = int(rl.num_rollouts if n is None else n)
  return RLProgramSpec(
      num_rollouts=n, methods=methods(config), temperature=float(rl.temperature),
      sample_mazes=int(rl.sample_mazes or batch), grad_mazes=int(rl.grad_mazes or batch),
      aggregation=str(rl.loss_aggregation),
      entropy_coef=entropy_coef(config) if rl.estimator else 0.0,
      loss_lengths=tuple(int(x) for x in rl.get("loss_lengths", ())),
      microbatch_size=loss_microbatch_size(config, batch, n),
      loss_scale=loss_scale_spec(config))


def _rl_step_fn(task, model_cfg, optimizer, spec: RLProgramSpec, base_key, method_index):
  adv_fns = [adv_fn(m, o) for m, o in spec.methods]
  n, temperature = spec.num_rollouts, spec.temperature
  loss_scaling = spec.loss_scale is not None

  def step_fn(state: TrainState, xs):
    step, grids = xs
    key = jax.random.fold_in(base_key, step)
    prompts = task.prompts(grids)
    out = sample_batch(state.params, model_cfg, task, prompts, key, n=n, temperature=temperature,
                       sample_mazes=spec.sample_mazes)
    rewards = task.rewards(grids, out.tokens)  # [B, N] in {0, 1}
    # Mean token log-prob of each rollout under the sampling policy (Differential Smoothing).
    mean_lp = (out.logprobs * out.mask).sum(-1) / jnp.maximum(out.mask.sum(-1), 1.0)
    adv = (adv_fns[0](rewards, mean_lp) if len(adv_fns) == 1
           else jax.lax.switch(method_index, adv_fns, rewards, mean_lp))
    state, loss, grads, entropy = update_lib.rl_update(
        state, prompts, out, jax.lax.stop_gradient(adv), model_cfg=model_cfg,
        optimizer=optimizer, grad_mazes=spec.grad_mazes, aggregation=spec.aggregation,
        entropy_coef=spec.entropy_coef, return_entropy=True, loss_lengths=spec.loss_lengths,
        temperature=temperature, microbatch_size=spec.microbatch_size, loss_scaling=loss_scaling)
    k = rewards.sum(-1)
    tokens = jnp.maximum(out.mask.sum(), 1.0)
    metrics = {
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
        "train/reward": rewards.mean(),
        "train/frac_all_fail": (k == 0).mean(),
        "train/frac_any_success": (k > 0).mean(),  # paper Figure 12 (maze panel)
        "train/frac_all_pass": (k == n).mean(),
        "train/response_len": out.mask.sum(-1).mean(),
        # Mean -log pi of the sampled tokens: a one-sample estimate of the per-token entropy.
        "train/neg_logprob_per_token": -(out.logprobs * out.mask).sum() / tokens,
        "train/entropy_per_token": entropy,  # exact, on the sampled responses
        # A collapsed run: every rollout of every maze failed, so the gradient is exactly 0.
        "train/zero_gradient": (optax.tree.norm(grads) == 0).astype(jnp.float32),
    }
    return state, loss_scale_lib.scaled_metrics(metrics, state.opt_state, grads, loss_scaling)

  return step_fn


@functools.lru_cache(maxsize=None)
def sft_program(task, model_cfg, opt_spec, mesh, compile_opts, loss_scale=None):
  """Jitted SFT chunk ``(state, grids[n, B, S, S]) -> (state, metrics[n])`` (``loss_scale``:
  :func:`loss_scale_spec`)."""
  step_fn = _sft_step_fn(task, model_cfg, make_optimizer(opt_spec, loss_scale),
                         loss_scale is not None)

  @functools.partial(jax.jit, donate_argnums=0, out_shardings=mesh_lib.replicated(mesh),
                     compiler_options=dict(compile_opts) or None)
  def chunk(state, grids):
    return jax.lax.scan(step_fn, state, grids)

  return chunk


@functools.lru_cache(maxsize=None)
def rl_program(task, model_cfg, opt_spec, spec: RLProgramSpec, mesh, compile_opts):
  """Jitted RL chunk ``(state, steps[n], grids[n, B, S, S], method_index, base_key) -> (state,
  metrics)``; the key is an input, so runs with other seeds reuse the compiled program."""
  optimizer = make_optimizer(opt_spec, spec.loss_scale)

  @functools.partial(jax.jit, donate_argnums=0, out_shardings=mesh_lib.replicated(mesh),
                     compiler_options=dict(compile_opts) or None)
  def chunk(state, steps, grids, method_index, base_key):
    step_fn = _rl_step_fn(task, model_cfg, optimizer, spec, base_key, method_index)
    return jax.lax.scan(step_fn, state, (steps, grids))

  return chunk


def methods(config) -> tuple:
  """``((name, options), ...)`` one compiled RL program switches between (options per name from
  ``config.rl.estimator_options``, ``{estimator: {option: value}}``)."""
  names = [base_estimator(config.rl.estimator)] if config.rl.estimator else []
  if config.experiment != "single":
    names = list(dict.fromkeys([base_estimator(e) for e in config.sweep.estimators] + names))
  opts = config.rl.estimator_options
  return tuple((m, freeze(opts[m]) if m in opts else ()) for m in names)


ENTROPY_SUFFIX = "+entropy"


def base_estimator(name: str) -> str:
  """``"grpo+entropy"`` -> ``"grpo"``: a run name's estimator (the suffix adds the bonus)."""
  return name.removesuffix(ENTROPY_SUFFIX)


def entropy_coef(config) -> float:
  """The run's entropy-bonus coefficient: ``rl.entropy_coef`` for ``<estimator>+entropy``."""
  return float(config.rl.entropy_coef) if config.rl.estimator.endswith(ENTROPY_SUFFIX) else 0.0


def loss_microbatch_size(config, batch: int | None = None, n: int | None = None) -> int:
  """Sequences per micro-batch of ``rl.loss_aggregation="microbatch_token_mean"`` (0 for the
  other aggregations): ``min(rl.loss_microbatch_size, B N / rl.loss_data_parallel)``, verl's
  per-GPU micro-batch capped at the per-GPU share of the batch (``B``, ``N``: the run's
  ``rl.batch_size`` and ``rl.num_rollouts`` unless given)."""
  rl = config.rl
  if rl.loss_aggregation != "microbatch_token_mean":
    return 0
  batch = int(rl.batch_size if batch is None else batch)
  per_rank = batch * int(rl.num_rollouts if n is None else n) // int(rl.loss_data_parallel)
  return min(int(rl.loss_microbatch_size), per_rank)


def grid_sharding(mesh):
  return mesh_lib.batch_sharding(mesh, batch_axis=1)  # [steps, batch, S, S]


def make_sft_chunk(config, task, model_cfg, mesh) -> Callable:
  """``train_chunk(state, start_step, num_steps)`` of stage 1."""
  program = sft_program(task, model_cfg, optimizer_spec(config.sft, "config.sft"), mesh,
                        compile_options(config), loss_scale_spec(config))
  batch, sft_seed = int(config.sft.batch_size), int(config.sft.get("seed", 0))

  def train_chunk(state, start_step, num_steps):
    grids = task.chunk_grids("sft", start_step, num_steps, batch, sft_seed=sft_seed)
    return program(state, mesh_lib.put_global(grids, grid_sharding(mesh)))

  return train_chunk


def make_rl_chunk(config, task, model_cfg, mesh) -> Callable:
  """``train_chunk(state, start_step, num_steps)`` of stage 2 (``config`` is one run's)."""
  rl = config.rl
  ms = methods(config)
  index = mesh_lib.put_global(np.int32([m for m, _ in ms].index(base_estimator(rl.estimator))),
                              mesh_lib.replicated(mesh))
  program = rl_program(task, model_cfg, optimizer_spec(rl), rl_program_spec(config), mesh,
                       compile_options(config))
  batch, m = int(rl.batch_size), int(rl.train_set_size)
  key = rl_key(config)

  def train_chunk(state, start_step, num_steps):
    grids = task.chunk_grids("rl", start_step, num_steps, batch, m)
    steps = np.arange(start_step, start_step + num_steps, dtype=np.int32)
    return program(state, mesh_lib.put_global(steps, mesh_lib.replicated(mesh)),
                   mesh_lib.put_global(grids, grid_sharding(mesh)), index, key)

  return train_chunk


def _seeded(config, stream: int, sub_seed) -> jax.Array:
  """``fold_in(key(config.seed), stream)``, then ``sub_seed`` folded in when it is not 0 (seed 0
  keeps the keys of a run without seeds)."""
  key = jax.random.fold_in(jax.random.key(config.seed), stream)
  return jax.random.fold_in(key, int(sub_seed)) if sub_seed else key


def rl_key(config) -> jax.Array:
  """The base key of the RL rollouts (``config.rl.seed``: the sweep's seed axis)."""
  return _seeded(config, RL_STREAM, config.rl.get("seed") or 0)


def init_params(config, model_cfg) -> Any:
  """Initial decoder parameters (``config.sft.seed``: a repeat of stage 1)."""
  return transformer.init_params(_seeded(config, INIT_STREAM, config.sft.get("seed", 0)),
                                 model_cfg)
