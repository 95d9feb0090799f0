r"""The maze driver's jitted programs: the policy, its optimisers, SFT and RL chunks.

SFT (paper section 6.2, appendix E.1): next-token cross-entropy of the BFS shortest path, a
token-mean over the response tokens of the batch,
``L_SFT = -sum_{b,t} m_bt log pi(y_bt | x_b, y_b,<t) / sum_{b,t} m_bt``.

RL (fully on-policy): each step draws ``B`` fresh mazes, samples ``N`` rollouts per maze, scores
them with the verifier, computes the estimator's advantages over each maze's ``N`` rollouts and
takes ONE optimiser step on the surrogate loss (``maxrl_jax.estimators.surrogate_loss``, token-
mean as in the authors' code, or per-sequence mean). For memory, a step is split:

* sampling runs in chunks of ``rl.sample_mazes`` mazes (``lax.map``); prompt ``b`` of the batch
  always draws with ``fold_in(key, b)``, so the rollouts do not depend on the chunking;
* the gradient is accumulated over micro-batches of ``rl.grad_mazes`` mazes (``lax.scan``), each
  micro-batch loss normalised by the WHOLE batch's token (or sequence) count, so the sum of the
  micro-batch gradients is exactly the gradient of the unchunked loss; then one update.

A chunk of steps is one ``jax.jit`` of a ``lax.scan``; the estimator is a traced index into
``methods`` (``lax.switch``), so the runs of a sweep that differ only in the estimator share one
compiled program.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.maze import data as maze_data
from maxrl_jax import estimators
from maxrl_jax import sampling
from maxrl_jax.models import transformer
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train.state import TrainState

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


def optimizer_spec(sec) -> tuple:
  """Hashable optimiser settings of ``config.sft`` or ``config.rl``."""
  return (float(sec.learning_rate), float(sec.weight_decay), int(sec.get("warmup_steps", 0)),
          float(sec.get("max_grad_norm", 0.0)), tuple(float(b) for b in sec.get("betas", (0.9,
                                                                                          0.999))))


def make_optimizer(spec: tuple) -> optax.GradientTransformation:
  """AdamW (betas, weight decay) after optional global-norm clipping, optional linear warmup."""
  lr, wd, warmup, clip, betas = spec
  schedule = optax.linear_schedule(0.0, lr, warmup) if warmup else lr
  parts = [optax.clip_by_global_norm(clip)] if clip else []
  parts.append(optax.adamw(schedule, b1=betas[0], b2=betas[1], weight_decay=wd))
  return optax.chain(*parts)


def init_state(params, optimizer, mesh) -> TrainState:
  """A private, replicated state (chunks donate their input state)."""
  params = jax.tree.map(jnp.copy, mesh_lib.replicate(mesh, params))
  return TrainState(params, mesh_lib.replicate(mesh, optimizer.init(params)))


def _sft_step_fn(task, model_cfg, optimizer):
  def step_fn(state: TrainState, grids):
    prompts = task.prompts(grids)
    targets = task.targets(grids)  # [B, Lr]: BFS path, DONE <eos>, padding
    mask = (targets != task.pad_id).astype(jnp.float32)

    def loss_fn(params):
      lp = sampling.response_logprobs(params, model_cfg, prompts, targets[:, None, :])[:, 0]
      return -(lp * mask).sum() / jnp.maximum(mask.sum(), 1.0), lp

    (loss, lp), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
               # Probability of the whole BFS answer under the policy (teacher-forced).
               "train/bfs_answer_prob": jnp.exp((lp * mask).sum(-1)).mean()}
    return TrainState(optax.apply_updates(state.params, updates), opt_state), metrics

  return step_fn


def _blocks(x, size: int):
  """``[B, ...] -> [B // size, size, ...]``."""
  return x.reshape((x.shape[0] // size, size) + x.shape[1:])


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
  out = jax.lax.map(one, (jnp.arange(b // c), _blocks(prompts, c)))
  return sampling.SampleOutput(*(x.reshape((b,) + x.shape[2:]) for x in out))


def rl_update(state: TrainState, prompts, out: sampling.SampleOutput, adv, *, model_cfg,
              optimizer, grad_mazes: int, aggregation: str, entropy_coef: float = 0.0,
              return_entropy: bool = False, loss_lengths: tuple[int, ...] = ()):
  """One optimiser update from sampled rollouts; gradients accumulated over maze micro-batches.

  The loss is ``estimators.surrogate_loss`` with ``aggregation`` over the whole batch (each
  micro-batch normalised by the whole batch's token or sequence count), minus
  ``entropy_coef`` times the same aggregation of the exact per-token entropies.

  ``loss_lengths``: shorter response lengths to compute the loss on when every rollout of the
  batch fits (``lax.switch`` on the longest one; the tokens cut off are padding with mask 0, so
  the update is unchanged). Sampling stops when every rollout has stopped, typically long before
  the response budget, and this keeps the backward pass from paying for the padding.

  Returns ``(state, loss, grads)``: the loss and gradients of the whole batch; with
  ``return_entropy`` also the mean per-token entropy of the policy on the sampled responses.
  """
  b, n = adv.shape
  g = min(grad_mazes, b)
  num_tokens = jnp.maximum(out.mask.sum(), 1.0)
  norm = ({"num_tokens": num_tokens} if aggregation == "token_mean"
          else {"num_sequences": b * n})

  def loss_fn(params, p, tokens, mask, a):
    lp, ent = sampling.response_logprobs(params, model_cfg, p, tokens, return_entropy=True)
    bonus = {"token_entropies": ent, "entropy_coef": entropy_coef} if entropy_coef else {}
    loss = estimators.surrogate_loss(lp, mask, a, aggregation=aggregation, **norm, **bonus)
    return loss, jax.lax.stop_gradient((ent * mask).sum())

  def body(acc, xs):
    (loss, ent), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, *xs)
    return jax.tree.map(jnp.add, acc, (loss, grads, ent)), None

  zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params),
           jnp.zeros((), jnp.float32))

  def accumulate(length):
    def run(_):
      xs = tuple(_blocks(x, g) for x in (prompts, out.tokens[..., :length],
                                         out.mask[..., :length], adv))
      return jax.lax.scan(body, zeros, xs)[0]
    return run

  full = out.tokens.shape[-1]
  lengths = sorted({int(x) for x in loss_lengths if 0 < x < full} | {full})
  if len(lengths) == 1:
    loss, grads, ent = accumulate(full)(None)
  else:
    longest = jnp.max(out.mask.sum(-1))
    index = jnp.sum(longest > jnp.asarray(lengths[:-1], jnp.float32)).astype(jnp.int32)
    loss, grads, ent = jax.lax.switch(index, [accumulate(x) for x in lengths], None)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  new = TrainState(optax.apply_updates(state.params, updates), opt_state)
  return (new, loss, grads, ent / num_tokens) if return_entropy else (new, loss, grads)


def adv_fn(method: str, options) -> Callable:
  """``(rewards, mean token log-prob) -> advantages``; only ``dsgrpo`` uses the log-probs."""
  fn = estimators.make_advantage_fn(method, **dict(options))
  if method in estimators.LOGPROB_METHODS:
    return lambda r, lp: fn(r, logprobs=lp)
  return lambda r, lp: fn(r)


def _rl_step_fn(task, model_cfg, optimizer, n, methods, temperature, base_key, method_index,
                sample_mazes, grad_mazes, aggregation, entropy_coef, loss_lengths):
  adv_fns = [adv_fn(m, o) for m, o in methods]

  def step_fn(state: TrainState, xs):
    step, grids = xs
    key = jax.random.fold_in(base_key, step)
    prompts = task.prompts(grids)
    out = sample_batch(state.params, model_cfg, task, prompts, key, n=n, temperature=temperature,
                       sample_mazes=sample_mazes)
    rewards = task.rewards(grids, out.tokens)  # [B, N] in {0, 1}
    # Mean token log-prob of each rollout under the sampling policy (Differential Smoothing).
    mean_lp = (out.logprobs * out.mask).sum(-1) / jnp.maximum(out.mask.sum(-1), 1.0)
    adv = (adv_fns[0](rewards, mean_lp) if len(adv_fns) == 1
           else jax.lax.switch(method_index, adv_fns, rewards, mean_lp))
    state, loss, grads, entropy = rl_update(
        state, prompts, out, jax.lax.stop_gradient(adv), model_cfg=model_cfg,
        optimizer=optimizer, grad_mazes=grad_mazes, aggregation=aggregation,
        entropy_coef=entropy_coef, return_entropy=True, loss_lengths=loss_lengths)
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
    return state, metrics

  return step_fn


@functools.lru_cache(maxsize=None)
def sft_program(task, model_cfg, opt_spec, mesh, compile_opts):
  """Jitted SFT chunk ``(state, grids[n, B, S, S]) -> (state, metrics[n])``."""
  step_fn = _sft_step_fn(task, model_cfg, make_optimizer(opt_spec))

  @functools.partial(jax.jit, donate_argnums=0, out_shardings=mesh_lib.replicated(mesh),
                     compiler_options=dict(compile_opts) or None)
  def chunk(state, grids):
    return jax.lax.scan(step_fn, state, grids)

  return chunk


@functools.lru_cache(maxsize=None)
def rl_program(task, model_cfg, opt_spec, n, methods, temperature, mesh, compile_opts,
               sample_mazes, grad_mazes, aggregation, entropy_coef=0.0, loss_lengths=()):
  """Jitted RL chunk ``(state, steps[n], grids[n, B, S, S], method_index, base_key) -> (state,
  metrics)``; the key is an input, so runs with other seeds reuse the compiled program."""
  optimizer = make_optimizer(opt_spec)

  @functools.partial(jax.jit, donate_argnums=0, out_shardings=mesh_lib.replicated(mesh),
                     compiler_options=dict(compile_opts) or None)
  def chunk(state, steps, grids, method_index, base_key):
    step_fn = _rl_step_fn(task, model_cfg, optimizer, n, methods, temperature, base_key,
                          method_index, sample_mazes, grad_mazes, aggregation, entropy_coef,
                          loss_lengths)
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


def grid_sharding(mesh):
  return mesh_lib.batch_sharding(mesh, batch_axis=1)  # [steps, batch, S, S]


def make_sft_chunk(config, task, model_cfg, mesh) -> Callable:
  """``train_chunk(state, start_step, num_steps)`` of stage 1."""
  program = sft_program(task, model_cfg, optimizer_spec(config.sft), mesh,
                        compile_options(config))
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
  program = rl_program(task, model_cfg, optimizer_spec(rl), int(rl.num_rollouts), ms,
                       float(rl.temperature), mesh, compile_options(config),
                       int(rl.sample_mazes or rl.batch_size), int(rl.grad_mazes or rl.batch_size),
                       str(rl.loss_aggregation), entropy_coef(config),
                       tuple(int(x) for x in rl.get("loss_lengths", ())))
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
