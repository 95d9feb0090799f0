"""Parity of the maze driver's RL update with the authors' verl update (paper section 6.2).

One update of the driver's own jitted RL program (``experiments.maze.steps.make_rl_chunk``: it
samples, scores, computes advantages and updates) on a tiny decoder equals an independent NumPy
re-implementation of the authors' verl actor update, written from their formulas
(tajwarfahim/maxrl ``verl/trainer/ppo/core_algos.py``: ``compute_grpo_outcome_advantage``,
``compute_maxrl_outcome_advantage``, ``compute_rloo_outcome_advantage``,
``compute_pkpo_outcome_advantage``, ``agg_loss("token-mean")``; ``verl/workers/actor/
dp_actor.py``: the policy loss with ratio 1 on fresh rollouts, its gradient ``-A grad log pi``,
the entropy bonus ``- entropy_coeff * token-mean(H)``, each micro-batch's loss divided by the
accumulation steps and the gradient averaged over ranks, ``clip_grad_norm_(1.0)``, torch AdamW),
not from ``maxrl_jax.estimators``. Only the per-token log-probs and entropies of the tiny model and
their gradient come from JAX (the reference's weights on them are NumPy). The rollouts are drawn
with the sampling temperature 0.8, so the loss's log-probs must be those of ``logits / T``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.maze import config as maze_config
from experiments.maze import data as maze_data
from experiments.maze import runs as runs_lib
from experiments.maze import steps
from experiments.maze import validation
from maxrl_jax import sampling

B, N, K_PASS, TEMPERATURE, LR = 4, 6, 3, 0.8, 0.1
ESTIMATORS = ("maxrl", "grpo", "rloo", "pkpo")


@dataclasses.dataclass(frozen=True)
class _ParityTask(maze_data.MazeTask):
  """The smoke task with a reward every rollout group splits on (a fresh policy never solves a
  maze): 1 when the first response token has an even id. The update, not the verifier, is tested."""

  def rewards(self, grids, responses):
    del grids
    return (responses[..., 0] % 2 == 0).astype(jnp.float32)


def _config(estimators, microbatch: int, grad_mazes: int):
  c = maze_config.get_config("smoke")
  c.sweep.estimators = tuple(estimators)
  c.sweep.num_rollouts = (N,)
  c.sweep.batch_size = B
  c.rl.temperature = TEMPERATURE
  c.rl.learning_rate = LR  # float32 rounding of p + dp (|p| up to 1) stays ~1e-6 of dp
  c.rl.loss_aggregation = "microbatch_token_mean"
  c.rl.loss_data_parallel = 2
  c.rl.loss_microbatch_size = microbatch
  c.rl.grad_mazes = grad_mazes
  c.rl.estimator_options.pkpo = {"k": K_PASS, "variant": "authors"}
  c.rl.entropy_coef = 0.01
  validation.validate(c, _mesh())
  return c


def _mesh():
  return jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))


# ---- the authors' update in NumPy (float64) ----

def _authors_advantages(method: str, r: np.ndarray, eps: float = 1e-6) -> np.ndarray:
  """``[B, N]`` outcome advantages as in the authors' core_algos.py."""
  n = r.shape[1]
  mean = r.mean(1, keepdims=True)
  if method == "grpo":  # (r - mean) / (torch.std (Bessel) + eps)
    return (r - mean) / (r.std(1, ddof=1, keepdims=True) + eps)
  if method == "maxrl":  # (r - mean) / (mean + eps)
    return (r - mean) / (mean + eps)
  if method == "rloo":  # r N/(N-1) - mean N/(N-1)
    return r * n / (n - 1) - mean * n / (n - 1)
  if method == "pkpo":  # c = C(N - C, k - 1) / C(N - 1, k - 1); c r, leave-one-out re-centred
    c = np.array([math.comb(n - int(k), K_PASS - 1) / math.comb(n - 1, K_PASS - 1)
                  for k in r.sum(1)])[:, None]
    adv = c * r
    return (adv * n - adv.sum(1, keepdims=True)) / (n - 1)
  raise ValueError(method)


