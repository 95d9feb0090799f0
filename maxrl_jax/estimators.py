r"""Group policy-gradient estimators and their surrogate losses.

Setting (paper section 3). For one prompt ``x`` the policy draws ``N`` rollouts
``z_1..z_N``; rollout ``i`` gets the reward ``r_i`` and ``K = sum_i r_i``. Every estimator
here has the form

.. math::  g = \sum_i a_i \nabla_\theta \log \pi_\theta(z_i | x),
           \qquad a_i = a(r_i, K, N),

and training code writes it as the surrogate loss ``-(1/N) sum_i A_i log pi(z_i|x)`` with the
*advantage* ``A_i = N a_i`` held under ``stop_gradient``. :func:`advantages` returns ``A``.

Notation: ``p`` the pass rate of the prompt, ``pass@k = 1 - (1-p)^k``,
``J^(T) = -sum_{k=1}^T (1-p)^k/k`` the truncated maximum-likelihood objective (paper
section 2), ``grad J^(T) = w_T(p) grad p`` with ``w_T(p) = (1 - (1-p)^T)/p``, ``m = K/N``,
``q_T(K) = C(N-K, T)/C(N, T)`` (chance that a uniform size-``T`` subset of the group holds no
success) and ``c_k(K) = C(N-K, k-1)/C(N-1, k-1)`` (chance that ``k-1`` uniform *other*
rollouts of a success all fail).

Methods (``A_i`` for ``K > 0``; the ``K = 0`` value in brackets; ``E[g]`` for binary rewards):

===================  ========================================  ==============================  ======
name                 ``A_i``                                   ``E[g]`` equals                 domain
===================  ========================================  ==============================  ======
``reinforce``        ``r_i``  [0]                              ``grad p``                      real
``mean_baseline``    ``r_i - m``  [0]  (Dr. GRPO)              ``(N-1)/N grad p``              real
``rloo``             ``r_i - (K - r_i)/(N - 1)``  [0]          ``grad p``                      real
``grpo``             ``(r_i - m)/(std + eps)``  [0]            ``w^grpo_N(p) grad p``          real
``maxrl``            ``N r_i/K - 1``  [0]  (Algorithm 1)       ``grad J^(N-1)``                binary
``maxrl_keep_cv``    ``N r_i/K - 1``  [-1]  (eq. 10)           ``grad J^(N)``                  binary
``maxrl_no_cv``      ``N r_i/K``  [0]  (eq. 9)                 ``grad J^(N)``                  binary
``maxrl_truncated``  ``N r_i (1 - q_T(K))/K - 1``  [-1]        ``grad J^(T)``                  binary
``maxrl_maclaurin``  ``1`` for a success, ``1 - N(1 -           ``grad J^(T)``                  binary
                     q_T(K+1))/(K+1)`` for a failure
                     [``-(T-1)``]
``pkpo``             ``k c_k(K)`` for a success, ``0`` for a    ``grad pass@k``                 binary
                     failure [0] (``variant="loo"``)            ``= k (1-p)^(k-1) grad p``
``dsgrpo``           grpo ``- c_+ log pi_i`` (success),         ``w^grpo_N(p) grad p`` plus    binary
                     grpo ``+ c_- log pi_i`` (failure)          the smoothing terms, see
                                                                :func:`advantages`
===================  ========================================  ==============================  ======

(``maxrl_truncated`` and ``pkpo`` have further variants through their options; see
:func:`advantages`.) :mod:`maxrl_jax.theory` evaluates the exact expectation of each method
(by enumeration over ``K ~ Binomial(N, p)``) by calling the very kernel below in float64.

Reward domain (:data:`REWARD_DOMAIN`). ``"real"``: the formula is the usual one for real-valued
rewards (``reinforce``, ``mean_baseline``, ``rloo``: unbiased for the gradient of the mean reward;
``grpo``'s variance is ``mean(r^2) - mean(r)^2``, clipped at 0). ``"binary"``: the method is
derived for ``r_i in {0, 1}`` and its expectation is only known there. The kernels still
evaluate their formula on other values (nothing is checked under ``jit``), and the result can be
meaningless: ``maxrl`` computes ``(r_i - m)/m``, which for a group with a negative mean flips
every sign, e.g. ``[-1, 0, 0, 0] -> [3, -1, -1, -1]`` gives the penalised rollout the top
advantage (and ``[2, 0, 0, 0]`` gives ``[3, -1, -1, -1]`` as ``[1, 0, 0, 0]`` does: only the
ratio ``r_i/K`` counts). Binarise real rewards (e.g. ``r > threshold``) before using a
``"binary"`` method.

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
  stay float64. Binomial ratios are formed in the log domain (no binomial coefficient is ever
  formed), so every ``K`` in ``0..N`` is finite and accurate for ``N`` in the thousands.

Using these advantages in your own RL loop: :func:`make_advantage_fn` validates a method and
its options once and returns a jit-friendly ``rewards -> advantages`` function, for rewards
grouped ``[..., N]`` or flat ``[B*N]`` (``flat=True``, the layout of LLM trainers, groups
contiguous); :func:`advantages_flat` is the one-call form. A PPO-style trainer keeps its own
clipped-ratio loss and only swaps in these advantages (broadcast over each rollout's tokens).
:func:`surrogate_loss` is the plain on-policy loss, with two aggregations:

* ``"sequence_mean"``: ``-(1/(B N)) sum_{b,i} A_{b,i} sum_t mask log pi`` (the estimator ``g``
  of the table, averaged over prompts);
* ``"token_mean"``: ``-(1/T_tok) sum_{b,i,t} A_{b,i} mask log pi`` with ``T_tok`` the number of
  response tokens in the batch (verl's ``"token-mean"``, the paper's maze recipe).

Both take an explicit normaliser (``num_sequences`` / ``num_tokens``) so that losses of
micro-batches, each normalised by the *whole* batch's count, sum to the unchunked loss; and an
optional entropy bonus (:func:`token_entropy`, ``entropy_coef``).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping

import chex
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "AGGREGATIONS",
    "LOGPROB_METHODS",
    "METHODS",
    "REWARD_DOMAIN",
    "advantages",
    "advantages_flat",
    "coefficient_table",
    "make_advantage_fn",
    "sequence_logprobs",
    "surrogate_loss",
    "surrogate_loss_from_logprobs",
    "token_entropy",
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
    "maxrl_maclaurin",
    "pkpo",
    "dsgrpo",
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
    "maxrl_maclaurin": {"truncation": None},
    "pkpo": {"k": 16, "variant": "loo"},
    "dsgrpo": {"std": "population", "eps": 1e-6, "correct_coef": 0.05, "incorrect_coef": 0.05},
}

# Rewards each method is derived for (see the module docstring): "binary" (r in {0, 1}) or
# "real" (any real rewards).
REWARD_DOMAIN: Mapping[str, str] = {
    "reinforce": "real",
    "mean_baseline": "real",
    "rloo": "real",
    "grpo": "real",
    "maxrl": "binary",
    "maxrl_keep_cv": "binary",
    "maxrl_no_cv": "binary",
    "maxrl_truncated": "binary",
    "maxrl_maclaurin": "binary",
    "pkpo": "binary",
    "dsgrpo": "binary",
}

# Methods whose advantages also depend on each rollout's log-probability (``logprobs=``).
LOGPROB_METHODS: tuple[str, ...] = ("dsgrpo",)

_PKPO_VARIANTS = ("loo", "subset", "authors")

AGGREGATIONS: tuple[str, ...] = ("sequence_mean", "token_mean")


def _check_int(value: Any, name: str, low: int, n: int | None, what: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{name}: must be a static Python int, got {value!r}")
  if value < low or (n is not None and value > n):
    bound = f"N = {n}" if n is not None else "N"
    raise ValueError(f"{name}: must satisfy {low} <= {what} <= {bound}, got {value}")
  return int(value)


def _check_float(value: Any, name: str, nonnegative: bool) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
    raise ValueError(f"{name}: must be a Python float, got {value!r}")
  if not np.isfinite(value) or (nonnegative and value < 0):
    raise ValueError(f"{name}: must be finite{' and >= 0' if nonnegative else ''}, got {value!r}")
  return float(value)


def _validated_options(method: str, n: int | None,
                       options: Mapping[str, Any]) -> dict[str, Any]:
  """Checks ``method`` and its options against the table above; returns the full options.

  ``n=None`` checks everything that does not depend on the group size ``N``.
  """
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
  if "std" in opts and opts["std"] not in ("population", "sample"):
    raise ValueError(f"std: must be 'population' or 'sample', got {opts['std']!r}")
  if "eps" in opts:
    if opts["eps"] is None:
      if method != "maxrl":
        raise ValueError(f"eps: {method} needs a float eps >= 0 (default 1e-6)")
    else:
      opts["eps"] = _check_float(opts["eps"], "eps", nonnegative=True)
  if method in ("maxrl_truncated", "maxrl_maclaurin"):
    if opts["truncation"] is None:
      raise ValueError(f"truncation: {method} needs truncation=T with 1 <= T <= N")
    opts["truncation"] = _check_int(opts["truncation"], "truncation", 1, n, "T")
  if method == "maxrl_truncated":
    if not isinstance(opts["control_variate"], (bool, np.bool_)):
      raise ValueError(f"control_variate: must be a bool, got {opts['control_variate']!r}")
    opts["control_variate"] = bool(opts["control_variate"])
  if method == "pkpo":
    opts["k"] = _check_int(opts["k"], "k", 1, n, "k")
    if opts["variant"] not in _PKPO_VARIANTS:
      raise ValueError(f"variant: must be one of {_PKPO_VARIANTS}, got {opts['variant']!r}")
  if method == "dsgrpo":
    for name in ("correct_coef", "incorrect_coef"):
      opts[name] = _check_float(opts[name], name, nonnegative=False)
  return opts


def _safe_div(num, den, xp):
  """``num/den`` where ``den != 0`` and ``0`` elsewhere, with finite gradients."""
  nonzero = den != 0
  return xp.where(nonzero, num / xp.where(nonzero, den, 1), 0)


def _no_success_probability(k, n: int, t: int, xp):
  r"""``q = C(N-K, T)/C(N, T)``: chance that a uniform size-T subset holds no success.

  Computed as ``exp(sum_{j=0}^{T-1} log1p(-K/(N-j)))``: each factor is in ``[0, 1]``, so the
  sum has no cancellation and no overflow for any ``N`` (float32 on device is accurate to a
  few ulps per term); ``q = 0`` exactly when ``K > N - T``; ``T = 0`` gives ``q = 1``
  (``K <= N``).
  """
  j = xp.arange(t, dtype=k.dtype)
  empty = k > n - t  # some factor is zero
  ratio = xp.where(empty, 0, k) / (n - j)  # broadcasts [..., 1] against [T]
  log_q = xp.sum(xp.log1p(-ratio), axis=-1, keepdims=True)
  return xp.where(empty, 0, xp.exp(log_q))


def _grpo(r, k, q2, n: int, opts: Mapping[str, Any], xp):
  mean = k / n
  var = xp.maximum(q2 / n - mean * mean, 0)
  if opts["std"] == "sample":
    var = var * (n / (n - 1)) if n > 1 else 0 * var
  std = xp.where(var > 0, xp.sqrt(xp.where(var > 0, var, 1)), 0)
  return _safe_div(r - mean, std + opts["eps"], xp)


def _kernel(r, k, q2, n: int, method: str, opts: Mapping[str, Any], xp, logp=None):
  """Advantages from sufficient statistics.

  Args:
    r: per-rollout rewards, ``[..., M]`` (``M = N`` for a group; theory passes ``[0, 1]``).
    k: ``sum_i r_i`` over the group, ``[..., 1]``.
    q2: ``sum_i r_i^2`` over the group, ``[..., 1]`` (equals ``k`` for binary rewards).
    n: the group size ``N`` (static).
    method: a name in ``METHODS``.
    opts: validated options.
    xp: ``jax.numpy`` or ``numpy`` (theory evaluates this same kernel in float64).
    logp: per-rollout log-probabilities, broadcastable against ``r`` (``dsgrpo`` only).

  Returns:
    ``A`` broadcast to the shape of ``r`` (and ``k``, ``logp``).
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
    return _grpo(r, k, q2, n, opts, xp)
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
  if method == "maxrl_maclaurin":
    # Failure coefficient 1 - N (1 - q_T(K+1))/(K+1) = -sum_{j=2}^{T} c_j(K) (see advantages).
    q1 = _no_success_probability(k + 1, n, opts["truncation"], xp)
    fail = 1 - n * (1 - q1) / (k + 1)
    return r + (1 - r) * fail
  if method == "pkpo":
    kk = opts["k"]
    if opts["variant"] == "subset":
      # A failure's k rho(N-1, K, k-1): k (1 - P[k-1 of the N-1 others all fail]).
      q_fail = _no_success_probability(k, n - 1, kk - 1, xp)
      return kk * (r + (1 - r) * (1 - q_fail))
    # c_k(K): k-1 uniform others of a success (K-1 successes among N-1) all fail.
    c = _no_success_probability(xp.maximum(k - 1, 0), n - 1, kk - 1, xp)
    if opts["variant"] == "loo":
      return kk * r * c
    # "authors": c r_i, then re-centred by the mean of the other rollouts' values.
    if n == 1:
      return r * c
    return c * (n * r - k) / (n - 1)
  if method == "dsgrpo":
    base = _grpo(r, k, q2, n, opts, xp)
    correct = r > 0
    incorrect = r == 0
    return (base - opts["correct_coef"] * xp.where(correct, logp, 0)
            + opts["incorrect_coef"] * xp.where(incorrect, logp, 0))
  raise ValueError(f"method: unknown estimator {method!r}")  # unreachable after validation


