r"""Classification as binary-reward RL: cross-entropy and the sampled group objectives.

The policy is the classifier's softmax ``pi(.|x)`` over ``C`` classes (paper section 6.1). A
rollout is one label ``y ~ pi(.|x)`` drawn with replacement; its reward is ``r = 1[y = y*]``,
so the pass rate is ``p(x) = pi(y*|x)``.

* Cross-entropy, ``-log pi(y*|x)``, is exact maximum likelihood: its gradient is
  ``-grad p / p``.
* A sampled objective with method ``m`` draws ``N`` labels per image, computes the advantages
  ``A_i = N a(r_i, K, N)`` of estimator ``m`` (:func:`maxrl_jax.estimators.advantages`) and
  minimises the surrogate

  .. math::  L = -\frac{1}{B N} \sum_b \sum_{i=1}^N \mathrm{sg}(A_{b,i}) \log \pi(y_{b,i}|x_b),

  whose gradient in expectation is ``-(1/B) sum_b w_m(p_b) grad p_b`` with the estimator's
  exact weight ``w_m`` (:func:`maxrl_jax.theory.expected_weight`): ``w_{N-1}(p)`` for
  ``maxrl``, ``(N-1)/N`` for ``mean_baseline`` (REINFORCE with mean baseline).

Label sampling is by inverse CDF: one uniform ``u`` per rollout, scaled by the total mass,
located in the cumulative sum of the probabilities with a binary search. That costs ``O(C)``
for the cumsum plus ``O(N log C)`` per image and ``B x N`` random numbers, never the
``B x N x C`` of Gumbel-max sampling (``jax.random.categorical``).
"""

from __future__ import annotations

from typing import Any, Mapping

import chex
import jax
import jax.numpy as jnp

from maxrl_jax import estimators

CROSS_ENTROPY = "cross_entropy"


def objective_names() -> tuple[str, ...]:
  """Every objective a run may name: cross-entropy and each estimator method."""
  return (CROSS_ENTROPY,) + tuple(estimators.METHODS)


def sample_labels(key: chex.PRNGKey, logits: chex.Array, num_samples: int,
                  search_method: str = "scan") -> jax.Array:
  """Draws ``num_samples`` labels per row from ``softmax(logits)``, with replacement.

  Inverse-CDF sampling: ``y = min{c : F(c) > u}`` with ``F`` the cumulative sum of the
  probabilities and ``u ~ U[0, F(C-1))`` (scaling by the computed total mass makes the sampler
  exact for the float probabilities, whose sum may differ from 1 by rounding). A class with
  zero probability is never drawn (``side="right"``).

  Args:
    key: PRNG key.
    logits: ``[B, C]`` logits (no gradient flows through the samples).
    num_samples: ``N``, rollouts per row (static).
    search_method: ``jnp.searchsorted`` method: ``"scan"`` (CPU-friendly), ``"sort"`` (good on
      GPU/TPU); ``"compare_all"`` would cost ``O(N C)`` and is rejected.

  Returns:
    ``[B, N]`` int32 labels in ``[0, C)``.
  """
  chex.assert_rank(logits, 2)
  if search_method not in ("scan", "scan_unrolled", "sort"):
    raise ValueError(f"search_method: must be 'scan', 'scan_unrolled' or 'sort', got "
                     f"{search_method!r}")
  logits = jax.lax.stop_gradient(logits).astype(jnp.float32)
  num_classes = logits.shape[-1]
  probs = jax.nn.softmax(logits, axis=-1)
  cdf = jnp.cumsum(probs, axis=-1)
  u = jax.random.uniform(key, (logits.shape[0], num_samples), jnp.float32) * cdf[:, -1:]
  search = lambda c, q: jnp.searchsorted(c, q, side="right", method=search_method)
  labels = jax.vmap(search)(cdf, u)
  return jnp.minimum(labels, num_classes - 1).astype(jnp.int32)


