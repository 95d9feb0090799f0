r"""Group policy-gradient estimators for binary rewards and their surrogate losses.

Setting (SPEC sections 1-3). For one prompt ``x`` the policy draws ``N`` rollouts
``z_1..z_N``; rollout ``i`` gets the binary reward ``r_i`` and ``K = sum_i r_i``. Every
estimator here has the form

.. math::  g = \sum_i a_i \nabla_\theta \log \pi_\theta(z_i | x),
           \qquad a_i = a(r_i, K, N),

and training code writes it as the surrogate loss ``-(1/N) sum_i A_i log pi(z_i|x)`` with the
*advantage* ``A_i = N a_i`` held under ``stop_gradient``. :func:`advantages` returns ``A``.

Methods (``A_i`` for ``K > 0``; the ``K = 0`` value in brackets; ``m = K/N``):

==================  ======================================  =======================  =========
name                ``A_i``                                 ``E[g]`` equals          options
==================  ======================================  =======================  =========
``reinforce``       ``r_i``                                 ``grad p``
``mean_baseline``   ``r_i - m``  (Dr. GRPO)                 ``(N-1)/N grad p``
``rloo``            ``r_i - (K - r_i)/(N - 1)``             ``grad p``
``grpo``            ``(r_i - m)/(std + eps)``  [0]          ``w_N(p) grad p``        std, eps
``maxrl``           ``N r_i/K - 1``  [0]  (Algorithm 1)     ``grad J^(N-1)``         eps
``maxrl_keep_cv``   ``N r_i/K - 1``  [-1]  (eq. 10)         ``grad J^(N)``
``maxrl_no_cv``     ``N r_i/K``  [0]  (eq. 9)               ``grad J^(N)``
``maxrl_truncated`` see :func:`advantages`                  ``grad J^(T)``           truncation,
                                                                                     control_variate
==================  ======================================  =======================  =========

with ``J^(T) = -sum_{k=1}^T (1-p)^k/k`` and ``grad J^(T) = w_T(p) grad p``,
``w_T(p) = (1 - (1-p)^T)/p``. :mod:`maxrl_jax.theory` evaluates the exact expectation of each
method (by enumeration over ``K ~ Binomial(N, p)``) by calling the very kernel below in float64.

Conventions and edge cases (all documented choices, all finite):

* ``N = 1``: ``rloo`` has no other rollout, its baseline is the empty mean ``0`` so
  ``A = r`` (still unbiased for ``grad p``); ``grpo`` with ``std="sample"`` has an undefined
  sample std, taken as ``0``; its numerator ``r - m`` is ``0``, so ``A = 0``.
* A zero denominator (``K = 0`` for the maxrl family, ``std + eps = 0`` for ``grpo``) always
  goes with a zero numerator; the advantage is then defined as ``0`` (``-1`` for
  ``maxrl_keep_cv``). Divisions are "double-where" guarded, so ``jax.grad`` through
  :func:`advantages` is finite too.
* Dtypes: rewards may be bool, int or float. Low-precision floats (bfloat16, float16), ints and
  bools are computed in float32 and the result is float32; float64 inputs (with x64 enabled)
  stay float64.
* The rewards are meant to be binary. ``reinforce``, ``mean_baseline``, ``rloo``, ``grpo`` and
  ``maxrl`` use formulas that are also the usual ones for real rewards (``grpo``'s variance is
  ``mean(r^2) - mean(r)^2``, clipped at 0); ``maxrl_keep_cv``, ``maxrl_no_cv`` and
  ``maxrl_truncated`` assume binary rewards.
"""

from __future__ import annotations

from typing import Any, Mapping

import chex
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "METHODS",
    "advantages",
    "coefficient_table",
    "sequence_logprobs",
    "surrogate_loss",
    "surrogate_loss_from_logprobs",
]

METHODS: tuple[str, ...] = (
    "reinforce",
    "mean_baseline",
    "rloo",
    "grpo",
    "maxrl",
    "maxrl_keep_cv",
    "maxrl_no_cv",
    "maxrl_truncated",
)

# Allowed options per method, with their defaults.
_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "reinforce": {},
    "mean_baseline": {},
    "rloo": {},
    "grpo": {"std": "population", "eps": 1e-6},
    "maxrl": {"eps": None},
    "maxrl_keep_cv": {},
    "maxrl_no_cv": {},
    "maxrl_truncated": {"truncation": None, "control_variate": True},
}