def _compute_dtype(dtype) -> jnp.dtype:
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.floating):
    return jnp.promote_types(dtype, jnp.float32)
  return jnp.dtype(jnp.float32)


def _check_logprobs(method: str, logprobs: Any) -> None:
  if method in LOGPROB_METHODS and logprobs is None:
    raise ValueError(
        f"logprobs: {method} needs each rollout's log-probability under the sampling policy "
        "(logprobs=[..., N])")
  if method not in LOGPROB_METHODS and logprobs is not None:
    raise ValueError(f"logprobs: only {LOGPROB_METHODS} use log-probabilities, not {method!r}")


def _group_size(shape) -> int:
  if len(shape) == 0:
    raise ValueError("rewards: need shape [..., N] with rollouts on the last axis, got a scalar")
  n = int(shape[-1])
  if n < 1:
    raise ValueError(f"rewards: need N >= 1 rollouts on the last axis, got shape {shape}")
  return n


def _advantages(rewards, method: str, opts: Mapping[str, Any], logprobs) -> jax.Array:
  """:func:`advantages` with options already validated for ``N = rewards.shape[-1]``."""
  shape = jnp.shape(rewards)
  n = _group_size(shape)
  dtype = _compute_dtype(jnp.result_type(rewards))
  r = jnp.asarray(rewards).astype(dtype)
  k = jnp.sum(r, axis=-1, keepdims=True)
  q2 = jnp.sum(r * r, axis=-1, keepdims=True) if method in ("grpo", "dsgrpo") else k
  logp = None
  if logprobs is not None:
    chex.assert_shape(logprobs, shape)
    logp = jnp.asarray(logprobs).astype(dtype)
  out = _kernel(r, k, q2, n, method, opts, jnp, logp)
  chex.assert_shape(out, shape)
  return out.astype(dtype)