def cross_entropy_loss(logits: chex.Array, labels: chex.Array) -> tuple[jax.Array, dict]:
  """``mean_b -log pi(y*_b|x_b)`` and metrics (training pass rate ``mean_b pi(y*|x)``)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  logp_true = jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
  loss = -jnp.mean(logp_true)
  return loss, {"train/pass_rate": jnp.mean(jnp.exp(logp_true)),
                "train/top1": jnp.mean(jnp.argmax(logits, -1) == labels)}


def sampled_loss(logits: chex.Array, labels: chex.Array, key: chex.PRNGKey, *, method: str,
                 num_rollouts: int, options: Mapping[str, Any] | None = None,
                 search_method: str = "scan") -> tuple[jax.Array, dict]:
  """Surrogate loss of estimator ``method`` with ``num_rollouts`` sampled labels per image.

  Returns:
    ``(loss, metrics)``; metrics hold the training pass rate ``mean_b pi(y*|x)``, the fraction
    of successful rollouts ``mean K/N`` and the fraction of images with no success
    (``K = 0``, where the maxrl and grpo updates vanish).
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  samples = sample_labels(key, logits, num_rollouts, search_method)
  rewards = samples == labels[:, None]
  adv = estimators.advantages(rewards, method, **dict(options or {}))
  logp_samples = jnp.take_along_axis(logp, samples, axis=-1)
  loss = estimators.surrogate_loss_from_logprobs(logp_samples, adv)
  successes = jnp.sum(rewards, axis=-1)
  logp_true = jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
  return loss, {
      "train/pass_rate": jnp.mean(jnp.exp(logp_true)),
      "train/top1": jnp.mean(jnp.argmax(logits, -1) == labels),
      "train/success_fraction": jnp.mean(successes / num_rollouts),
      "train/no_success_fraction": jnp.mean(successes == 0),
  }


def objective_loss(logits: chex.Array, labels: chex.Array, key: chex.PRNGKey, *,
                   objective: str, num_rollouts: int = 1,
                   options: Mapping[str, Any] | None = None,
                   search_method: str = "scan", entropy_coef: float = 0.0
                   ) -> tuple[jax.Array, dict]:
  """Dispatches to :func:`cross_entropy_loss` or :func:`sampled_loss` by objective name.

  ``entropy_coef > 0`` adds an entropy bonus: the loss becomes
  ``L - entropy_coef * mean_b H(pi(.|x_b))`` with the exact entropy of each image's softmax
  (``maxrl_jax.estimators.token_entropy``), for any objective.
  """
  if objective == CROSS_ENTROPY:
    loss, aux = cross_entropy_loss(logits, labels)
  else:
    loss, aux = sampled_loss(logits, labels, key, method=objective, num_rollouts=num_rollouts,
                             options=options, search_method=search_method)
  entropy = jnp.mean(estimators.token_entropy(logits.astype(jnp.float32)))
  aux = dict(aux, **{"train/entropy": jax.lax.stop_gradient(entropy)})
  if entropy_coef:
    loss = loss - entropy_coef * entropy
  return loss, aux


def class_coefficients(logits: chex.Array, labels: chex.Array, key: chex.PRNGKey, *,
                       objective: str, num_rollouts: int,
                       options: Mapping[str, Any] | None = None) -> jax.Array:
  r"""Per-class loss coefficients ``c_{b,y}`` with ``L_b = -sum_y c_{b,y} log pi(y|x_b)``.

  The sampled surrogate of one image only depends on how often each label was drawn: with
  binary rewards every draw of the true label has advantage ``A(1, K)`` and every other draw
  ``A(0, K)``, so ``c_{b,y} = n_{b,y} A(r_y, K_b) / N`` with ``n_{b,y}`` the draw counts. This
  lets the gradient-norm analysis use ``N = 131072`` rollouts per image at the cost of one
  backward pass. Cross-entropy is ``c = onehot(y*)``.

  Returns:
    ``[B, C]`` float32 coefficients (no gradient).
  """
  num_classes = logits.shape[-1]
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  if objective == CROSS_ENTROPY:
    return onehot
  samples = sample_labels(key, logits, num_rollouts)
  counts = jax.vmap(lambda s: jnp.zeros((num_classes,), jnp.float32).at[s].add(1.0))(samples)
  k = jnp.sum(counts * onehot, axis=-1)
  table = jnp.asarray(estimators.coefficient_table(method=objective, n=num_rollouts,
                                                   **dict(options or {})), jnp.float32)
  k_int = k.astype(jnp.int32)
  a_fail, a_success = table[k_int, 0], table[k_int, 1]
  adv = jnp.where(onehot > 0, a_success[:, None], a_fail[:, None])
  return jax.lax.stop_gradient(counts * adv / num_rollouts)
