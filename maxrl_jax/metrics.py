r"""pass@k (unbiased and bootstrap "best@k"), the analytic value from a pass rate, and CIs.

* :func:`pass_at_k` (host NumPy, float64): Chen et al. (2021)'s unbiased estimator from ``c``
  successes among ``n`` samples, ``1 - C(n-c, k)/C(n, k)`` -- the estimator the paper names
  (appendix G).
* :func:`best_at_k` (host NumPy, float64): the bootstrap "best@k" that the authors' evaluation
  code actually reports for the maze curves (Figures 3, 17, 18), in closed form
  ``1 - (1 - c/n)^k``. It is biased low for large ``k``; report both.
* :func:`pass_at_k_from_p` / :func:`pass_at_k_from_logp` (NumPy or JAX, jit-able): the exact
  ``1 - (1-p)^k`` for a known pass rate (e.g. the softmax probability of the true label).
* :func:`bootstrap_ci` (host NumPy): percentile bootstrap confidence interval of a mean over
  items (e.g. the test mazes).

Only jax, numpy and the standard library are imported.
"""

from __future__ import annotations

from typing import Any, Tuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["best_at_k", "bootstrap_ci", "pass_at_k", "pass_at_k_from_logp", "pass_at_k_from_p"]


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


def best_at_k(n: Any, c: Any, k: Any) -> np.ndarray:
  r"""The authors' bootstrap "best@k" for binary rewards, in closed form, vectorised.

  What the authors' evaluation code computes (``bootstrap_metric`` / ``process_validation_metrics``
  in their ``verl/trainer/ppo/metric_utils.py``, reported as ``best@k/mean`` and plotted as
  pass@k in the paper's maze figures): for each problem, draw ``k`` of its ``n`` sampled rewards
  uniformly WITH replacement, take the maximum, repeat for 1,000 bootstrap draws and average;
  then average over problems. With ``c`` successes among ``n`` binary rewards a draw's maximum is
  1 unless all ``k`` picks are failures, so the bootstrap average converges to

  .. math::  \mathrm{best@k} = 1 - \Big(1 - \frac{c}{n}\Big)^{k}
             = -\mathrm{expm1}\big(k \,\mathrm{log1p}(-c/n)\big),

  i.e. the analytic pass@k (:func:`pass_at_k_from_p`) of the empirical pass rate ``c/n``. This
  function returns that expectation (no Monte Carlo noise; the authors' 1,000 draws add a
  per-problem standard error ``sqrt(b(1-b)/1000)``, and their seed is reset for every problem,
  so all problems with the same ``n`` reuse the same index draws).

  Difference from the unbiased :func:`pass_at_k` ``1 - C(n-c, k)/C(n, k)`` (sampling WITHOUT
  replacement): best@k is a biased estimate of pass@k. As ``t -> 1 - (1-t)^k`` is concave,
  Jensen's inequality gives ``E[best@k] <= 1 - (1-p)^k`` over ``c ~ Binomial(n, p)``; the gap
  grows with ``k/n``. At ``k = n`` the unbiased estimate is 1 as soon as ``c >= 1`` while
  best@k is ``1 - (1 - c/n)^n``: one success in 2,048 samples gives
  ``best@2048 = 1 - (2047/2048)^2048 = 0.632`` against ``pass@2048 = 1``. At ``k = 1`` both are
  ``c/n``. For ``k << n`` they agree to ``O(k/n)``.

  Args:
    n: samples per problem (int array-like, ``n >= 1``).
    c: successes among them (``0 <= c <= n``).
    k: draws per bootstrap subset (``k >= 1``; the authors use ``k <= n``, but drawing with
      replacement makes any ``k`` well defined).

  Returns:
    float64 array of the broadcast shape of ``n, c, k``; exactly 0 for ``c = 0`` and exactly 1 for
    ``c = n``.

  Raises:
    ValueError: non-integer counts or ``c``/``k`` out of range (the message starts with the
      argument's name).
  """
  n, c, k = (np.asarray(v) for v in (n, c, k))
  for name, v in (("n", n), ("c", c), ("k", k)):
    if not (np.issubdtype(v.dtype, np.integer) or np.all(np.mod(v, 1) == 0)):
      raise ValueError(f"{name}: must hold integers")
  n, c, k = np.broadcast_arrays(*(v.astype(np.float64) for v in (n, c, k)))
  if np.any(n < 1):
    raise ValueError("n: need n >= 1")
  if np.any(c < 0) or np.any(c > n):
    raise ValueError("c: need 0 <= c <= n")
  if np.any(k < 1):
    raise ValueError("k: need k >= 1")
  with np.errstate(divide="ignore"):
    out = -np.expm1(k * np.log1p(-c / n))
  return out + 0.0  # no -0.0 at c = 0


