r"""Exact weight functions, gradient moments and truncated objectives (paper sections 2-3).

Everything is float64 NumPy.

For a binary-reward prompt with pass rate ``p``, every estimator ``g = sum_i a(r_i, K, N) S_i``
of :mod:`maxrl_jax.estimators` has expectation ``E[g] = w_N(p) grad p`` for *any* policy (the
score ``S`` enters only through ``E[S | r] = grad log P(r)``; ``dsgrpo``, whose advantages also
depend on log-probabilities, is the exception, see :func:`expected_weight`), with

.. math::  w_N(p) = \frac{1}{p(1-p)} \sum_{K=0}^N \mathrm{Bin}(K; N, p)
           \big[K a(1,K,N)(1-p) - (N-K) a(0,K,N) p\big].

With ``K Bin(K; N, p) = N p Bin(K-1; N-1, p)`` and ``(N-K) Bin(K; N, p) = N (1-p) Bin(K; N-1, p)``
the ``1/(p(1-p))`` cancels exactly, and with ``A = N a``:

.. math::  w_N(p) = \sum_{j=0}^{N-1} \mathrm{Bin}(j; N-1, p)\,\big[A(1, j+1, N) - A(0, j, N)\big],

the expectation over the rewards of the *other* ``N - 1`` rollouts of the advantage gap between
a success and a failure. This form has no division, is valid on the closed interval
``0 <= p <= 1`` (the endpoint values are the limits ``p -> 0, 1``) and is what
:func:`expected_weight` evaluates, with ``A`` taken from
:func:`maxrl_jax.estimators.coefficient_table` (the estimators' own kernel, run in float64) and
the binomial pmf from log-gamma, renormalised to sum to one (relative error ~1e-15 for ``N`` in
the thousands).

Population weights (paper Table 2): RL ``1``, GRPO ``1/sqrt(p(1-p))``, MaxRL(T)
``w_T(p) = (1 - (1-p)^T)/p``, ML ``1/p``; PKPO (pass@k) ``k (1-p)^(k-1)``.

:func:`gradient_moments` and :func:`gradient_variance` give the exact first two moments of each
estimator for the Bernoulli-logit policy (score ``r - p``), by the same enumeration over ``K``.
"""

from __future__ import annotations

# The truncation is called `T` as in the paper.
# pylint: disable=invalid-name

import math
from typing import Any

import numpy as np
from maxrl_jax import estimators

__all__ = [
    "POPULATION_WEIGHTS",
    "binomial_pmf",
    "expected_weight",
    "gradient_moments",
    "gradient_variance",
    "population_weight",
    "truncated_objective",
    "truncated_weight",
]

POPULATION_WEIGHTS: tuple[str, ...] = ("rl", "grpo", "maxrl", "ml", "pkpo", "dsgrpo")

# Rows of p evaluated at once in expected_weight (bounds the [rows, N] pmf block to ~32 MB).
_BLOCK_ELEMENTS = 1 << 22


def _as_probability(p: Any, name: str = "p") -> np.ndarray:
  p = np.asarray(p, dtype=np.float64)
  if not np.all((p >= 0.0) & (p <= 1.0)):
    raise ValueError(f"{name}: probabilities must lie in [0, 1]")
  return p


def _check_truncation(t: Any, name: str = "T") -> float:
  if isinstance(t, bool) or t is None:
    raise ValueError(f"{name}: need an int >= 1 or math.inf, got {t!r}")
  if t == math.inf:
    return math.inf
  if not isinstance(t, (int, np.integer)) or t < 1:
    raise ValueError(f"{name}: need an int >= 1 or math.inf, got {t!r}")
  return float(t)


_LGAMMA = np.vectorize(math.lgamma, otypes=[np.float64])


def binomial_pmf(k: Any, n: int, p: Any) -> np.ndarray:
  """``Binom(k; n, p)`` in float64 via log-gamma; exact 0/1 conventions at ``p in {0, 1}``."""
  k = np.asarray(k, dtype=np.float64)
  p = np.asarray(p, dtype=np.float64)
  log_coeff = _LGAMMA(n + 1.0) - _LGAMMA(k + 1.0) - _LGAMMA(n - k + 1.0)
  with np.errstate(divide="ignore", invalid="ignore"):
    # x log y and x log1p(-y) with the convention 0 * log 0 = 0.
    log_p = np.where(k == 0, 0.0, k * np.log(p))
    log_q = np.where(n - k == 0, 0.0, (n - k) * np.log1p(-p))
  return np.exp(log_coeff + log_p + log_q)


def _tables(method: str, n: int, options: dict[str, Any]):
  """The kernel's float64 table ``A(r, K)`` and, for methods that use log-probabilities, its
  slopes in the failure's and the success's log-probability (the kernels are affine in them)."""
  if method not in estimators.LOGPROB_METHODS:
    return estimators.coefficient_table(method, n, **options), None, None
  base = estimators.coefficient_table(method, n, logprobs=[0.0, 0.0], **options)
  slope_fail = estimators.coefficient_table(method, n, logprobs=[1.0, 0.0], **options) - base
  slope_success = estimators.coefficient_table(method, n, logprobs=[0.0, 1.0], **options) - base
  return base, slope_fail[:, 0], slope_success[:, 1]


