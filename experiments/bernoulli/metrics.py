"""Per-run metrics of the Bernoulli grid: mean log p, mean p, pass@k, the hardest decile."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def metric_names(config) -> tuple[str, ...]:
  """Names of the per-run metrics, in the order of the metric axis."""
  return (("mean_log_p", "mean_p") + tuple(f"pass@{k}" for k in config.metrics.pass_at_k)
          + ("frac_p_gt_half", "hardest_decile_log_p"))


def hardest_mask(config) -> np.ndarray:
  """Boolean ``[M]``: the ``hardest_fraction`` prompts with the lowest initial pass rate."""
  count = max(1, int(round(config.hardest_fraction * config.num_prompts)))
  mask = np.zeros((config.num_prompts,), bool)
  mask[:count] = True  # initial pass rates are ascending
  return mask


def policy_metrics(logits: jax.Array, hard: jax.Array, ks: tuple[int, ...]) -> jax.Array:
  """Metric vector (see :func:`metric_names`) of one policy from its ``[M]`` logits."""
  log_p = jax.nn.log_sigmoid(logits)
  log_q = jax.nn.log_sigmoid(-logits)
  vals = [jnp.mean(log_p), jnp.mean(jnp.exp(log_p))]
  vals += [jnp.mean(-jnp.expm1(k * log_q)) for k in ks]  # pass@k = 1 - (1-p)^k
  vals += [jnp.mean((logits > 0).astype(jnp.float32)),
           jnp.sum(jnp.where(hard, log_p, 0.0)) / jnp.sum(hard)]
  return jnp.stack(vals)