def advantages(rewards: chex.Array, method: str, *, logprobs: chex.Array | None = None,
               **options: Any) -> jax.Array:
  r"""Per-rollout advantages ``A_i = N a(r_i, K, N)`` of a group estimator.

  Args:
    rewards: ``[..., N]`` rewards (bool/int/float), rollouts on the last axis, any number of
      leading (prompt) axes. ``N >= 1``. In ``{0, 1}`` for the methods whose
      :data:`REWARD_DOMAIN` is ``"binary"``.
    method: one of :data:`METHODS` (see the module docstring for the formulas).
    logprobs: ``[..., N]`` log-probability of each rollout under the sampling policy; needed by
      ``dsgrpo`` and only by it (see below).
    **options: per method:

      * ``grpo``: ``std="population"`` (divide by ``sqrt(m(1-m))``, the paper's ImageNet code)
        or ``"sample"`` (Bessel-corrected, as in common LLM libraries); ``eps=1e-6``.
      * ``maxrl``: ``eps=None`` gives the exact ``N r_i/K - 1`` (``0`` when ``K = 0``);
        a float gives the authors' ``(r_i - m)/(m + eps)``.
      * ``maxrl_truncated``: ``truncation=T``, a static int with ``1 <= T <= N`` (required);
        ``control_variate=True``.
      * ``maxrl_maclaurin``: ``truncation=T``, a static int with ``1 <= T <= N`` (required).
      * ``pkpo``: ``k=16`` (the pass@k targeted, a static int with ``1 <= k <= N``; 16 is the
        paper's maze setting, Table 3 "PKPO (T=16)"); ``variant="loo"``, ``"subset"`` or
        ``"authors"``.
      * ``dsgrpo``: ``correct_coef=0.05``, ``incorrect_coef=0.05`` (the authors' defaults),
        ``std="population"``, ``eps=1e-6`` (of its GRPO part).

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

  ``maxrl_maclaurin`` (the MaxRL authors' order-``T`` "Maclaurin" estimator). It estimates each
  term of ``grad J^(T) = sum_{j=1}^T (1/j) grad pass@j`` (paper section 2) separately: the
  ``j = 1`` term by REINFORCE on the successes (``A = 1``), each ``j >= 2`` term through
  ``(1/j) grad pass@j = -(1/j) grad fail@j`` by the score of a *failure* times the unbiased
  estimate ``c_j(K) = C(N-K-1, j-1)/C(N-1, j-1)`` of ``(1-p)^(j-1)`` from the other ``N-1``
  rollouts (the chance that ``j-1`` of them, drawn without replacement, all fail):

  .. math::  A_i = r_i - (1 - r_i) \sum_{j=2}^{T} \frac{\binom{N-K-1}{j-1}}{\binom{N-1}{j-1}}
             = r_i + (1 - r_i)\Big(1 - \frac{N}{K+1}\big(1 - q_T(K+1)\big)\Big),

  the closed form by ``sum_{m=0}^{M} C(a, m)/C(b, m) = (b+1)/(b+1-a) (1 - C(a, M+1)/C(b+1, M+1))``.
  Unbiased for ``grad J^(T)`` like ``maxrl_truncated``, with other coefficients: a success
  always gets ``1``, ``K = 0`` gives every rollout ``-(T-1)`` and ``K = N`` gives ``1`` each
  (not ``0``); ``T = 1`` is REINFORCE (``A = r``). Its exact variance against
  ``maxrl_truncated``'s is in :func:`maxrl_jax.theory.gradient_variance`.

  ``pkpo`` (Pass@k Policy Optimization, Walder & Karkhanis 2025, arXiv 2505.15201). Averaging
  the ``k``-sample REINFORCE estimator of ``grad pass@k``, ``max_{i in S} r_i sum_{i in S} S_i``,
  over all size-``k`` subsets ``S`` gives their unbiased binary-reward transformation
  (``variant="subset"``): ``A = k`` for a success and ``A = k rho(N-1, K, k-1)`` for a failure,
  ``rho(n, c, k) = 1 - C(n-c, k)/C(n, k)``. ``variant="loo"`` (default) subtracts from every
  rollout the baseline ``k rho(N-1, K - r_i, k-1)`` computed from the *other* rollouts only
  (so it leaves the expectation unchanged): ``A = k c_k(K)`` for a success, ``A = 0`` for a
  failure, ``c_k(K) = C(N-K, k-1)/C(N-1, k-1)``. Both have ``E[g] = grad pass@k =
  k (1-p)^(k-1) grad p`` exactly, ``A = 0`` at ``K = 0``; ``k = 1`` gives ``A = r``.
  ``variant="authors"`` is the MaxRL authors' ``compute_pkpo_outcome_advantage``: ``c_k(K) r_i``
  (the ``loo`` advantage divided by ``k``) re-centred by the mean over the other rollouts,
  ``A_i = c_k(K) (N r_i - K)/(N - 1)``. The re-centring baseline depends on ``r_i`` (through
  ``K``), so it is *not* unbiased: ``E[g] = [(1-p)^(k-1) + (k-1) p (1-p)^(k-2)/(N-1)] grad p``
  (``(1/k) grad pass@k`` plus a bias that vanishes as ``N -> infinity``; ``k = 1`` is ``rloo``).

  ``dsgrpo`` (Differential Smoothing, Gai, Zeng, Zhang & Raghunathan 2025, arXiv 2511.19942, as
  in the MaxRL authors' ``compute_dsgrpo_outcome_advantage``): GRPO advantages minus
  ``correct_coef * log pi_i`` for a success (``r_i > 0``) and plus ``incorrect_coef * log pi_i``
  for a failure (``r_i = 0``), ``log pi_i = logprobs[..., i]`` held fixed. The authors pass the
  mean log-probability over each response's tokens. With the sequence log-probability
  ``log pi(z)`` instead, for any policy (``H_1``, ``H_0`` the entropies of the policy
  restricted to the successes, resp. failures):

  .. math::  E[g] = \big(w^{grpo}_N(p) - c_+ \log p - c_- \log(1-p)\big) \nabla p
             + c_+ \nabla\big(p H_1\big) - c_- \nabla\big((1-p) H_0\big),

  i.e. GRPO's weight plus ``-c_+ log p - c_- log(1-p)``, an entropy bonus on the successes and
  an entropy penalty on the failures; with a per-token mean and responses of equal length
  ``L`` the coefficients are ``c/L``. For a policy with one success and one failure outcome
  (the Bernoulli-logit model of :mod:`maxrl_jax.theory`) ``H_1 = H_0 = 0``. ``N = 1`` gives
  GRPO's ``0`` plus the smoothing terms (the authors' code uses ``r/(1 + eps)`` there).

  Returns:
    ``A`` with the rewards' shape; float32 (float64 for float64 inputs).

  Raises:
    ValueError: unknown method or option, bad option value, scalar rewards, ``N = 0``, or
      ``logprobs`` missing for (given to) a method that uses (does not use) them.
  """
  n = _group_size(jnp.shape(rewards))
  opts = _validated_options(method, n, options)
  _check_logprobs(method, logprobs)
  return _advantages(rewards, method, opts, logprobs)


