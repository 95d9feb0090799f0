r"""The training grid of the toy Bernoulli policy: every estimator at every N, and the exact truth.

For each policy (``tabular``, ``logistic``; see :mod:`experiments.bernoulli.policies`) three
families of runs train from the same initial pass rates on the objective ``E_x[.]`` over the
``M`` prompts:

* ``sampled``: estimator ``e`` at group size ``N`` with seed ``s``. Each step draws per-rollout
  rewards ``r ~ Bernoulli(p)``, shape ``[M, N]``, computes ``A = advantages(r, e)``
  (:func:`maxrl_jax.estimators.advantages`, the kernel the real drivers use) and descends the
  surrogate ``-mean_{x,i} sg(A_i) log pi(r_i|x)``, whose gradient is the estimator ``g``.
* ``exact_estimator``: the same ``(e, N)`` with its exact expected gradient
  ``E[g] = w_N(p) grad p`` (the finite-N weight, :mod:`experiments.bernoulli.exact`).
* ``exact_truncated``: exact gradient of ``J^(T)``, ``w_T(p) grad p``; ``T = 1`` is RL and
  ``T = inf`` is exact maximum likelihood.

Compilation. ``N`` fixes array shapes, so the grid is grouped by ``N``: for each ``N`` one
``vmap`` over (estimator, seed) of the sampled update, and one ``vmap`` over estimators of the
exact update; one more ``vmap`` over ``T``. All groups of a policy are advanced together by one
jitted function that runs ``chunk_steps`` steps under ``lax.scan``; there is no rollout padding,
so ``K`` and ``N`` are exactly those of the group. The sampled runs of one ``(N, seed)`` share
their uniform draws across estimators (common random numbers), and seed ``s`` at step ``t``
uses ``fold_in(fold_in(fold_in(key, N), s), t)``, so a resumed run is bit-identical.

Metrics (per run, after every step): mean log p (the ML objective), mean p, pass@k, the fraction
of prompts with ``p > 0.5`` and the mean log p of the hardest decile (the prompts with the lowest
initial pass rate).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.bernoulli import exact
from experiments.bernoulli import policies
from experiments.bernoulli.metrics import hardest_mask, metric_names, policy_metrics
from experiments.bernoulli.runs import estimator_options
from maxrl_jax import estimators
from maxrl_jax.train import optim


# ----------------------------------------------------------------------------- programs


def make_optimizer(config, policy_name: str) -> optax.GradientTransformation:
  """The optax optimiser of a policy (section ``config.<policy>``, the library's factory
  :func:`maxrl_jax.train.optim.make_optimizer`). Tabular learning rates are per prompt (times
  M)."""
  scale = config.num_prompts if policy_name == "tabular" else 1
  tx, _ = optim.make_optimizer(config[policy_name], field=f"config.{policy_name}",
                               learning_rate_scale=scale)
  return tx


def compiler_options(config) -> dict[str, Any] | None:
  """XLA options for the grid's jitted functions (see ``config.fast_cpu_compile``)."""
  if config.fast_cpu_compile and jax.default_backend() == "cpu":
    return {"xla_backend_optimization_level": 0}
  return None


# ----------------------------------------------------------------------------- the grid


