r"""pass@k: the unbiased estimator from samples and the analytic value from a pass rate.

* :func:`pass_at_k` (host NumPy, float64): Chen et al. (2021)'s unbiased estimator from ``c``
  successes among ``n`` samples, ``1 - C(n-c, k)/C(n, k)``.
* :func:`pass_at_k_from_p` / :func:`pass_at_k_from_logp` (NumPy or JAX, jit-able): the exact
  ``1 - (1-p)^k`` for a known pass rate (e.g. the softmax probability of the true label).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["pass_at_k", "pass_at_k_from_logp", "pass_at_k_from_p"]


def pass_at_k(n: Any, c: Any, k: Any) -> np.ndarray:
  r"""Unbiased pass@k estimate ``1 - C(n-c, k)/C(n, k)`` (Chen et al., 2021), vectorised.

  The ratio is a product of ``m = min(c, k)`` factors in ``(0, 1]``,

  .. math::  \frac{\binom{n-c}{k}}{\binom{n}{k}} = \prod_{i=n-c+1}^{n}\Big(1 - \frac{k}{i}\Big)
             = \prod_{j=0}^{k-1}\Big(1 - \frac{c}{n-j}\Big),

  summed as ``log1p`` terms and returned as ``-expm1(sum)``: no binomial coefficient is formed,
  nothing overflows for any ``n``, and the result keeps full relative precision (about
  ``m * 1e-16``), also for tiny estimates such as ``c = 1, k = 1, n = 4096``. The estimate is
  exactly 0 for ``c = 0`` and exactly 1 when ``n - c < k``.

  Args:
    n: samples per problem (int array-like, ``n >= 1``).
    c: successes among them (``0 <= c <= n``).
    k: the k of pass@k (``1 <= k <= n``).

  Returns:
    float64 array of the broadcast shape of ``n, c, k``.

  Raises:
    ValueError: non-integer counts or ``c``/``k`` out of range.
  """
  n, c, k = (np.asarray(v) for v in (n, c, k))
  for name, v in (("n", n), ("c", c), ("k", k)):
    if not (np.issubdtype(v.dtype, np.integer) or np.all(np.mod(v, 1) == 0)):
      raise ValueError(f"{name}: must hold integers")
  n, c, k = np.broadcast_arrays(*(v.astype(np.float64) for v in (n, c, k)))
  if np.any(c < 0) or np.any(c > n):
    raise ValueError("c: need 0 <= c <= n")
  if np.any(k < 1) or np.any(k > n):
    raise ValueError("k: need 1 <= k <= n")
  shape = n.shape
  n, c, k = n.ravel(), c.ravel(), k.ravel()
  certain = n - c < k
  m = np.where(certain, 0, np.minimum(c, k))  # number of factors
  by_successes = c <= k  # factors 1 - k/i, i = n-c+1..n; else 1 - c/(n-j), j = 0..k-1
  log_ratio = np.zeros_like(n)
  width = int(m.max(initial=0))
  rows = max(1, (1 << 22) // max(width, 1))
  for start in range(0, n.size, rows):
    sl = slice(start, start + rows)
    t = np.arange(width, dtype=np.float64)[None, :]
    nn, cc, kk = n[sl, None], c[sl, None], k[sl, None]
    live = t < m[sl, None]
    ratio = np.where(by_successes[sl, None], kk / (nn - cc + 1 + t), cc / np.maximum(nn - t, 1))
    log_ratio[sl] = np.sum(np.where(live, np.log1p(-np.where(live, ratio, 0.0)), 0.0), axis=1)
  out = np.where(certain, 1.0, -np.expm1(log_ratio) + 0.0)  # + 0.0: no -0.0 at c = 0
  return out.reshape(shape)


def _module(x: Any):
  return jnp if isinstance(x, jax.Array) else np


def pass_at_k_from_p(p: Any, k: Any) -> Any:
  """Analytic ``pass@k = 1 - (1-p)^k = -expm1(k log1p(-p))`` (NumPy in, NumPy out; JAX in, JAX out).

  Accurate for tiny ``p`` (no ``1 - (1 - p)`` cancellation); ``pass@k(0) = 0``, ``pass@k(1) = 1``.
  """
  xp = _module(p)
  p = xp.asarray(p)
  with np.errstate(divide="ignore"):
    return -xp.expm1(k * xp.log1p(-p))


def pass_at_k_from_logp(log_p: Any, k: Any) -> Any:
  r"""Analytic pass@k from a log pass rate (e.g. ``log_softmax`` of the true label).

  ``log(1-p) = log(-expm1(log p))`` for ``log p > -log 2`` and ``log1p(-exp(log p))`` otherwise
  (the standard accurate ``log1mexp``), so pass@k keeps full relative precision both for tiny
  ``p`` and for ``p`` close to 1. ``log_p = 0`` gives 1.
  """
  xp = _module(log_p)
  log_p = xp.asarray(log_p)
  near_one = log_p > -np.log(2.0)
  with np.errstate(divide="ignore", invalid="ignore"):
    log_fail = xp.where(near_one,
                        xp.log(-xp.expm1(xp.where(near_one, log_p, -1.0))),
                        xp.log1p(-xp.exp(xp.where(near_one, -1.0, log_p))))
    return -xp.expm1(k * log_fail)