def make_advantage_fn(method: str, *, group_size: int | None = None, flat: bool = False,
                      **options: Any) -> Callable[..., jax.Array]:
  r"""A ``rewards -> advantages`` function for your own RL loop, options validated once.

  Example (an LLM trainer with ``B`` prompts times ``G`` rollouts, rewards flat ``[B*G]``,
  the rollouts of one prompt contiguous)::

    adv_fn = make_advantage_fn("maxrl", group_size=G, flat=True)   # raises here if invalid
    adv = jax.jit(adv_fn)(rewards)                                  # [B*G] -> [B*G]

  A PPO-style trainer keeps its clipped-ratio loss (and KL, entropy terms) and only replaces
  its advantages by ``adv`` (each rollout's value broadcast over its response tokens); an
  on-policy trainer can use :func:`surrogate_loss` (aggregations ``"sequence_mean"`` and
  ``"token_mean"``, see the module docstring).

  Args:
    method: one of :data:`METHODS`.
    group_size: the number of rollouts per prompt ``N``. Needed for ``flat=True``. When given,
      the options are fully validated now (e.g. ``truncation <= N``) and calls check that the
      rewards have that group size; otherwise the ``N``-dependent checks run at the first call
      (at trace time under ``jit``).
    flat: ``False``: rewards ``[..., N]``, rollouts on the last axis. ``True``: rewards
      ``[..., B*N]`` with each prompt's ``N`` rollouts contiguous (``[p0 r0, p0 r1, ...,
      p1 r0, ...]``); advantages come back in the same layout.
    **options: the method's options, as for :func:`advantages`.

  Returns:
    ``fn(rewards, logprobs=None) -> advantages``, pure and traceable (``jit``, ``vmap``,
    ``grad``); ``logprobs`` (same layout as the rewards) only for :data:`LOGPROB_METHODS`.

  Raises:
    ValueError: at construction, naming the bad argument or option.
  """
  if group_size is not None:
    group_size = _check_int(group_size, "group_size", 1, None, "N")
  if not isinstance(flat, (bool, np.bool_)):
    raise ValueError(f"flat: must be a bool, got {flat!r}")
  if flat and group_size is None:
    raise ValueError("group_size: flat=True needs group_size=N (rollouts per prompt)")
  opts = _validated_options(method, group_size, options)

  def advantage_fn(rewards: chex.Array, logprobs: chex.Array | None = None) -> jax.Array:
    _check_logprobs(method, logprobs)
    shape = jnp.shape(rewards)
    if flat:
      if len(shape) == 0 or shape[-1] % group_size:
        raise ValueError(f"rewards: flat layout needs a last axis divisible by group_size = "
                         f"{group_size}, got shape {shape}")
      grouped = shape[:-1] + (shape[-1] // group_size, group_size)
      rewards = jnp.reshape(rewards, grouped)
      if logprobs is not None:
        chex.assert_shape(logprobs, shape)
        logprobs = jnp.reshape(logprobs, grouped)
    n = _group_size(jnp.shape(rewards))
    if group_size is not None and n != group_size:
      raise ValueError(f"rewards: expected {group_size} rollouts on the last axis, got {n}")
    full = opts if group_size is not None else _validated_options(method, n, opts)
    out = _advantages(rewards, method, full, logprobs)
    return jnp.reshape(out, shape)

  return advantage_fn


def advantages_flat(rewards: chex.Array, group_size: int, method: str, *,
                    logprobs: chex.Array | None = None, **options: Any) -> jax.Array:
  """:func:`advantages` for the flat ``[..., B*N]`` layout (each prompt's rollouts contiguous).

  Equals ``advantages(rewards.reshape(..., B, N), method).reshape(..., B*N)``.
  """
  fn = make_advantage_fn(method, group_size=group_size, flat=True, **options)
  return fn(rewards, logprobs)


def coefficient_table(method: str, n: int, *, logprobs: Any = None,
                      **options: Any) -> np.ndarray:
  """Float64 advantages ``A(r, K, N)`` of a method for binary rewards, for every ``K``.

  Evaluates the same kernel as :func:`advantages`, in NumPy float64, on the sufficient
  statistics ``(r, K)`` instead of full reward vectors (``O(N)`` memory, not ``O(N^2)``).

  Args:
    method: one of :data:`METHODS`.
    n: group size ``N >= 1``.
    logprobs: for :data:`LOGPROB_METHODS` only: ``[..., 2]`` log-probabilities of a failure
      and of a success (e.g. ``[log(1-p), log p]`` for a two-outcome policy).
    **options: as for :func:`advantages`.

  Returns:
    ``[..., N + 1, 2]`` float64 array (``[N + 1, 2]`` without ``logprobs``); row ``K``, column
    ``r`` holds ``A(r, K, N)``. Entries that cannot occur (``r = 1`` at ``K = 0``, ``r = 0`` at
    ``K = N``) are still the kernel's value.
  """
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"n: need an int N >= 1, got {n!r}")
  n = int(n)
  opts = _validated_options(method, n, options)
  _check_logprobs(method, logprobs)
  r = np.array([[0.0, 1.0]])
  k = np.arange(n + 1, dtype=np.float64)[:, None]
  logp = None
  lead = ()
  if logprobs is not None:
    logp = np.asarray(logprobs, np.float64)
    if logp.ndim < 1 or logp.shape[-1] != 2:
      raise ValueError(f"logprobs: need shape [..., 2] (failure, success), got {logp.shape}")
    lead = logp.shape[:-1]
    logp = logp[..., None, :]
  with np.errstate(divide="ignore", invalid="ignore"):
    out = _kernel(r, k, k, n, method, opts, np, logp)
  return np.broadcast_to(out, lead + (n + 1, 2)).astype(np.float64)