@dataclasses.dataclass(frozen=True, eq=False)
class PolicyGrid:
  """All runs of one policy and the jitted function advancing them ``chunk_steps`` steps."""

  config: ml_collections.ConfigDict
  policy: Any
  optimizer: optax.GradientTransformation
  key: jax.Array

  @property
  def ns(self) -> tuple[int, ...]:
    return tuple(self.config.sampled.num_rollouts)

  @property
  def sampled_estimators(self) -> tuple[str, ...]:
    return tuple(self.config.sampled.estimators)

  @property
  def exact_estimators(self) -> tuple[str, ...]:
    return tuple(self.config.exact.estimators)

  @property
  def truncations(self) -> tuple[float, ...]:
    return tuple(float(t) for t in self.config.exact.truncations)

  # -- state

  def _stacked(self, shape: tuple[int, ...]):
    params = self.policy.init()
    opt = self.optimizer.init(params)
    tile = lambda x: jnp.broadcast_to(x, shape + jnp.shape(x))
    return {"params": jax.tree.map(tile, params), "opt": jax.tree.map(tile, opt)}

  def init_state(self) -> dict:
    """Initial parameters and optimiser states of every run (all start equal)."""
    e, s = len(self.sampled_estimators), self.config.sampled.num_seeds
    return {
        "sampled": {f"n{n}": self._stacked((e, s)) for n in self.ns if e},
        "exact_estimator": {f"n{n}": self._stacked((len(self.exact_estimators),))
                            for n in self.ns if self.exact_estimators},
        "exact_truncated": self._stacked((len(self.truncations),)),
    }

  def tables(self) -> dict[str, dict[str, jax.Array]]:
    """Exact coefficient tables per N, stacked over the exact estimators."""
    out = {}
    for n in self.ns if self.exact_estimators else ():
      tabs = [exact.estimator_table(m, n, options=estimator_options(self.config, m, n))
              for m in self.exact_estimators]
      out[f"n{n}"] = exact.stack_tables(tabs).device()
    return out

  def empty_curves(self) -> dict[str, np.ndarray]:
    """Host arrays ``[num_steps + 1, runs..., metrics]`` (NaN until filled); row 0 = init."""
    t, nm = self.config.num_steps + 1, len(metric_names(self.config))
    e, s = len(self.sampled_estimators), self.config.sampled.num_seeds
    curves = {}
    for n in self.ns:
      if e:
        curves[f"sampled/n{n}"] = np.full((t, e, s, nm), np.nan, np.float32)
      if self.exact_estimators:
        curves[f"exact_estimator/n{n}"] = np.full((t, len(self.exact_estimators), nm), np.nan,
                                                  np.float32)
    curves["exact_truncated"] = np.full((t, len(self.truncations), nm), np.nan, np.float32)
    return curves

  # -- one step

  def _update(self, params, opt, loss_fn, *args):
    loss, grads = jax.value_and_grad(loss_fn)(params, *args)
    updates, opt = self.optimizer.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  def sampled_loss(self, params, rewards: jax.Array, advantages: jax.Array) -> jax.Array:
    """Surrogate whose gradient is minus the sampled estimator, mean over prompts."""
    logp = policies.rollout_log_probs(self.policy.logits(params), rewards)
    return estimators.surrogate_loss_from_logprobs(logp, advantages)

  def exact_loss(self, params, coefficient: jax.Array) -> jax.Array:
    """``-mean_x sg(c(x)) l(x)``: its gradient is minus the exact gradient ``E_x[c grad l]``."""
    return -jnp.mean(jax.lax.stop_gradient(coefficient) * self.policy.logits(params))

  def sample_rewards(self, keys: jax.Array, logits: jax.Array, n: int) -> jax.Array:
    """Rewards ``1[u < p]``, ``[E, S, M, n]``, for logits ``[E, S, M]`` and keys ``[S]``.

    Common random numbers: seed ``s`` draws one ``u ~ U[0, 1)^(M x n)`` shared by all
    estimators (float32 uniforms resolve pass rates down to ~1e-7).
    """
    chex.assert_rank(logits, 3)
    chex.assert_shape(keys, (logits.shape[1],))
    u = jax.vmap(lambda k: jax.random.uniform(k, (logits.shape[-1], n)))(keys)  # [S, M, n]
    return (u[None] < jax.nn.sigmoid(logits)[..., None]).astype(jnp.float32)

  def sampled_advantages(self, rewards: jax.Array) -> jax.Array:
    """``[E, ..., M, N]`` advantages: estimator ``e`` applied to ``rewards[e]``."""
    return jnp.stack([
        estimators.advantages(rewards[i], m,
                              **estimator_options(self.config, m, rewards.shape[-1]))
        for i, m in enumerate(self.sampled_estimators)])

  def step(self, state: dict, step: jax.Array, tables: dict, keys: dict, hard: jax.Array):
    """One update of every run; returns the new state and the metrics after it."""
    ks = tuple(self.config.metrics.pass_at_k)
    metrics_of = lambda params: policy_metrics(self.policy.logits(params), hard, ks)
    new = {"sampled": {}, "exact_estimator": {}}
    metrics = {}
    for n in self.ns:
      name = f"n{n}"
      if name in state["sampled"]:
        group = state["sampled"][name]
        logits = jax.vmap(jax.vmap(self.policy.logits))(group["params"])  # [E, S, M]
        step_keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(keys[name])  # [S]
        rewards = self.sample_rewards(step_keys, logits, n)
        adv = self.sampled_advantages(rewards)
        update = lambda p, o, r, a: self._update(p, o, self.sampled_loss, r, a)
        params, opt, _ = jax.vmap(jax.vmap(update))(group["params"], group["opt"], rewards, adv)
        new["sampled"][name] = {"params": params, "opt": opt}
        metrics[f"sampled/{name}"] = jax.vmap(jax.vmap(metrics_of))(params)

      if name not in state["exact_estimator"]:
        continue
      group = state["exact_estimator"][name]

      def exact_update(p, o, table):
        c = exact.expected_logit_coefficient(self.policy.logits(p), table)
        return self._update(p, o, self.exact_loss, c)

      params, opt, _ = jax.vmap(exact_update)(group["params"], group["opt"], tables[name])
      new["exact_estimator"][name] = {"params": params, "opt": opt}
      metrics[f"exact_estimator/{name}"] = jax.vmap(metrics_of)(params)

    group = state["exact_truncated"]

    def truncated_update(p, o, t):
      c = exact.truncated_logit_coefficient(self.policy.logits(p), t)
      return self._update(p, o, self.exact_loss, c)

    ts = jnp.asarray(self.truncations, jnp.float32)
    params, opt, _ = jax.vmap(truncated_update)(group["params"], group["opt"], ts)
    new["exact_truncated"] = {"params": params, "opt": opt}
    metrics["exact_truncated"] = jax.vmap(metrics_of)(params)
    return new, metrics

  def run_keys(self) -> dict[str, jax.Array]:
    """Per-N ``[S]`` keys: ``fold_in(fold_in(key, N), seed)``."""
    seeds = jnp.arange(self.config.sampled.num_seeds)
    return {f"n{n}": jax.vmap(lambda s, n=n: jax.random.fold_in(
        jax.random.fold_in(self.key, n), s))(seeds) for n in self.ns}

  def make_chunk_fn(self):
    """``chunk(state, start_step) -> (state, metrics [chunk_steps, ...])``, jitted."""
    tables = self.tables()
    keys = self.run_keys()
    hard = jnp.asarray(hardest_mask(self.config))
    num_steps = self.config.chunk_steps

    @functools.partial(jax.jit, compiler_options=compiler_options(self.config))
    def chunk(state, start_step):
      def body(state, t):
        return self.step(state, t, tables, keys, hard)

      steps = start_step + jnp.arange(num_steps)
      return jax.lax.scan(body, state, steps)

    return chunk

  def initial_metrics(self) -> np.ndarray:
    ks = tuple(self.config.metrics.pass_at_k)
    hard = jnp.asarray(hardest_mask(self.config))
    return np.asarray(policy_metrics(self.policy.logits(self.policy.init()), hard, ks))


def make_grids(config) -> dict[str, PolicyGrid]:
  """One :class:`PolicyGrid` per policy in ``config.policies``."""
  base = jax.random.key(config.seed)
  return {name: PolicyGrid(config=config, policy=policies.make_policy(name, config),
                           optimizer=make_optimizer(config, name),
                           key=jax.random.fold_in(base, i))
          for i, name in enumerate(config.policies)}