def _token_weights(adv, mask, microbatch: int, entropy_coef: float):
  """d loss / d log pi and d loss / d H per token: verl's per-micro-batch token-mean
  (``masked_mean``: sum / (count + 1e-8)), divided by the accumulation steps, averaged over
  ranks = the mean over all micro-batches of consecutive ``microbatch`` sequences."""
  seqs = adv.size
  m = mask.reshape(seqs, -1).astype(np.float64)
  a = adv.reshape(seqs, 1)
  num_mb = seqs // microbatch
  tokens = m.reshape(num_mb, microbatch, -1).sum((1, 2)) + 1e-8
  denom = np.repeat(tokens, microbatch)[:, None] * num_mb
  return (-a * m / denom).reshape(mask.shape), (-entropy_coef * m / denom).reshape(mask.shape)


def _torch_clip(grads: np.ndarray, max_norm: float = 1.0):
  norm = np.sqrt(np.sum(grads ** 2))
  coef = max_norm / (norm + 1e-6)  # torch.nn.utils.clip_grad_norm_
  return (grads * coef if coef < 1 else grads), norm


def _torch_adamw(p, g, m, v, t, lr, wd, b1, b2, eps=1e-8):
  """One ``torch.optim.AdamW`` step ``t`` (1-based) from the moments ``m``, ``v``."""
  p = p * (1 - lr * wd)
  m = b1 * m + (1 - b1) * g
  v = b2 * v + (1 - b2) * g * g
  denom = np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps
  return p - (lr / (1 - b1 ** t)) * m / denom


def _adam_state(opt_state):
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(
      x, optax.ScaleByAdamState)) if isinstance(x, optax.ScaleByAdamState)]
  assert len(found) == 1
  return found[0]


def _with_moments(opt_state, mu, nu, count):
  """``opt_state`` with the Adam moments replaced (so the update depends on |g|, not sign g)."""
  return jax.tree.map(
      lambda x: optax.ScaleByAdamState(count, mu, nu) if isinstance(
          x, optax.ScaleByAdamState) else x, opt_state,
      is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))


@functools.lru_cache(maxsize=None)
def _weighted_grad(model_cfg):
  """``sum w_lp log pi^(T) + sum w_h H^(T)`` and its gradient (JAX: the model's part only)."""
  def weighted(p, prompts, tokens, w_lp, w_h):
    lp, h = sampling.response_logprobs_naive(p, model_cfg, prompts, tokens,
                                             temperature=TEMPERATURE, return_entropy=True)
    return jnp.sum(w_lp * lp) + jnp.sum(w_h * h)
  return jax.jit(jax.value_and_grad(weighted))


@functools.lru_cache(maxsize=None)
def _sampler(task, model_cfg):
  return jax.jit(lambda p, prompts, key: steps.sample_batch(
      p, model_cfg, task, prompts, key, n=N, temperature=TEMPERATURE, sample_mazes=B))