def _validated_options(method: str, n: int, options: Mapping[str, Any]) -> dict[str, Any]:
  """Checks ``method`` and its options against the table above; returns the full options."""
  if method not in _DEFAULTS:
    raise ValueError(f"method: unknown estimator {method!r}; expected one of {METHODS}")
  allowed = _DEFAULTS[method]
  unknown = sorted(set(options) - set(allowed))
  if unknown:
    raise ValueError(
        f"{unknown[0]}: not an option of method {method!r}; its options are "
        f"{sorted(allowed) or 'none'}")
  opts = dict(allowed)
  opts.update(options)
  if method == "grpo":
    if opts["std"] not in ("population", "sample"):
      raise ValueError(f"std: must be 'population' or 'sample', got {opts['std']!r}")
  if "eps" in opts and opts["eps"] is not None:
    eps = opts["eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)):
      raise ValueError(f"eps: must be a Python float >= 0, got {eps!r}")
    if not (float(eps) >= 0.0 and np.isfinite(eps)):
      raise ValueError(f"eps: must be finite and >= 0, got {eps!r}")
    opts["eps"] = float(eps)
  if method == "grpo" and opts["eps"] is None:
    raise ValueError("eps: grpo needs a float eps >= 0 (default 1e-6)")
  if method == "maxrl_truncated":
    t = opts["truncation"]
    if t is None:
      raise ValueError("truncation: maxrl_truncated needs truncation=T with 1 <= T <= N")
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
      raise ValueError(f"truncation: must be a static Python int, got {t!r}")
    if not 1 <= int(t) <= n:
      raise ValueError(f"truncation: must satisfy 1 <= T <= N = {n}, got {t}")
    opts["truncation"] = int(t)
    if not isinstance(opts["control_variate"], (bool, np.bool_)):
      raise ValueError(f"control_variate: must be a bool, got {opts['control_variate']!r}")
    opts["control_variate"] = bool(opts["control_variate"])
  return opts


def _safe_div(num, den, xp):
  """``num/den`` where ``den != 0`` and ``0`` elsewhere, with finite gradients."""
  nonzero = den != 0
  return xp.where(nonzero, num / xp.where(nonzero, den, 1), 0)


def _no_success_probability(k, n: int, t: int, xp):
  r"""``q = C(N-K, T)/C(N, T)``: chance that a uniform size-T subset holds no success.

  Computed as ``exp(sum_{j=0}^{T-1} log1p(-K/(N-j)))``: each factor is in ``[0, 1]``, so the
  sum has no cancellation and no overflow for any ``N`` (float32 on device is accurate to a
  few ulps per term); ``q = 0`` exactly when ``K > N - T``.
  """
  j = xp.arange(t, dtype=k.dtype)
  empty = k > n - t  # some factor is zero
  ratio = xp.where(empty, 0, k) / (n - j)  # broadcasts [..., 1] against [T]
  log_q = xp.sum(xp.log1p(-ratio), axis=-1, keepdims=True)
  return xp.where(empty, 0, xp.exp(log_q))


def _kernel(r, k, q2, n: int, method: str, opts: Mapping[str, Any], xp):
  """Advantages from sufficient statistics.

  Args:
    r: per-rollout rewards, ``[..., M]`` (``M = N`` for a group; theory passes ``[0, 1]``).
    k: ``sum_i r_i`` over the group, ``[..., 1]``.
    q2: ``sum_i r_i^2`` over the group, ``[..., 1]`` (equals ``k`` for binary rewards).
    n: the group size ``N`` (static).
    method: a name in ``METHODS``.
    opts: validated options.
    xp: ``jax.numpy`` or ``numpy`` (theory evaluates this same kernel in float64).

  Returns:
    ``A`` broadcast to ``r``'s shape.
  """
  mean = k / n
  if method == "reinforce":
    return r + 0 * k
  if method == "mean_baseline":
    return r - mean
  if method == "rloo":
    if n == 1:
      return r + 0 * k  # empty leave-one-out mean = 0
    return r - (k - r) / (n - 1)
  if method == "grpo":
    var = xp.maximum(q2 / n - mean * mean, 0)
    if opts["std"] == "sample":
      var = var * (n / (n - 1)) if n > 1 else 0 * var
    std = xp.where(var > 0, xp.sqrt(xp.where(var > 0, var, 1)), 0)
    return _safe_div(r - mean, std + opts["eps"], xp)
  if method == "maxrl":
    if opts["eps"] is None:
      return _safe_div(r - mean, mean, xp)  # = N r_i / K - 1, and 0 when K = 0
    return _safe_div(r - mean, mean + opts["eps"], xp)
  if method == "maxrl_keep_cv":
    return xp.where(k > 0, _safe_div(n * r, k, xp) - 1, -1 + 0 * r)
  if method == "maxrl_no_cv":
    return _safe_div(n * r, k, xp)
  if method == "maxrl_truncated":
    t = opts["truncation"]
    q = _no_success_probability(k, n, t, xp)
    a = _safe_div(n * r * (1 - q), k, xp)
    return a - 1 if opts["control_variate"] else a
  raise ValueError(f"method: unknown estimator {method!r}")  # unreachable after validation


def _compute_dtype(dtype) -> jnp.dtype:
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.floating):
    return jnp.promote_types(dtype, jnp.float32)
  return jnp.dtype(jnp.float32)