def sequence_logprobs(token_logprobs: chex.Array, token_mask: chex.Array) -> jax.Array:
  """``sum_t mask_t log pi(y_t | ...)``: per-rollout log-probabilities, ``[..., L] -> [...]``."""
  chex.assert_equal_shape([token_logprobs, token_mask])
  logp = jnp.asarray(token_logprobs)
  dtype = _compute_dtype(logp.dtype)
  mask = jnp.asarray(token_mask).astype(dtype)
  return jnp.sum(logp.astype(dtype) * mask, axis=-1)


def token_entropy(logits: chex.Array) -> jax.Array:
  r"""Exact entropy of each token's softmax, ``[..., L, V] -> [..., L]``, in float32 or wider.

  ``H = -sum_v pi_v log pi_v`` with ``pi = softmax(logits)``; classes with ``-inf`` logits
  (masked vocabulary) contribute ``0``, with finite gradients.
  """
  logits = jnp.asarray(logits)
  logits = logits.astype(_compute_dtype(logits.dtype))
  logp = jax.nn.log_softmax(logits, axis=-1)
  finite = jnp.isfinite(logp)
  safe = jnp.where(finite, logp, 0)
  return -jnp.sum(jnp.where(finite, jnp.exp(safe) * safe, 0), axis=-1)


