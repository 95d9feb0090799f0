r"""Exact expected gradients of the Bernoulli policy, on device (JAX, float32).

For a prompt with pass rate ``p = sigmoid(l)`` and an estimator ``g = sum_i a(r_i, K, N) S_i``
with scores ``S_i = (r_i - p) grad l``, the estimator is ``g = c_K grad l`` where, given ``K``
successes among ``N`` rollouts,

.. math::  c_K = K a(1, K, N) (1 - p) - (N - K) a(0, K, N) p
               = u_K (1 - p) - v_K p,
           \quad u_K = \tfrac{K}{N} A(1, K, N),\; v_K = \tfrac{N-K}{N} A(0, K, N),

with ``A = N a`` the advantage (``maxrl_jax.estimators.coefficient_table``). So the exact mean
and variance of the sampled estimator follow from ``K ~ Binomial(N, p)``:

.. math::  E[g] = \Big(\sum_K \mathrm{Bin}(K; N, p)\, c_K\Big) \nabla l
                = w_N(p)\, p (1-p)\, \nabla l,
           \qquad \mathrm{Var}[c] = \sum_K \mathrm{Bin}(K; N, p)\, c_K^2 - E[c]^2,

``w_N(p)`` being the finite-N weight of the paper's group estimators (``maxrl_jax.theory.expected_weight``).
Closed forms for the objectives themselves: the truncated objective
``J^(T) = -sum_{k<=T} (1-p)^k/k`` has logit coefficient
``w_T(p) p (1 - p) = (1 - (1-p)^T)(1 - p)``, RL is ``T = 1`` (``p (1-p)``) and ML is
``T = inf`` (``1 - p``).

The binomial probabilities use ``log C(N, K)`` from float64 ``lgamma`` on the host and
``K log p + (N-K) log(1-p)`` with ``log_sigmoid`` on device; tables of different ``N`` are padded
to a common length with ``log C = -inf`` so runs of every ``N`` share one vmapped computation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from maxrl_jax import estimators


@dataclasses.dataclass(frozen=True)
class EstimatorTable:
  """Per-``K`` coefficients ``u_K, v_K`` and ``log C(N, K)``, padded to ``size`` entries."""

  u: np.ndarray  # [..., size] float64
  v: np.ndarray  # [..., size] float64
  log_binom: np.ndarray  # [..., size] float64, -inf for K > N
  n: np.ndarray  # [...] float64

  def device(self) -> dict[str, jax.Array]:
    """The table as float32 device arrays (a pytree, vmappable over leading axes)."""
    return {"u": jnp.asarray(self.u, jnp.float32), "v": jnp.asarray(self.v, jnp.float32),
            "log_binom": jnp.asarray(self.log_binom, jnp.float32),
            "n": jnp.asarray(self.n, jnp.float32)}


def log_binomial_coefficients(n: int, size: int) -> np.ndarray:
  """``log C(n, K)`` for ``K = 0..size-1`` (float64), ``-inf`` for ``K > n``."""
  out = np.full((size,), -np.inf)
  k = np.arange(n + 1)
  out[: n + 1] = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k]
  return out


def estimator_table(method: str, n: int, size: int | None = None,
                    options: Mapping[str, Any] | None = None) -> EstimatorTable:
  """``u_K = (K/N) A(1,K,N)``, ``v_K = ((N-K)/N) A(0,K,N)`` of ``method`` (float64).

  ``A`` comes from :func:`maxrl_jax.estimators.coefficient_table`, i.e. the same kernel as the
  sampled :func:`~maxrl_jax.estimators.advantages`. Entries that cannot occur (a success at
  ``K = 0``, a failure at ``K = N``) get weight 0.
  """
  size = n + 1 if size is None else size
  if size < n + 1:
    raise ValueError(f"size: need >= N + 1 = {n + 1}, got {size}")
  a = estimators.coefficient_table(method, n, **dict(options or {}))
  k = np.arange(n + 1, dtype=np.float64)
  u = np.zeros((size,))
  v = np.zeros((size,))
  u[: n + 1] = np.where(k > 0, (k / n) * a[:, 1], 0.0)
  v[: n + 1] = np.where(k < n, ((n - k) / n) * a[:, 0], 0.0)
  return EstimatorTable(u=u, v=v, log_binom=log_binomial_coefficients(n, size),
                        n=np.asarray(float(n)))


def stack_tables(tables: Sequence[EstimatorTable]) -> EstimatorTable:
  """Stacks same-size tables on a new leading axis."""
  return EstimatorTable(u=np.stack([t.u for t in tables]), v=np.stack([t.v for t in tables]),
                        log_binom=np.stack([t.log_binom for t in tables]),
                        n=np.stack([t.n for t in tables]))


def _binomial_and_coefficients(logits: jax.Array, table: Mapping[str, jax.Array]):
  """``Bin(K; N, p)`` and ``c_K(p)``, both ``[M, size]``, for logits ``[M]``."""
  size = table["u"].shape[-1]
  k = jnp.arange(size, dtype=jnp.float32)
  l = logits[:, None]
  log_p = jax.nn.log_sigmoid(l)
  log_q = jax.nn.log_sigmoid(-l)
  n = table["n"]
  # For K > N, log C = -inf and (N - K) log(1-p) is finite, so the probability is exactly 0.
  log_pmf = table["log_binom"] + k * log_p + (n - k) * log_q
  # Normalising by the float sum removes the K-independent rounding of the log-coefficients
  # (as maxrl_jax.theory does in float64); the largest log-probability is subtracted first.
  pmf = jnp.exp(log_pmf - jnp.max(log_pmf, axis=-1, keepdims=True))
  pmf = pmf / jnp.sum(pmf, axis=-1, keepdims=True)
  p = jax.nn.sigmoid(l)
  q = jax.nn.sigmoid(-l)
  c = table["u"] * q - table["v"] * p
  return pmf, c


def expected_logit_coefficient(logits: jax.Array, table: Mapping[str, jax.Array]) -> jax.Array:
  """``E[c] = w_N(p) p (1-p)`` per prompt, ``[M]``: the exact mean of the sampled estimator."""
  pmf, c = _binomial_and_coefficients(logits, table)
  return jnp.sum(pmf * c, axis=-1)


def logit_coefficient_variance(logits: jax.Array, table: Mapping[str, jax.Array]) -> jax.Array:
  """``Var[c]`` per prompt, ``[M]``: the exact variance of the sampled estimator (logit space)."""
  pmf, c = _binomial_and_coefficients(logits, table)
  mean = jnp.sum(pmf * c, axis=-1, keepdims=True)
  return jnp.sum(pmf * (c - mean) ** 2, axis=-1)


def truncated_logit_coefficient(logits: jax.Array, truncation) -> jax.Array:
  r"""``w_T(p) p (1-p) = (1 - (1-p)^T)(1-p)``; ``T = inf`` gives ML's ``1 - p``.

  ``(1-p)^T = exp(T log_sigmoid(-l))`` and ``1 - (1-p)^T = -expm1(.)`` stay accurate for
  ``p`` down to float32's smallest normal numbers; ``T = inf`` gives ``-expm1(-inf) = 1``.
  """
  log_q = jax.nn.log_sigmoid(-logits)
  t = jnp.asarray(truncation, jnp.float32)
  return -jnp.expm1(t * log_q) * jnp.exp(log_q)


def weight_from_logit_coefficient(logits: jax.Array, coefficient: jax.Array) -> jax.Array:
  """``w = c / (p (1-p))``: the gradient weight on ``grad p`` (the paper's group estimators)."""
  return coefficient * jnp.exp(-jax.nn.log_sigmoid(logits) - jax.nn.log_sigmoid(-logits))