def advantages(rewards: chex.Array, method: str, **options: Any) -> jax.Array:
  r"""Per-rollout advantages ``A_i = N a(r_i, K, N)`` of a group estimator.

  Args:
    rewards: ``[..., N]`` rewards in ``{0, 1}`` (bool/int/float), rollouts on the last axis,
      any number of leading (prompt) axes. ``N >= 1``.
    method: one of :data:`METHODS` (see the module docstring for the formulas).
    **options: per method:

      * ``grpo``: ``std="population"`` (divide by ``sqrt(m(1-m))``, the paper's ImageNet code)
        or ``"sample"`` (Bessel-corrected, as in common LLM libraries); ``eps=1e-6``.
      * ``maxrl``: ``eps=None`` gives the exact ``N r_i/K - 1`` (``0`` when ``K = 0``);
        a float gives the authors' ``(r_i - m)/(m + eps)``.
      * ``maxrl_truncated``: ``truncation=T``, a static int with ``1 <= T <= N`` (required);
        ``control_variate=True``.

  ``maxrl_truncated``. Let ``g_S`` be the ``T``-rollout estimator of ``grad J^(T)`` on a
  subset ``S`` of the rollouts (``maxrl_no_cv`` with ``N = T``: coefficient ``r_i/K_S``).
  Averaging it over all ``C(N, T)`` subsets gives, with ``C(K-1, j)/(j+1) = C(K, j+1)/K`` and
  Vandermonde's identity,

  .. math::  a_i = \frac{1}{\binom{N}{T}} \sum_{S \ni i} \frac{r_i}{K_S}
             = \frac{r_i}{\binom{N}{T}} \sum_{j=0}^{T-1}
               \frac{\binom{K-1}{j}\binom{N-K}{T-1-j}}{j+1}
             = \frac{r_i}{K}\Big(1 - \frac{\binom{N-K}{T}}{\binom{N}{T}}\Big),

  i.e. ``A_i = N r_i (1 - q)/K`` with ``q = C(N-K,T)/C(N,T)`` the chance that a random size-T
  subset has no success. It is unbiased for ``grad J^(T)`` since each ``g_S`` is. With
  ``control_variate=True`` (default) the constant ``-1`` is added to every ``A_i``: this is the
  subset average of ``maxrl_keep_cv`` (the ``T``-rollout estimator whose control variate
  ``-(1/T) sum_{i in S} S_i`` is kept at ``K_S = 0``), has zero mean, keeps the estimator
  unbiased, and makes ``T = N`` coincide with ``maxrl_keep_cv``; ``control_variate=False``
  makes ``T = N`` coincide with ``maxrl_no_cv``. ``T = 1`` gives ``A_i = r_i - 1`` (resp.
  ``r_i``), the REINFORCE estimator of ``grad p``. ``q`` is computed stably in the log domain
  (no binomial coefficients are formed), exact for every ``K`` in ``0..N``.

  Returns:
    ``A`` with the rewards' shape; float32 (float64 for float64 inputs).

  Raises:
    ValueError: unknown method or option, bad option value, scalar rewards or ``N = 0``.
  """
  shape = jnp.shape(rewards)
  if len(shape) == 0:
    raise ValueError("rewards: need shape [..., N] with rollouts on the last axis, got a scalar")
  n = int(shape[-1])
  if n < 1:
    raise ValueError(f"rewards: need N >= 1 rollouts on the last axis, got shape {shape}")
  opts = _validated_options(method, n, options)
  dtype = _compute_dtype(jnp.result_type(rewards))
  r = jnp.asarray(rewards).astype(dtype)
  k = jnp.sum(r, axis=-1, keepdims=True)
  q2 = jnp.sum(r * r, axis=-1, keepdims=True) if method == "grpo" else k
  out = _kernel(r, k, q2, n, method, opts, jnp)
  chex.assert_shape(out, shape)
  return out.astype(dtype)