def _resolve_adv(adv: Any, deprecated: dict[str, Any], fn_name: str) -> Any:
  """Maps the deprecated keyword ``advantages_`` onto ``adv`` (with a DeprecationWarning)."""
  if "advantages_" in deprecated:
    if adv is not None:
      raise TypeError(f"{fn_name}() got both adv and its deprecated spelling advantages_")
    warnings.warn(f"{fn_name}(advantages_=...) is deprecated; use adv=... (or pass it "
                  "positionally)", DeprecationWarning, stacklevel=3)
    adv = deprecated.pop("advantages_")
  if deprecated:
    raise TypeError(f"{fn_name}() got an unexpected keyword argument {next(iter(deprecated))!r}")
  if adv is None:
    raise TypeError(f"{fn_name}() missing required argument 'adv'")
  return adv


def _normaliser(value: Any, default, name: str, dtype):
  if value is None:
    return default.astype(dtype)
  if isinstance(value, (bool, str)):
    raise ValueError(f"{name}: must be a number or array, got {value!r}")
  return jnp.asarray(value).astype(dtype)


def surrogate_loss_from_logprobs(logprobs: chex.Array, adv: chex.Array | None = None, *,
                                 num_sequences: Any = None, **deprecated: Any) -> jax.Array:
  r"""``-(1/S) sum_{prompts, i} stop_gradient(A_i) log pi(z_i|x)`` for ``[..., N]`` inputs.

  ``S = num_sequences`` defaults to the number of rollouts in the inputs (``B N``: the mean).
  Its gradient is then ``-(1/B) sum_prompts (1/N) sum_i A_i grad log pi(z_i|x) = -mean g``, so
  descending it ascends the estimator ``g`` of each method. Passing the whole batch's count as
  ``num_sequences`` for each micro-batch makes the micro-batch losses sum to the full loss.
  Computed in float32 (or wider). ``advantages_=`` is the deprecated spelling of ``adv``.
  """
  adv = _resolve_adv(adv, deprecated, "surrogate_loss_from_logprobs")
  chex.assert_equal_shape([logprobs, adv])
  logp = jnp.asarray(logprobs)
  dtype = _compute_dtype(logp.dtype)
  a = jax.lax.stop_gradient(jnp.asarray(adv).astype(dtype))
  count = _normaliser(num_sequences, jnp.asarray(a.size), "num_sequences", dtype)
  return -jnp.sum(a * logp.astype(dtype)) / count