def _run_case(config, run, params, mu, nu, count):
  """The driver's update and the reference's, as flat float64 parameter vectors."""
  rl_cfg = runs_lib.rl_config(config, run)
  task = _ParityTask.from_config(rl_cfg)
  model_cfg = steps.decoder_config(rl_cfg, task)
  mesh = _mesh()
  optimizer = steps.make_optimizer(steps.optimizer_spec(rl_cfg.rl))
  state = steps.init_state(params, optimizer, mesh)
  fresh = lambda tree: jax.tree.map(jnp.asarray, tree)  # the chunk donates its input state
  state = state.replace(opt_state=_with_moments(state.opt_state, fresh(mu), fresh(nu),
                                                jnp.asarray(count, jnp.int32)))
  chunk = steps.make_rl_chunk(rl_cfg, task, model_cfg, mesh)
  new_state, metrics = chunk(state, 0, 1)

  # The same rollouts (the driver's sampler, its key for step 0), then the authors' update.
  grids = jnp.asarray(task.chunk_grids("rl", 0, 1, B)[0])
  prompts = task.prompts(grids)
  out = _sampler(task, model_cfg)(params, prompts, jax.random.fold_in(steps.rl_key(rl_cfg), 0))
  rewards = np.asarray(task.rewards(grids, out.tokens), np.float64)
  assert 0 < rewards.mean() < 1
  method = steps.base_estimator(run.estimator)
  adv = _authors_advantages(method, rewards)
  coef = steps.entropy_coef(rl_cfg)
  w_lp, w_h = _token_weights(adv, np.asarray(out.mask), steps.loss_microbatch_size(rl_cfg),
                             coef)

  loss_ref, grads = _weighted_grad(model_cfg)(params, prompts, out.tokens,
                                              jnp.asarray(w_lp, jnp.float32),
                                              jnp.asarray(w_h, jnp.float32))
  flat = lambda tree: np.concatenate([np.asarray(x, np.float64).ravel()
                                      for x in jax.tree.leaves(tree)])
  g, norm = _torch_clip(flat(grads))
  rl = rl_cfg.rl
  t = count + 1
  p_ref = _torch_adamw(flat(params), g, flat(mu), flat(nu), t, LR, rl.weight_decay,
                       *rl.betas)
  # The driver's new first moment holds its (clipped) gradient: b1 mu + (1 - b1) g.
  b1 = rl.betas[0]
  mu_grad = (flat(_adam_state(new_state.opt_state).mu) - b1 * flat(mu)) / (1 - b1)
  assert _rel(mu_grad, g) <= 1e-5, (run.estimator, _rel(mu_grad, g))
  return flat(new_state.params), p_ref, flat(params), metrics, float(loss_ref), norm, adv


def _rel(a, b):
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def start():
  c = maze_config.get_config("smoke")
  task = _ParityTask.from_config(c)
  model_cfg = steps.decoder_config(c, task)
  params = steps.init_params(c, model_cfg)
  rng = np.random.default_rng(0)
  # Adam moments late in a run (|mu| ~ sqrt(nu) ~ 1e-2, step 20,000 as at the end of Table 3's
  # runs): the update depends on g, not only on its sign. Early on, optax's float32 bias
  # correction 1 - 0.999^t (0.999 rounded to float32, then raised to t) differs from torch's
  # float64 one by up to ~1e-5 relative, a float32 effect that vanishes once 0.999^t ~ 0.
  mu = jax.tree.map(lambda x: rng.normal(0, 1e-2, x.shape).astype(np.float32), params)
  nu = jax.tree.map(lambda x: rng.uniform(1e-5, 1e-4, x.shape).astype(np.float32), params)
  return params, mu, nu, 19_999


def _check(config, run, start, ratio):
  params, mu, nu, count = start
  p_new, p_ref, p0, metrics, loss_ref, norm, adv = _run_case(config, run, params, mu, nu, count)
  assert np.abs(adv).max() > 0
  assert _rel(p_new - p0, p_ref - p0) <= 1e-5, (run.estimator, _rel(p_new - p0, p_ref - p0))
  np.testing.assert_allclose(float(metrics["grad_norm"][0]), norm, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["loss"][0]), loss_ref, rtol=1e-5, atol=1e-7)
  ratio.append(norm)


def test_one_update_equals_the_authors_verl_update(start):
  """maxrl, grpo, rloo and the authors' pkpo in one compiled program (chunks of 2 mazes = 12
  sequences, each holding two of verl's micro-batches of 6)."""
  config = _config(ESTIMATORS, microbatch=6, grad_mazes=2)
  assert steps.loss_microbatch_size(runs_lib.rl_config(config, runs_lib.grid_runs(config)[0])) == 6
  norms = []
  for run in runs_lib.grid_runs(config):
    _check(config, run, start, norms)
  assert min(norms) > 0


def test_entropy_bonus_update_equals_the_authors(start):
  """GRPO + entropy bonus, accumulation chunks (1 maze = 6 sequences) inside verl's
  micro-batches of 12."""
  config = _config(("grpo+entropy",), microbatch=12, grad_mazes=1)
  (run,) = runs_lib.grid_runs(config)
  _check(config, run, start, [])