def coefficient_table(method: str, n: int, **options: Any) -> np.ndarray:
  """Float64 advantages ``A(r, K, N)`` of a method for binary rewards, for every ``K``.

  Evaluates the same kernel as :func:`advantages`, in NumPy float64, on the sufficient
  statistics ``(r, K)`` instead of full reward vectors (``O(N)`` memory, not ``O(N^2)``).

  Args:
    method: one of :data:`METHODS`.
    n: group size ``N >= 1``.
    **options: as for :func:`advantages`.

  Returns:
    ``[N + 1, 2]`` float64 array; row ``K``, column ``r`` holds ``A(r, K, N)``. Entries that
    cannot occur (``r = 1`` at ``K = 0``, ``r = 0`` at ``K = N``) are still the kernel's value.
  """
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"n: need an int N >= 1, got {n!r}")
  n = int(n)
  opts = _validated_options(method, n, options)
  r = np.array([[0.0, 1.0]])
  k = np.arange(n + 1, dtype=np.float64)[:, None]
  with np.errstate(divide="ignore", invalid="ignore"):
    out = _kernel(r, k, k, n, method, opts, np)
  return np.broadcast_to(out, (n + 1, 2)).astype(np.float64)


def sequence_logprobs(token_logprobs: chex.Array, token_mask: chex.Array) -> jax.Array:
  """``sum_t mask_t log pi(y_t | ...)``: per-rollout log-probabilities, ``[..., L] -> [...]``."""
  chex.assert_equal_shape([token_logprobs, token_mask])
  logp = jnp.asarray(token_logprobs)
  dtype = _compute_dtype(logp.dtype)
  mask = jnp.asarray(token_mask).astype(dtype)
  return jnp.sum(logp.astype(dtype) * mask, axis=-1)


def surrogate_loss_from_logprobs(logprobs: chex.Array, advantages_: chex.Array) -> jax.Array:
  r"""``mean_{prompts, i} [-stop_gradient(A_i) log pi(z_i|x)]`` for ``[..., N]`` inputs.

  Its gradient is ``-(1/B) sum_prompts (1/N) sum_i A_i grad log pi(z_i|x) = -mean g``, so
  descending it ascends the estimator ``g`` of each method. Computed in float32 (or wider).
  """
  chex.assert_equal_shape([logprobs, advantages_])
  logp = jnp.asarray(logprobs)
  dtype = _compute_dtype(logp.dtype)
  adv = jax.lax.stop_gradient(jnp.asarray(advantages_).astype(dtype))
  return -jnp.mean(adv * logp.astype(dtype))


def surrogate_loss(token_logprobs: chex.Array, token_mask: chex.Array,
                   advantages_: chex.Array) -> jax.Array:
  r"""Sequence surrogate loss, averaged over prompts and rollouts.

  .. math::  L = -\frac{1}{B N} \sum_{b, i} \mathrm{sg}(A_{b,i})
             \sum_t \mathrm{mask}_{b,i,t} \log \pi(y_{b,i,t} \mid \cdot)

  Args:
    token_logprobs: ``[..., N, L]`` log-probabilities of the sampled tokens.
    token_mask: ``[..., N, L]`` 1 for response tokens that count, 0 for padding/prompt.
    advantages_: ``[..., N]`` advantages (e.g. from :func:`advantages`).

  Returns:
    A scalar (float32 or wider).
  """
  rank = jnp.ndim(advantages_)
  chex.assert_rank(token_logprobs, rank + 1)
  chex.assert_equal_shape_prefix([token_logprobs, advantages_], rank)
  return surrogate_loss_from_logprobs(sequence_logprobs(token_logprobs, token_mask), advantages_)

