r"""Estimator analysis at the initial tabular policy: weights, per-prompt gradients, variance.

For the Bernoulli-logit policy a sampled estimator is ``g = c grad l`` with a scalar ``c`` per
prompt (:mod:`experiments.bernoulli.exact`), so

* the weight ``w(p) = E[c]/(p(1-p))`` is the paper's Figure 1 quantity (``E[g] = w(p) grad p``);
* ``|E[c]|`` per prompt against its pass rate is the shape of the paper's Figure 8 (the per-prompt
  gradient norm, here with respect to the prompt's logit);
* the variance of the tabular gradient of the mean objective, ``tr Cov[g] = sum_x Var[c_x]/M^2``,
  is computed exactly (enumerating ``K``) and by Monte Carlo with ``num_repeats`` independent
  draws of ``N`` rollouts per prompt (the sampled value uses :func:`estimators.advantages`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bernoulli import exact
from experiments.bernoulli.runs import estimator_options
from experiments.bernoulli.steps import compiler_options
from experiments.bernoulli import policies
from maxrl_jax import estimators


def sampled_logit_coefficient(rewards: jax.Array, p: jax.Array, method: str,
                              **options) -> jax.Array:
  """``c = (1/N) sum_i A_i (r_i - p)`` per prompt for rewards ``[..., M, N]``, ``p`` ``[M]``."""
  adv = estimators.advantages(rewards, method, **options)
  return jnp.mean(adv * (rewards - p[:, None]), axis=-1)


def analyze(config) -> dict[str, np.ndarray]:
  """Exact and Monte Carlo estimator statistics (float32/64 numpy arrays, see module doc)."""
  names = tuple(config.sampled.estimators)
  ns = tuple(config.sampled.num_rollouts)
  opts = lambda e, n: estimator_options(config, e, n)  # "N" option values resolved per n
  policy = policies.make_policy("tabular", config)
  logits0 = policy.logits(policy.init())
  m = logits0.shape[0]
  repeats = config.analysis.num_repeats
  wn = config.analysis.weight_num_rollouts
  grid_p = np.geomspace(1e-4, 1 - 1e-3, config.analysis.weight_grid_points)
  grid_logits = jnp.asarray(policies.logit(grid_p), jnp.float32)
  tables = {n: exact.stack_tables([exact.estimator_table(e, n, options=opts(e, n)) for e in names])
            .device() for n in sorted(set(ns) | {wn})}
  truncs = jnp.asarray([float(t) for t in config.exact.truncations], jnp.float32)
  key = jax.random.fold_in(jax.random.key(config.seed), 7919)

  @functools.partial(jax.jit, compiler_options=compiler_options(config))
  def compute(key):
    out = {}
    p0 = jax.nn.sigmoid(logits0)
    mean_c = lambda l, t: exact.expected_logit_coefficient(l, t)
    out["weight_exact"] = jax.vmap(lambda t: exact.weight_from_logit_coefficient(
        grid_logits, mean_c(grid_logits, t)))(tables[wn])
    out["weight_truncated"] = jax.vmap(lambda t: exact.weight_from_logit_coefficient(
        grid_logits, exact.truncated_logit_coefficient(grid_logits, t)))(truncs)
    out["prompt_coefficient_exact"] = jax.vmap(lambda t: mean_c(logits0, t))(tables[wn])
    var_exact, norm_exact, var_mc = [], [], []
    for n in sorted(set(ns) | {wn}):
      u = jax.random.uniform(jax.random.fold_in(key, n), (repeats, m, n))
      rewards = (u < p0[:, None]).astype(jnp.float32)
      coef = jnp.stack([sampled_logit_coefficient(rewards, p0, e, **opts(e, n)) for e in names])
      if n == wn:
        out["prompt_coefficient_sampled"] = jnp.mean(coef, axis=1)  # [E, M]
      if n in ns:
        var_mc.append(jnp.sum(jnp.var(coef, axis=1, ddof=1), axis=-1) / m**2)
        var_exact.append(jax.vmap(lambda t: jnp.sum(
            exact.logit_coefficient_variance(logits0, t)) / m**2)(tables[n]))
        norm_exact.append(jax.vmap(lambda t: jnp.sum(mean_c(logits0, t) ** 2) / m**2)(tables[n]))
    out["variance_sampled"] = jnp.stack(var_mc, axis=1)  # [E, len(ns)]
    out["variance_exact"] = jnp.stack(var_exact, axis=1)
    out["mean_norm_sq_exact"] = jnp.stack(norm_exact, axis=1)
    return out

  out = {k: np.asarray(v) for k, v in compute(key).items()}
  out["weight_p"] = grid_p
  out["prompt_p"] = np.asarray(jax.nn.sigmoid(logits0.astype(jnp.float32)), np.float64)
  out["num_rollouts"] = np.asarray(sorted(set(ns)))
  out["truncations"] = np.asarray([float(t) for t in config.exact.truncations])
  out["estimators"] = np.asarray(names)
  return out