def surrogate_loss(token_logprobs: chex.Array, token_mask: chex.Array,
                   adv: chex.Array | None = None, *, aggregation: str = "sequence_mean",
                   num_tokens: Any = None, num_sequences: Any = None,
                   token_entropies: chex.Array | None = None, entropy_coef: float = 0.0,
                   **deprecated: Any) -> jax.Array:
  r"""On-policy surrogate loss with a choice of aggregation and an optional entropy bonus.

  With ``sg`` the stop-gradient, ``m`` the mask and ``H`` the token entropies:

  * ``aggregation="sequence_mean"`` (default): mean over prompts and rollouts,

    .. math::  L = -\frac{1}{S} \sum_{b, i} \mathrm{sg}(A_{b,i}) \sum_t m_{b,i,t}
               \log \pi(y_{b,i,t} \mid \cdot), \qquad S = \texttt{num\_sequences}
               \text{ (default } B N\text{)};

    its gradient is ``-mean g`` (see :func:`surrogate_loss_from_logprobs`).
  * ``aggregation="token_mean"``: the sum over the batch of ``-A_i log pi(token)`` over
    response tokens, divided by the number of response tokens (verl's ``"token-mean"``, used in
    the paper's maze experiments),

    .. math::  L = -\frac{1}{T} \sum_{b, i, t} \mathrm{sg}(A_{b,i})\, m_{b,i,t}
               \log \pi(y_{b,i,t} \mid \cdot), \qquad T = \texttt{num\_tokens}
               \text{ (default } \textstyle\sum m\text{, at least 1)}.

    Longer responses weigh more; the estimator is ``g`` reweighted by response length.

  Entropy bonus: with ``token_entropies`` (e.g. :func:`token_entropy` of the logits, *not*
  under stop-gradient) ``L`` becomes ``L - entropy_coef * E`` with ``E`` the same aggregation of
  the entropies over response tokens (``sum m H / S`` or ``sum m H / T``).

  Gradient accumulation: split the batch into micro-batches and pass the *whole* batch's
  ``num_tokens`` (``sum`` of the full mask) or ``num_sequences`` to every micro-batch; the
  micro-batch losses (and gradients) then sum exactly to the unchunked ones. With the defaults
  each micro-batch is normalised by its own count, which is not the same for ``token_mean``.

  Args:
    token_logprobs: ``[..., N, L]`` log-probabilities of the sampled tokens.
    token_mask: ``[..., N, L]`` 1 for response tokens that count, 0 for padding/prompt.
    adv: ``[..., N]`` advantages (e.g. from :func:`advantages`); positional or ``adv=``
      (``advantages_=`` is the deprecated spelling, kept with a DeprecationWarning).
    aggregation: ``"sequence_mean"`` or ``"token_mean"``.
    num_tokens: normaliser of ``token_mean`` (scalar, may be traced).
    num_sequences: normaliser of ``sequence_mean`` (scalar, may be traced).
    token_entropies: ``[..., N, L]`` per-token entropies, or ``None``.
    entropy_coef: weight of the entropy bonus (needs ``token_entropies`` when nonzero).

  Returns:
    A scalar (float32 or wider).

  Raises:
    ValueError: unknown aggregation, a normaliser that does not belong to it, or
      ``entropy_coef != 0`` without ``token_entropies``.
  """
  adv = _resolve_adv(adv, deprecated, "surrogate_loss")
  if aggregation not in AGGREGATIONS:
    raise ValueError(f"aggregation: must be one of {AGGREGATIONS}, got {aggregation!r}")
  if aggregation == "sequence_mean" and num_tokens is not None:
    raise ValueError("num_tokens: only for aggregation='token_mean' (sequence_mean takes "
                     "num_sequences)")
  if aggregation == "token_mean" and num_sequences is not None:
    raise ValueError("num_sequences: only for aggregation='sequence_mean' (token_mean takes "
                     "num_tokens)")
  coef = _check_float(entropy_coef, "entropy_coef", nonnegative=False)
  if coef != 0.0 and token_entropies is None:
    raise ValueError("entropy_coef: a nonzero entropy bonus needs token_entropies")
  rank = jnp.ndim(adv)
  chex.assert_rank(token_logprobs, rank + 1)
  chex.assert_equal_shape_prefix([token_logprobs, adv], rank)
  chex.assert_equal_shape([token_logprobs, token_mask])
  logp = jnp.asarray(token_logprobs)
  dtype = _compute_dtype(logp.dtype)
  mask = jnp.asarray(token_mask).astype(dtype)
  a = jax.lax.stop_gradient(jnp.asarray(adv).astype(dtype))
  if aggregation == "sequence_mean":
    count = _normaliser(num_sequences, jnp.asarray(a.size), "num_sequences", dtype)
  else:
    total = jnp.sum(mask)
    count = _normaliser(num_tokens, jnp.where(total > 0, total, 1), "num_tokens", dtype)
  loss = -jnp.sum(a[..., None] * mask * logp.astype(dtype)) / count
  if token_entropies is not None:
    chex.assert_equal_shape([token_logprobs, token_entropies])
    ent = jnp.asarray(token_entropies)
    loss = loss - coef * jnp.sum(mask * ent.astype(dtype)) / count
  return loss