def _times_log(coeff: np.ndarray, log_value: np.ndarray) -> np.ndarray:
  """``coeff * log_value`` with ``0 * (-inf) = 0``."""
  with np.errstate(invalid="ignore"):
    return np.where(coeff == 0.0, 0.0, coeff * log_value)


def expected_weight(method: str, n: int, p: Any, **options: Any) -> np.ndarray:
  """Exact finite-N weight ``w_N(p)`` with ``E[g] = w_N(p) grad p`` for an estimator.

  For the methods of :data:`maxrl_jax.estimators.LOGPROB_METHODS` (``dsgrpo``) the advantage
  also depends on each rollout's log-probability; they are evaluated for the two-outcome
  (Bernoulli-logit) policy, ``log pi = log p`` for a success and ``log(1-p)`` for a failure, for
  which the weight is exact (GRPO's plus ``-c_+ log p - c_- log(1-p)``; it diverges at
  ``p = 0`` and ``p = 1``).

  Args:
    method: a name in :data:`maxrl_jax.estimators.METHODS`.
    n: group size ``N >= 1``.
    p: pass rates in ``[0, 1]``, any shape.
    **options: the method's options, as for :func:`maxrl_jax.estimators.advantages`.

  Returns:
    float64 array with ``p``'s shape.
  """
  table, slope_fail, slope_success = _tables(method, n, options)  # validated
  gap = table[1:, 1] - table[:-1, 0]  # A(1, j + 1) - A(0, j), j = 0..N-1
  p = _as_probability(p)
  flat = p.reshape(-1)
  out = np.empty_like(flat)
  j = np.arange(n, dtype=np.float64)
  rows = max(1, _BLOCK_ELEMENTS // n)
  for start in range(0, flat.size, rows):
    block = flat[start:start + rows]
    pmf = binomial_pmf(j[None, :], n - 1, block[:, None])
    # The pmf sums to 1 exactly; dividing by its float sum removes the (K-independent) rounding
    # error of the log-gamma normaliser, which is ~1e-12 relative at N = 4096.
    total = pmf.sum(axis=1)
    w = (pmf @ gap) / total
    if slope_fail is not None:
      with np.errstate(divide="ignore"):
        log_p, log_q = np.log(block), np.log1p(-block)
      w = (w + _times_log((pmf @ slope_success[1:]) / total, log_p)
           - _times_log((pmf @ slope_fail[:-1]) / total, log_q))
    out[start:start + rows] = w
  return out.reshape(p.shape)


def gradient_moments(method: str, n: int, p: Any,
                     **options: Any) -> tuple[np.ndarray, np.ndarray]:
  r"""Exact ``E[g]`` and ``E[g^2]`` of an estimator for the Bernoulli-logit policy.

  The policy ``pi(r = 1) = p = sigmoid(theta)`` has the score ``S = r - p`` (so
  ``grad p = p(1-p)``), and a group's estimator is a function of ``K`` alone:

  .. math::  g(K) = rac{1}{N}ig[K A(1, K)(1-p) - (N-K) A(0, K)\, pig],
             \qquad E[g^m] = \sum_{K=0}^N \mathrm{Bin}(K; N, p)\, g(K)^m.

  ``E[g] = w_N(p) p (1-p)`` (:func:`expected_weight`); the variance is
  :func:`gradient_variance`. ``dsgrpo`` uses ``log pi = log p`` / ``log(1-p)`` and needs
  ``0 < p < 1``.

  Returns:
    ``(mean, second_moment)``, float64 arrays with ``p``'s shape.
  """
  table = estimators.coefficient_table(
      method, n, **options) if method not in estimators.LOGPROB_METHODS else None
  if table is None:
    estimators.coefficient_table(method, n, logprobs=[0.0, 0.0], **options)  # validates
  p = _as_probability(p)
  if table is None and not np.all((p > 0.0) & (p < 1.0)):
    raise ValueError(f"p: {method} has log-probability terms; need 0 < p < 1")
  flat = p.reshape(-1)
  mean = np.empty_like(flat)
  second = np.empty_like(flat)
  k = np.arange(n + 1, dtype=np.float64)
  rows = max(1, _BLOCK_ELEMENTS // (n + 1))
  for start in range(0, flat.size, rows):
    block = flat[start:start + rows, None]
    if table is None:
      logp = np.stack([np.log1p(-block), np.log(block)], axis=-1)  # [rows, 1, 2]
      tab = estimators.coefficient_table(method, n, logprobs=logp[:, 0, :], **options)
    else:
      tab = table[None]
    g = (k * tab[..., 1] * (1.0 - block) - (n - k) * tab[..., 0] * block) / n  # [rows, N+1]
    pmf = binomial_pmf(k[None, :], n, block)
    total = pmf.sum(axis=1)
    mean[start:start + rows] = np.sum(pmf * g, axis=1) / total
    second[start:start + rows] = np.sum(pmf * g * g, axis=1) / total
  return mean.reshape(p.shape), second.reshape(p.shape)


def gradient_variance(method: str, n: int, p: Any, **options: Any) -> np.ndarray:
  """Exact ``Var[g] = E[g^2] - E[g]^2`` for the Bernoulli-logit policy (:func:`gradient_moments`)."""
  mean, second = gradient_moments(method, n, p, **options)
  return np.maximum(second - mean * mean, 0.0)


def truncated_weight(p: Any, T: Any) -> np.ndarray:
  """``w_T(p) = (1 - (1-p)^T)/p = sum_{k<T} (1-p)^k``; ``T = inf`` gives ``1/p``.

  Computed as ``-expm1(T log1p(-p))/p`` (no cancellation for small ``p``); ``w_T(0) = T``.
  ``T`` is an int >= 1 or ``math.inf``.
  """
  t = _check_truncation(T)
  p = _as_probability(p)
  with np.errstate(divide="ignore", invalid="ignore"):
    if t == math.inf:
      return 1.0 / p
    w = -np.expm1(t * np.log1p(-p)) / p
  return np.where(p == 0.0, t, w)


def population_weight(name: str, p: Any, T: Any = None, *, k: int | None = None,
                      correct_coef: float = 0.05, incorrect_coef: float = 0.05) -> np.ndarray:
  """Population (N -> infinity) weight of an objective.

  Args:
    name: ``'rl'`` (1), ``'grpo'`` (``1/sqrt(p(1-p))``), ``'maxrl'`` (``w_T(p)``, needs ``T``),
      ``'ml'`` (``1/p``), ``'pkpo'`` (``k (1-p)^(k-1)``, the weight of ``grad pass@k``, needs
      ``k``), ``'dsgrpo'`` (``1/sqrt(p(1-p)) - correct_coef log p - incorrect_coef log(1-p)``:
      Differential Smoothing on GRPO for a two-outcome policy, whose success and failure sets
      have zero entropy; see :func:`maxrl_jax.estimators.advantages`).
    p: pass rates in ``[0, 1]``.
    T: the truncation (int >= 1 or ``math.inf``), only for ``'maxrl'``.
    k: the ``k`` of pass@k (int >= 1), only for ``'pkpo'``.
    correct_coef: ``dsgrpo``'s coefficient on successes.
    incorrect_coef: ``dsgrpo``'s coefficient on failures.

  Returns:
    float64 array with ``p``'s shape (``inf`` where the weight diverges).
  """
  if name not in POPULATION_WEIGHTS:
    raise ValueError(f"name: unknown objective {name!r}; expected one of {POPULATION_WEIGHTS}")
  if (T is not None) != (name == "maxrl"):
    raise ValueError("T: give a truncation T for 'maxrl' and only for 'maxrl'")
  if (k is not None) != (name == "pkpo"):
    raise ValueError("k: give k for 'pkpo' and only for 'pkpo'")
  p = _as_probability(p)
  with np.errstate(divide="ignore"):
    if name == "rl":
      return np.ones_like(p)
    if name == "grpo":
      return 1.0 / np.sqrt(p * (1.0 - p))
    if name == "ml":
      return 1.0 / p
    if name == "pkpo":
      if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: need an int >= 1, got {k!r}")
      return k * (1.0 - p) ** (k - 1)
    if name == "dsgrpo":
      return (1.0 / np.sqrt(p * (1.0 - p)) - _times_log(np.float64(correct_coef), np.log(p))
              - _times_log(np.float64(incorrect_coef), np.log1p(-p)))
  return truncated_weight(p, T)


def truncated_objective(p: Any, T: Any) -> np.ndarray:
  r"""``J^(T)(p) = -sum_{k=1}^T (1-p)^k / k``; ``T = inf`` gives ``log p``.

  ``J^(1) = p - 1`` (RL up to a constant); ``dJ^(T)/dp = w_T(p)``. The series is summed in
  float64 in blocks of ``k`` and stops once the remaining terms are below double precision
  (``(1-p)^k / (k p)``), so the cost is ``O(min(T, 40/p))`` per value.
  """
  t = _check_truncation(T)
  p = _as_probability(p)
  if t == math.inf:
    with np.errstate(divide="ignore"):
      return np.log(p)
  flat = p.reshape(-1)
  x = 1.0 - flat
  with np.errstate(divide="ignore"):
    log_x = np.log(x)  # -inf at p = 1: every term is 0
  total = np.zeros_like(flat)
  block = 4096
  k0 = 1
  t_int = int(t)
  while k0 <= t_int:
    k = np.arange(k0, min(k0 + block, t_int + 1), dtype=np.float64)
    terms = np.exp(log_x[:, None] * k[None, :]) / k[None, :]
    total += terms.sum(axis=1)
    k0 = int(k[-1]) + 1
    # Tail bound sum_{k >= k0} x^k/k <= x^k0 / (k0 p).
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
      tail = np.exp(log_x * k0) / (k0 * flat)
    if np.all((flat > 0) & (tail <= 1e-18 * np.maximum(total, 1e-300))):
      break
  return -total.reshape(p.shape)