def bootstrap_ci(per_item_values: Any, *, num_resamples: int = 10_000, confidence: float = 0.95,
                 seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  r"""Percentile bootstrap confidence interval of the mean over items (e.g. the 256 test mazes).

  With ``x_1..x_m`` the per-item values (the last axis), each resample ``r`` draws ``m`` items
  uniformly with replacement; equivalently it draws multiplicities
  ``w^{(r)} ~ Multinomial(m; 1/m, ..., 1/m)``, and its mean is

  .. math::  \bar x^{(r)} = \bar x + \frac{1}{m}\sum_i w_i^{(r)} (x_i - \bar x).

  The interval is ``[q_{(1-a)/2}, q_{(1+a)/2}]`` of the ``R`` resampled means (``a`` the
  confidence, quantiles by linear interpolation): the percentile bootstrap (Efron & Tibshirani,
  1993, ch. 13). It quantifies the spread due to WHICH items were evaluated (and their per-item
  noise), e.g. the uncertainty of a pass@k averaged over test mazes.

  Vectorised: leading axes are independent series (e.g. one per k or per run); every series is
  resampled with the same multiplicities ``w^{(r)}`` (a paired bootstrap, so differences between
  series of the same items can also be bootstrapped by passing the difference). Deterministic
  given ``seed`` (NumPy's PCG64 ``default_rng``). A constant series gives ``low = mean = high``.

  Args:
    per_item_values: real array ``[..., m]`` with ``m >= 1``, finite.
    num_resamples: number of bootstrap resamples ``R >= 1``.
    confidence: in ``(0, 1)``.
    seed: seed of the resampling.

  Returns:
    ``(mean, low, high)``, float64 arrays of shape ``per_item_values.shape[:-1]`` (0-d for a 1-d
    input); ``mean`` is the plain mean over items.

  Raises:
    ValueError: empty item axis, non-finite values, or invalid ``num_resamples``/``confidence``.
  """
  x = np.asarray(per_item_values, dtype=np.float64)
  if x.ndim == 0 or x.shape[-1] < 1:
    raise ValueError("per_item_values: need an item axis (the last) of length >= 1")
  if not np.all(np.isfinite(x)):
    raise ValueError("per_item_values: must be finite")
  if int(num_resamples) != num_resamples or num_resamples < 1:
    raise ValueError("num_resamples: need an integer >= 1")
  if not 0.0 < confidence < 1.0:
    raise ValueError("confidence: need 0 < confidence < 1")
  m = x.shape[-1]
  mean = np.mean(x, axis=-1)
  dev = (x - mean[..., None]).reshape(-1, m)  # [S, m]
  rng = np.random.default_rng(seed)
  means = np.empty((dev.shape[0], int(num_resamples)))
  chunk = max(1, (1 << 22) // m)
  for start in range(0, int(num_resamples), chunk):
    r = min(chunk, int(num_resamples) - start)
    w = rng.multinomial(m, np.full(m, 1.0 / m), size=r).astype(np.float64)  # [r, m]
    means[:, start:start + r] = dev @ w.T / m
  a = (1.0 - confidence) / 2.0
  low, high = np.quantile(means, [a, 1.0 - a], axis=-1)
  shape = x.shape[:-1]
  return mean, mean + low.reshape(shape), mean + high.reshape(shape)


def two_level_bootstrap_ci(values_a: Any, values_b: Any = None, *, num_resamples: int = 2000,
                           confidence: float = 0.95, seed: int = 0
                           ) -> Tuple[float, float, float]:
  r"""Bootstrap interval of a mean over seeds and items, or of a paired difference of two.

  ``values_a`` is ``[S_a, m]``: one row per seed (independent training runs), one column per
  item (e.g. test maze); the statistic is the grand mean ``\bar a = \frac{1}{S_a m}\sum_{s,i}
  a_{s,i}``, or ``\bar a - \bar b`` when ``values_b`` ``[S_b, m]`` is given on the SAME items.
  Each resample draws (1) ``m`` items with replacement, the same items for both groups (a
  paired comparison: item difficulty cancels), and (2) within each group, its seeds with
  replacement; the interval is the percentile interval of the resampled statistic. It therefore
  covers the variation due to which items were evaluated and, with more than one seed, due to
  training randomness; with one seed per group only the first. (A two-stage, "cases" bootstrap
  of a crossed design; Davison & Hinkley, 1997, section 3.8, is its reference; with few seeds
  the seed level is coarse, which is why the seed spread is reported beside it.)

  Args:
    values_a: finite real array ``[S_a, m]`` (a 1-d array is one seed).
    values_b: optional finite real array ``[S_b, m]``, same ``m``.
    num_resamples: ``R >= 1``.
    confidence: in ``(0, 1)``.
    seed: seed of NumPy's ``default_rng``; the result is deterministic given it.

  Returns:
    ``(statistic, low, high)`` as floats.

  Raises:
    ValueError: on shape mismatch, empty axes, non-finite values, invalid options.
  """
  groups = [np.atleast_2d(np.asarray(v, np.float64)) for v in (values_a, values_b)
            if v is not None]
  for g in groups:
    if g.ndim != 2 or g.shape[0] < 1 or g.shape[1] < 1:
      raise ValueError("values: need a [seeds, items] array with both axes >= 1")
    if not np.all(np.isfinite(g)):
      raise ValueError("values: must be finite")
  if len(groups) == 2 and groups[0].shape[1] != groups[1].shape[1]:
    raise ValueError(f"values_a and values_b: need the same items, got {groups[0].shape[1]} "
                     f"and {groups[1].shape[1]}")
  if int(num_resamples) != num_resamples or num_resamples < 1:
    raise ValueError("num_resamples: need an integer >= 1")
  if not 0.0 < confidence < 1.0:
    raise ValueError("confidence: need 0 < confidence < 1")
  m = groups[0].shape[1]
  sign = [1.0, -1.0][:len(groups)]
  stat = sum(s * g.mean() for s, g in zip(sign, groups))
  rng = np.random.default_rng(seed)
  r = int(num_resamples)
  items = rng.integers(0, m, size=(r, m))  # shared by both groups: paired
  res = np.zeros((r,))
  for s, g in zip(sign, groups):
    seeds = rng.integers(0, g.shape[0], size=(r, g.shape[0]))
    # Seed multiplicities [r, S] and item multiplicities [r, m]: mean of g over the draw.
    ws = np.stack([np.bincount(row, minlength=g.shape[0]) for row in seeds]).astype(np.float64)
    wi = np.stack([np.bincount(row, minlength=m) for row in items]).astype(np.float64)
    res += s * np.einsum("rs,sm,rm->r", ws, g, wi) / (g.shape[0] * m)
  a = (1.0 - confidence) / 2.0
  low, high = np.quantile(res, [a, 1.0 - a])
  return float(stat), float(low), float(high)
