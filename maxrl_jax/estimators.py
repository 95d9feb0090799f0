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

Methods: one record per method in :data:`REGISTRY` (:class:`Estimator`); this table is
rendered from it (:func:`table_markdown`). ``A_i`` for ``K > 0``, its value at ``K = 0``, and
what ``E[g]`` equals for binary rewards:

@METHOD_TABLE@

(``maxrl_truncated`` and ``pkpo`` have further variants through their options; see
:func:`advantages`.) :mod:`maxrl_jax.theory` evaluates the exact expectation of each method
(by enumeration over ``K ~ Binomial(N, p)``) by calling the very kernel below in float64.

Reward domain (:data:`REWARD_DOMAIN`). ``"real"``: the formula is the usual one for real-valued
rewards (``reinforce``, ``mean_baseline``, ``rloo``: unbiased for the gradient of the mean reward;
``grpo``'s variance is ``mean(r^2) - mean(r)^2``, clipped at 0). ``"binary"``: the method is
derived for ``r_i in {0, 1}`` and its expectation is only known there. On other values the
formula can be meaningless: ``maxrl`` computes ``(r_i - m)/m``, which for a group with a
negative mean flips every sign, e.g. ``[-1, 0, 0, 0] -> [3, -1, -1, -1]`` gives the penalised
rollout the top advantage (and ``[2, 0, 0, 0]`` gives ``[3, -1, -1, -1]`` as ``[1, 0, 0, 0]``
does: only the ratio ``r_i/K`` counts). So concrete rewards (not traced) outside a method's
domain raise a ``ValueError`` (NaN and inf for every method); traced rewards (under ``jit``,
``vmap``, ``grad``, ``scan``) are checked only with ``check_rewards=True``, through
``jax.experimental.checkify``. Binarise real rewards with ``binarize=threshold`` (``r >
threshold``; :func:`binarize`) before using a ``"binary"`` method.

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
contiguous, or grouped by integer ``group_ids`` as verl's ``index``: groups of any size in any
order); :func:`advantages_flat` is the one-call form. A PPO-style trainer keeps its own
clipped-ratio loss and only swaps in these advantages (broadcast over each rollout's tokens).
:func:`surrogate_loss` is the plain on-policy loss, with three aggregations
(:data:`AGGREGATIONS`):

* ``"sequence_mean"``: ``-(1/(B N)) sum_{b,i} A_{b,i} sum_t mask log pi`` (the estimator ``g``
  of the table, averaged over prompts; verl's ``"seq-mean-token-sum"``);
* ``"token_mean"``: ``-(1/T_tok) sum_{b,i,t} A_{b,i} mask log pi`` with ``T_tok`` the number of
  response tokens in the batch (verl's ``"token-mean"`` over one batch);
* ``"microbatch_token_mean"``: the mean over consecutive micro-batches of ``S`` sequences of
  each micro-batch's token-mean (verl's ``"token-mean"`` with gradient accumulation, what the
  authors' maze runs compute).

Each takes an explicit normaliser (``num_sequences`` / ``num_tokens`` / ``num_microbatches``)
so that losses of chunks, each normalised by the *whole* batch's count, sum to the unchunked
loss; and an optional entropy bonus (:func:`token_entropy`, ``entropy_coef``).
"""

from __future__ import annotations

import dataclasses
import types
import warnings
from typing import Any, Callable, Literal, Mapping, get_args

import chex
import jax
from jax.experimental import checkify
import jax.numpy as jnp
import numpy as np

__all__ = [
    "AGGREGATIONS",
    "Estimator",
    "LOGPROB_METHODS",
    "METHODS",
    "Method",
    "Option",
    "REGISTRY",
    "REWARD_DOMAIN",
    "Variant",
    "advantages",
    "advantages_flat",
    "binarize",
    "coefficient_table",
    "make_advantage_fn",
    "resolve_options",
    "sequence_logprobs",
    "surrogate_loss",
    "surrogate_loss_from_logprobs",
    "table_markdown",
    "token_entropy",
    "validate_options",
]

# The method names, for type checkers (``REGISTRY`` holds one record per name, same order).
Method = Literal["reinforce", "mean_baseline", "rloo", "grpo", "maxrl", "maxrl_keep_cv",
                 "maxrl_no_cv", "maxrl_truncated", "maxrl_maclaurin", "pkpo", "dsgrpo"]
RewardDomain = Literal["binary", "real"]

# Kinds of option value: see Option.
_OPTION_KINDS = ("choice", "bool", "float", "nonnegative_float", "group_int")


@dataclasses.dataclass(frozen=True)
class Option:
  """One option of an estimator.

  Attributes:
    name: the keyword (``advantages(..., name=value)``).
    default: its value when not given (``None`` with ``required=True``: no default).
    kind: ``"choice"`` (one of ``choices``), ``"bool"``, ``"float"`` (finite),
      ``"nonnegative_float"`` (finite, ``>= 0``) or ``"group_int"`` (a static int in
      ``1..N``, or the string ``"N"``: the group size, resolved once ``N`` is known).
    choices: the allowed values of a ``"choice"``.
    allow_none: ``None`` is a valid value (a float option with a "no epsilon" meaning).
    required: the option must be given (``default`` is ``None``).
    doc: one line for the docs.
  """
  name: str
  default: Any
  kind: str
  choices: tuple[str, ...] = ()
  allow_none: bool = False
  required: bool = False
  doc: str = ""


@dataclasses.dataclass(frozen=True)
class Variant:
  """A documented setting of an estimator's options with its own formula (a docs table row)."""
  label: str
  advantage: str
  at_k0: str
  unbiased_for: str


@dataclasses.dataclass(frozen=True)
class Estimator:
  r"""One group estimator: everything the library and its docs know about it.

  The advantage itself is computed by the shared kernel (``_kernel``), which has one branch per
  name and is evaluated both on device (:func:`advantages`) and in NumPy float64
  (:func:`coefficient_table`, :mod:`maxrl_jax.theory`).

  Attributes:
    name: the method name (a value of :data:`Method`).
    advantage: ``A_i`` for ``K > 0`` (formula text, in the module docstring's notation).
    at_k0: ``A_i`` at ``K = 0`` (no success in the group).
    unbiased_for: what ``E[g]`` equals for binary rewards.
    reward_domain: ``"binary"`` (derived for ``r in {0, 1}``) or ``"real"``.
    options: its options, in order.
    needs_logprobs: the advantages also use each rollout's log-probability (``logprobs=``).
    reference: where it comes from (paper section, equation, other paper), for the docs.
    variants: further documented option settings with their own formulas.
  """
  name: str
  advantage: str
  at_k0: str
  unbiased_for: str
  reward_domain: RewardDomain
  options: tuple[Option, ...] = ()
  needs_logprobs: bool = False
  reference: str = ""
  variants: tuple[Variant, ...] = ()

  def __post_init__(self):
    if self.reward_domain not in get_args(RewardDomain):
      raise ValueError(f"reward_domain: {self.name}: {self.reward_domain!r}")
    for opt in self.options:
      if opt.kind not in _OPTION_KINDS:
        raise ValueError(f"options: {self.name}.{opt.name}: unknown kind {opt.kind!r}")

  @property
  def defaults(self) -> dict[str, Any]:
    """The option defaults, ``{name: default}``."""
    return {opt.name: opt.default for opt in self.options}

  @property
  def fixed_group_size(self) -> bool:
    """Its options depend on a static group size ``N`` (a ``"group_int"`` option)."""
    return any(opt.kind == "group_int" for opt in self.options)


_STD = Option("std", "population", "choice", choices=("population", "sample"),
              doc="population std sqrt(m(1-m)) (the paper's ImageNet code) or sample std "
              "(Bessel, as TRL/verl/tunix)")
_EPS = Option("eps", 1e-6, "nonnegative_float", doc="added to the std")

_ESTIMATORS = (
    Estimator("reinforce", "r_i", "0", "grad p", "real"),
    Estimator("mean_baseline", "r_i - m", "0", "(N-1)/N grad p", "real", reference="Dr. GRPO"),
    Estimator("rloo", "r_i - (K - r_i)/(N-1)", "0", "grad p", "real"),
    Estimator("grpo", "(r_i - m)/(std + eps)", "0",
              "w^grpo_N(p) grad p (population 1/sqrt(p(1-p)))", "real", options=(_STD, _EPS)),
    Estimator("maxrl", "N r_i/K - 1", "0", "grad J^(N-1)", "binary",
              options=(Option("eps", None, "nonnegative_float", allow_none=True,
                              doc="None: exact N r_i/K - 1; a float: the authors' "
                              "(r_i - m)/(m + eps)"),),
              reference="paper Algorithm 1"),
    Estimator("maxrl_keep_cv", "N r_i/K - 1", "-1", "grad J^(N)", "binary",
              reference="paper eq. 10"),
    Estimator("maxrl_no_cv", "N r_i/K", "0", "grad J^(N)", "binary", reference="paper eq. 9"),
    Estimator("maxrl_truncated", "N r_i (1 - q_T(K))/K - 1", "-1", "grad J^(T)", "binary",
              options=(Option("truncation", None, "group_int", required=True,
                              doc="T, 1 <= T <= N"),
                       Option("control_variate", True, "bool", doc="add -1 to every A_i")),
              reference="paper section 2, J^(T)"),
    Estimator("maxrl_maclaurin",
              "1 (success); -sum_{j=2..T} C(N-K-1,j-1)/C(N-1,j-1) (failure)", "-(T-1)",
              "grad J^(T)", "binary",
              options=(Option("truncation", None, "group_int", required=True,
                              doc="T, 1 <= T <= N"),),
              reference="the authors' Maclaurin estimator"),
    Estimator("pkpo", "k c_k(K) (success), 0 (failure)", "0",
              "grad pass@k = k(1-p)^(k-1) grad p", "binary",
              options=(Option("k", 16, "group_int", doc="the pass@k targeted, 1 <= k <= N"),
                       Option("variant", "loo", "choice", choices=("loo", "subset", "authors"),
                              doc="see advantages")),
              reference="Walder & Karkhanis 2025",
              variants=(
                  Variant('`variant="subset"`',
                          "k (success), k(1 - C(N-1-K,k-1)/C(N-1,k-1)) (failure)", "0",
                          "grad pass@k"),
                  Variant('`variant="authors"` (MaxRL code)', "c_k(K)(N r_i - K)/(N-1)", "0",
                          "[(1-p)^(k-1) + (k-1)p(1-p)^(k-2)/(N-1)] grad p (biased)"))),
    Estimator("dsgrpo", "grpo - c+ log pi_i (success), grpo + c- log pi_i (failure)",
              "c- log pi_i",
              "(w^grpo_N - c+ log p - c- log(1-p)) grad p + c+ grad(p H_1) - c- grad((1-p) H_0)",
              "binary",
              options=(_STD, _EPS,
                       Option("correct_coef", 0.05, "float", doc="c+ (the authors' default)"),
                       Option("incorrect_coef", 0.05, "float", doc="c- (the authors' default)")),
              needs_logprobs=True, reference="Differential Smoothing, Gai et al. 2025"),
)

# One record per method, in the order of METHODS.
REGISTRY: Mapping[str, Estimator] = types.MappingProxyType({est.name: est for est in _ESTIMATORS})

METHODS: tuple[str, ...] = tuple(REGISTRY)

# Rewards each method is derived for (see the module docstring): "binary" (r in {0, 1}) or
# "real" (any real rewards).
REWARD_DOMAIN: Mapping[str, str] = {name: est.reward_domain for name, est in REGISTRY.items()}

# Methods whose advantages also depend on each rollout's log-probability (``logprobs=``).
LOGPROB_METHODS: tuple[str, ...] = tuple(name for name, est in REGISTRY.items()
                                         if est.needs_logprobs)

if METHODS != get_args(Method):  # the Literal is spelled out for type checkers
  raise AssertionError(f"Method {get_args(Method)} != REGISTRY {METHODS}")

AGGREGATIONS: tuple[str, ...] = ("sequence_mean", "token_mean", "microbatch_token_mean")


def _format_default(opt: Option) -> str:
  if opt.required:
    return f"`{opt.name}` (required)"
  return f"`{opt.name}={opt.default!r}`".replace("'", '"')


def table_markdown() -> str:
  """The estimator table of the docs (README, this module's docstring), from :data:`REGISTRY`.

  One row per method (plus one per documented variant): name and reference, options with their
  defaults, ``A_i`` for ``K > 0``, ``A_i`` at ``K = 0``, what ``E[g]`` equals for binary
  rewards, and the reward domain.
  """
  lines = ["| method | options (defaults) | A_i | K = 0 | E[g] equals | rewards |",
           "|---|---|---|---|---|---|"]
  for est in REGISTRY.values():
    name = f"`{est.name}`" + (f" ({est.reference})" if est.reference else "")
    if est.needs_logprobs:
      name += "; needs `logprobs=`"
    opts = ", ".join(_format_default(opt) for opt in est.options) or "-"
    lines.append(f"| {name} | {opts} | {est.advantage} | {est.at_k0} | {est.unbiased_for} "
                 f"| {est.reward_domain} |")
    for var in est.variants:
      lines.append(f"| `{est.name}` {var.label} | | {var.advantage} | {var.at_k0} "
                   f"| {var.unbiased_for} | {est.reward_domain} |")
  return "\n".join(lines)


if __doc__:  # None under python -OO
  __doc__ = __doc__.replace("@METHOD_TABLE@", table_markdown())


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


def _check_option(method: str, opt: Option, value: Any, n: int | None, where: str) -> Any:
  """One option's value, checked and normalised (``"N"`` resolved when ``n`` is known)."""
  if value is None and not opt.allow_none:
    if opt.required:
      raise ValueError(f"{where}: {method} needs {opt.name}=... ({opt.doc}, or \"N\")")
    raise ValueError(f"{where}: {method} needs a value ({opt.doc}; default {opt.default!r})")
  if value is None:
    return None
  if opt.kind == "choice":
    if not isinstance(value, str) or value not in opt.choices:
      raise ValueError(f"{where}: must be one of {opt.choices}, got {value!r}")
    return value
  if opt.kind == "bool":
    if not isinstance(value, (bool, np.bool_)):
      raise ValueError(f"{where}: must be a bool, got {value!r}")
    return bool(value)
  if opt.kind in ("float", "nonnegative_float"):
    return _check_float(value, where, nonnegative=opt.kind == "nonnegative_float")
  if isinstance(value, str):  # group_int
    if value != "N":
      raise ValueError(f"{where}: must be an int in 1..N or the string \"N\", got {value!r}")
    return value if n is None else n
  return _check_int(value, where, 1, n, opt.name)


def _as_dict(value: Any, where: str, what: str) -> dict[str, Any]:
  if isinstance(value, Mapping):
    return dict(value)
  if callable(getattr(value, "to_dict", None)):  # ml_collections.ConfigDict
    return dict(value.to_dict())
  raise ValueError(f"{where}: must be a mapping {what}, got {type(value).__name__}")


def _validated_options(method: str, n: int | None, options: Mapping[str, Any],
                       where: str | None = None) -> dict[str, Any]:
  """Checks ``method`` and its options against :data:`REGISTRY`; returns the full options.

  ``n=None`` checks everything that does not depend on the group size ``N`` (and leaves the
  value ``"N"`` of a ``"group_int"`` option as it is). Errors start with the field name: the
  option's name, or ``f"{where}.{option}"`` (``where`` for an unknown method) when given.
  """
  if method not in REGISTRY:
    raise ValueError(f"{where or 'method'}: unknown estimator {method!r}; expected one of "
                     f"{METHODS}")
  est = REGISTRY[method]
  prefix = f"{where}." if where else ""
  unknown = sorted(set(options) - set(est.defaults))
  if unknown:
    raise ValueError(
        f"{prefix}{unknown[0]}: not an option of method {method!r}; its options are "
        f"{sorted(est.defaults) or 'none'}")
  return {opt.name: _check_option(method, opt, options.get(opt.name, opt.default), n,
                                  prefix + opt.name)
          for opt in est.options}


def validate_options(options: Any, n: int | None = None, *,
                     field: str = "estimator_options") -> dict[str, dict[str, Any]]:
  """Validates an estimator-options config ``{estimator: {option: value}}`` against the registry.

  The one schema every driver uses for per-estimator options. Each entry is checked as
  :func:`advantages` would check it (unknown estimator, unknown option, bad value, a required
  option missing), at group size ``n`` when given (``truncation <= N``, ``k <= N``) and without
  the ``N``-dependent bounds otherwise. The string ``"N"`` is accepted for the integer options
  bounded by the group size (``truncation``, ``k``) and means "the group size": it is replaced
  by ``n`` when ``n`` is given and left as ``"N"`` otherwise (:func:`resolve_options` and
  :func:`advantages` resolve it later).

  Args:
    options: a mapping (or ``ml_collections.ConfigDict``) ``{estimator: {option: value}}``.
    n: the group size, or ``None``.
    field: the config field holding ``options``, for error messages.

  Returns:
    ``{estimator: {option: value}}`` with the given options only, normalised (ints, floats,
    bools; ``"N"`` resolved when ``n`` is given).

  Raises:
    ValueError: whose message starts with the dotted field, ``f"{field}.{estimator}:"`` or
      ``f"{field}.{estimator}.{option}:"``.
  """
  if n is not None:
    n = _check_int(n, "n", 1, None, "n")
  out = {}
  for method, opts in _as_dict(options, field, "{estimator: {option: value}}").items():
    where = f"{field}.{method}"
    if method not in REGISTRY:
      raise ValueError(f"{where}: unknown estimator {method!r}; expected one of {METHODS}")
    given = _as_dict(opts, where, "{option: value}")
    full = _validated_options(method, n, given, where)
    out[method] = {name: full[name] for name in given}
  return out


def resolve_options(method: Method, options: Mapping[str, Any] | None = None,
                    n: int | None = None, *, field: str | None = None) -> dict[str, Any]:
  """The full options of ``method`` at group size ``n``: defaults filled in, ``"N"`` resolved.

  ``options`` are the method's own options (e.g. ``validate_options(...)[method]``, or ``None``).
  Errors start with ``f"{field}.{method}.{option}:"`` when ``field`` is given (the option's name
  otherwise). With ``n=None`` the ``N``-dependent checks are skipped and ``"N"`` stays.
  """
  if n is not None:
    n = _check_int(n, "n", 1, None, "n")
  given = {} if options is None else _as_dict(options, field or "options", "{option: value}")
  return _validated_options(method, n, given, f"{field}.{method}" if field else None)


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


def _is_static(n) -> bool:
  return isinstance(n, (int, np.integer))


def _grpo(r, k, q2, n, opts: Mapping[str, Any], xp):
  mean = k / n
  var = xp.maximum(q2 / n - mean * mean, 0)
  if opts["std"] == "sample":
    if _is_static(n):
      var = var * (n / (n - 1)) if n > 1 else 0 * var
    else:  # per-rollout group sizes (group_ids): the undefined N = 1 sample std is 0
      var = var * _safe_div(n, n - 1, xp)
  std = xp.where(var > 0, xp.sqrt(xp.where(var > 0, var, 1)), 0)
  return _safe_div(r - mean, std + opts["eps"], xp)


def _kernel(r, k, q2, n, method: str, opts: Mapping[str, Any], xp, logp=None):
  """Advantages from sufficient statistics.

  Args:
    r: per-rollout rewards, ``[..., M]`` (``M = N`` for a group; theory passes ``[0, 1]``).
    k: ``sum_i r_i`` over the group, ``[..., 1]``.
    q2: ``sum_i r_i^2`` over the group, ``[..., 1]`` (equals ``k`` for binary rewards).
    n: the group size ``N``: a static int, or (for :data:`REGISTRY` records without
      ``fixed_group_size``, grouping by ``group_ids``) an array broadcastable against ``r``.
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
    if not _is_static(n):
      return r - _safe_div(k - r, n - 1, xp)  # N = 1: empty leave-one-out mean = 0
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


def _check_method(method: Any) -> Estimator:
  if not isinstance(method, str) or method not in REGISTRY:
    raise ValueError(f"method: unknown estimator {method!r}; expected one of {METHODS}")
  return REGISTRY[method]


def _is_tracer(x: Any) -> bool:
  return isinstance(x, jax.core.Tracer)


def binarize(rewards: Any, threshold: float) -> jax.Array:
  """``1.0`` where ``rewards > threshold``, else ``0.0`` (float32; NaN gives ``0``).

  Turns real-valued (``+-1``, partial-credit, score) rewards into the ``{0, 1}`` rewards that
  the ``"binary"`` methods of :data:`REWARD_DOMAIN` are derived for: e.g. ``threshold=0`` for
  ``+-1`` rewards, ``threshold=0.5`` for partial credit in ``[0, 1]`` where only full credit is
  a success (``threshold=0.99``). Lists and tuples are accepted; traceable.
  """
  t = _check_float(threshold, "binarize", nonnegative=False)
  return (jnp.asarray(rewards) > t).astype(jnp.float32)


def _domain_text(domain: str) -> str:
  return "{0, 1}" if domain == "binary" else "finite reals (no NaN/inf)"


def _reward_error(method: str, count: Any, size: Any, examples: str) -> str:
  domain = REWARD_DOMAIN[method]
  text = (f"rewards: method {method!r} needs rewards in {_domain_text(domain)} "
          f"(REWARD_DOMAIN[{method!r}] = {domain!r}); {count} of {size} values are not, "
          f"e.g. {examples}. ")
  if domain == "binary":
    text += ("Binarise real rewards first: pass binarize=threshold (r > threshold -> 1, else 0), "
             "or use estimators.binarize(rewards, threshold); ")
  else:
    text += "Fix the reward function (non-finite values); "
  return text + "check_rewards=False skips this check."


def _bad_rewards(values, domain: str, xp):
  """Mask of the values outside the reward domain (NaN is outside both)."""
  if domain == "binary":
    return ~((values == 0) | (values == 1))
  return ~xp.isfinite(values)


def _prepare_rewards(rewards: Any, method: str, threshold: Any, check_rewards: Any):
  """Lists -> arrays, ``binarize``, and the reward-domain check (see :func:`advantages`)."""
  if check_rewards is not None and not isinstance(check_rewards, (bool, np.bool_)):
    raise ValueError(f"check_rewards: must be None, True or False, got {check_rewards!r}")
  if isinstance(rewards, (list, tuple)):
    rewards = jnp.asarray(rewards)
  if threshold is not None:
    rewards = binarize(rewards, threshold)
  if check_rewards is False:
    return rewards
  domain = REWARD_DOMAIN[method]
  if not _is_tracer(rewards):
    values = np.asarray(rewards)
    if values.dtype == np.bool_ or (domain == "real" and
                                    np.issubdtype(values.dtype, np.integer)):
      return rewards
    values = values.astype(np.float64)
    bad = _bad_rewards(values, domain, np)
    if np.any(bad):
      examples = "[" + ", ".join(f"{v:.6g}" for v in values[bad][:5]) + "]"
      raise ValueError(_reward_error(method, int(bad.sum()), values.size, examples))
    return rewards
  if check_rewards:
    values = jnp.ravel(rewards)
    if jnp.issubdtype(values.dtype, jnp.bool_):
      return rewards
    values = values.astype(_compute_dtype(values.dtype))
    bad = _bad_rewards(values, domain, jnp)
    size = min(5, values.size)
    first = jnp.nonzero(bad, size=size, fill_value=0)[0]
    count = jnp.sum(bad)
    first = jnp.where(jnp.arange(size) < count, values[first], jnp.nan)  # NaN: no more
    message = _reward_error(method, "{count}", values.size, "{first}")
    message = message.replace("{", "{{").replace("}", "}}")
    message = message.replace("{{count}}", "{count}").replace("{{first}}", "{first}")
    checkify.check(~jnp.any(bad), message, count=count, first=first)
  return rewards


def _num_groups(ids, num_groups: Any) -> int:
  """The static number of segments for ``group_ids``; checks concrete ids lie in range."""
  if num_groups is not None:
    num_groups = _check_int(num_groups, "num_groups", 1, None, "num_groups")
  if _is_tracer(ids):
    if num_groups is None:
      raise ValueError("num_groups: group_ids that are traced (under jit) need a static "
                       "num_groups=G (the number of groups, ids in 0..G-1)")
    return num_groups
  host = np.asarray(ids)
  low, high = int(host.min()), int(host.max())
  if num_groups is None:
    num_groups = high + 1
  if low < 0 or high >= num_groups:
    raise ValueError(f"group_ids: must lie in 0..num_groups-1 = {num_groups - 1}, got values "
                     f"in {low}..{high}")
  return num_groups


def _check_ids_method(method: str) -> None:
  if REGISTRY[method].fixed_group_size:
    supported = tuple(m for m, e in REGISTRY.items() if not e.fixed_group_size)
    raise ValueError(
        f"group_ids: {method} depends on a fixed group size N (its options "
        f"{sorted(REGISTRY[method].defaults)} are bounded by N), so it cannot group rollouts "
        f"by ids into groups of unequal size; group_ids supports {supported}. Use the "
        "contiguous layout (group_size=N) for it.")


def _advantages_by_ids(rewards, group_ids, num_groups: Any, method: str,
                       opts: Mapping[str, Any], logprobs) -> jax.Array:
  """Advantages of flat rewards ``[M]`` grouped by integer ``group_ids`` ``[M]`` (any sizes)."""
  _check_ids_method(method)
  shape = jnp.shape(rewards)
  if len(shape) != 1 or shape[0] < 1:
    raise ValueError(f"rewards: group_ids needs flat rewards [M] with M >= 1, got shape {shape}")
  ids = jnp.asarray(group_ids)
  if ids.shape != shape or not jnp.issubdtype(ids.dtype, jnp.integer):
    raise ValueError(f"group_ids: need integer ids of shape {shape} (one per rollout), got "
                     f"{ids.dtype} {ids.shape}")
  segments = _num_groups(ids, num_groups)
  dtype = _compute_dtype(jnp.result_type(rewards))
  r = jnp.asarray(rewards).astype(dtype)

  def per_group(x):  # the group's sum, for each rollout
    return jax.ops.segment_sum(x, ids, num_segments=segments)[ids]

  k = per_group(r)
  q2 = per_group(r * r) if method in ("grpo", "dsgrpo") else k
  return _apply_kernel(r, k, q2, per_group(jnp.ones_like(r)), method, opts, logprobs)


def _advantages(rewards, method: str, opts: Mapping[str, Any], logprobs) -> jax.Array:
  """:func:`advantages` with options already validated for ``N = rewards.shape[-1]``."""
  shape = jnp.shape(rewards)
  n = _group_size(shape)
  dtype = _compute_dtype(jnp.result_type(rewards))
  r = jnp.asarray(rewards).astype(dtype)
  k = jnp.sum(r, axis=-1, keepdims=True)
  q2 = jnp.sum(r * r, axis=-1, keepdims=True) if method in ("grpo", "dsgrpo") else k
  return _apply_kernel(r, k, q2, n, method, opts, logprobs)


def _apply_kernel(r, k, q2, n, method: str, opts: Mapping[str, Any], logprobs) -> jax.Array:
  """The shared kernel on rewards ``r`` (compute dtype) with their group sums ``k``, ``q2``."""
  logp = None
  if logprobs is not None:
    chex.assert_shape(logprobs, r.shape)
    logp = jnp.asarray(logprobs).astype(r.dtype)
  out = _kernel(r, k, q2, n, method, opts, jnp, logp)
  chex.assert_shape(out, r.shape)
  return out.astype(r.dtype)


def advantages(rewards: chex.Array, method: Method, *, logprobs: chex.Array | None = None,
               binarize: float | None = None, check_rewards: bool | None = None,
               **options: Any) -> jax.Array:
  r"""Per-rollout advantages ``A_i = N a(r_i, K, N)`` of a group estimator.

  Args:
    rewards: ``[..., N]`` rewards (bool/int/float array, or a list/tuple), rollouts on the
      last axis, any number of leading (prompt) axes. ``N >= 1``. In ``{0, 1}`` for the
      methods whose :data:`REWARD_DOMAIN` is ``"binary"``, finite for the others.
    method: one of :data:`METHODS` (see the module docstring for the formulas).
    logprobs: ``[..., N]`` log-probability of each rollout under the sampling policy; needed by
      ``dsgrpo`` and only by it (see below).
    binarize: a threshold: use ``rewards > binarize`` (``1``/``0``, :func:`binarize`) as the
      rewards, e.g. ``0.0`` for ``+-1`` rewards. ``None`` (default): the rewards as given.
    check_rewards: the reward-domain check. ``None`` (default): concrete rewards (not traced:
      eager calls, NumPy arrays, lists) outside the method's domain raise a ``ValueError``
      naming the method, the domain and up to 5 offending values; traced rewards (inside
      ``jit``, ``vmap``, ``grad``, ``scan``) are not checked and cost nothing. ``True``: traced
      rewards are checked too, with ``jax.experimental.checkify.check``, so the function must
      run under ``checkify.checkify`` (e.g. ``checkify.checkify(jax.jit(fn))``, whose error
      value then reports the bad rewards). ``False``: no check (the formula on any values).
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
    ValueError: unknown method or option, bad option value, scalar rewards, ``N = 0``,
      ``logprobs`` missing for (given to) a method that uses (does not use) them, or concrete
      rewards outside the method's :data:`REWARD_DOMAIN` (see ``check_rewards``).
  """
  _check_method(method)
  rewards = _prepare_rewards(rewards, method, binarize, check_rewards)
  n = _group_size(jnp.shape(rewards))
  opts = _validated_options(method, n, options)
  _check_logprobs(method, logprobs)
  return _advantages(rewards, method, opts, logprobs)


def make_advantage_fn(method: Method, *, group_size: int | None = None, flat: bool = False,
                      num_groups: int | None = None, binarize: float | None = None,
                      check_rewards: bool | None = None,
                      **options: Any) -> Callable[..., jax.Array]:
  r"""A ``rewards -> advantages`` function for your own RL loop, options validated once.

  Example (an LLM trainer with ``B`` prompts times ``G`` rollouts, rewards flat ``[B*G]``,
  the rollouts of one prompt contiguous)::

    adv_fn = make_advantage_fn("maxrl", group_size=G, flat=True)   # raises here if invalid
    adv = jax.jit(adv_fn)(rewards)                                  # [B*G] -> [B*G]

  Rollouts grouped by an id per rollout instead (verl's ``index``/uid: groups of any size, in
  any order; ids are ints in ``0..B-1``)::

    adv_fn = make_advantage_fn("maxrl", flat=True, num_groups=B)
    adv = jax.jit(adv_fn)(rewards, group_ids=ids)                   # [M], [M] -> [M]

  A PPO-style trainer keeps its clipped-ratio loss (and KL, entropy terms) and only replaces
  its advantages by ``adv`` (each rollout's value broadcast over its response tokens); an
  on-policy trainer can use :func:`surrogate_loss` (see :data:`AGGREGATIONS`).

  Args:
    method: one of :data:`METHODS`.
    group_size: the number of rollouts per prompt ``N`` of the contiguous layout. Needed for
      ``flat=True`` without ``group_ids``. When given, the options are fully validated now
      (e.g. ``truncation <= N``) and calls check that the rewards have that group size;
      otherwise the ``N``-dependent checks run at the first call (at trace time under
      ``jit``).
    flat: ``False``: rewards ``[..., N]``, rollouts on the last axis. ``True``: rewards
      ``[..., B*N]`` with each prompt's ``N`` rollouts contiguous (``[p0 r0, p0 r1, ...,
      p1 r0, ...]``), or rewards ``[M]`` grouped by ``group_ids``; advantages come back in the
      same layout.
    num_groups: the static number of groups ``G`` for calls with ``group_ids`` (ids in
      ``0..G-1``; groups without rollouts are allowed). Needed when the ids are traced (under
      ``jit``); for concrete ids the default is ``max(ids) + 1``.
    binarize: a threshold: the function uses ``rewards > binarize`` as the rewards (see
      :func:`advantages`).
    check_rewards: the reward-domain check, as for :func:`advantages` (``None``: concrete
      rewards only; ``True``: also traced rewards, under ``checkify.checkify``; ``False``: off).
    **options: the method's options, as for :func:`advantages`.

  Returns:
    ``fn(rewards, logprobs=None, group_ids=None) -> advantages``, pure and traceable (``jit``,
    ``vmap``, ``grad``); ``logprobs`` (same layout as the rewards) only for
    :data:`LOGPROB_METHODS`; ``group_ids`` (``flat=True`` only) an integer array like the
    rewards ``[M]``: the group of each rollout. Per-group ``K``, ``N`` (and ``grpo``'s mean and
    variance) are then segment sums (``jax.ops.segment_sum``), so groups may differ in size;
    the methods whose options need a fixed ``N`` (``maxrl_truncated``, ``maxrl_maclaurin``,
    ``pkpo``) raise a ``ValueError`` there.

  Raises:
    ValueError: at construction, naming the bad argument or option.
  """
  _check_method(method)
  if group_size is not None:
    group_size = _check_int(group_size, "group_size", 1, None, "N")
  if not isinstance(flat, (bool, np.bool_)):
    raise ValueError(f"flat: must be a bool, got {flat!r}")
  if num_groups is not None:
    num_groups = _check_int(num_groups, "num_groups", 1, None, "num_groups")
    if not flat:
      raise ValueError("num_groups: only with flat=True (rewards grouped by group_ids)")
    _check_ids_method(method)
  if flat and group_size is None and num_groups is None:
    raise ValueError("group_size: flat=True needs group_size=N (rollouts per prompt), or "
                     "num_groups=G for rewards grouped by group_ids")
  if binarize is not None:
    _check_float(binarize, "binarize", nonnegative=False)
  if check_rewards is not None and not isinstance(check_rewards, (bool, np.bool_)):
    raise ValueError(f"check_rewards: must be None, True or False, got {check_rewards!r}")
  opts = _validated_options(method, group_size, options)

  def advantage_fn(rewards: chex.Array, logprobs: chex.Array | None = None,
                   group_ids: chex.Array | None = None) -> jax.Array:
    _check_logprobs(method, logprobs)
    rewards = _prepare_rewards(rewards, method, binarize, check_rewards)
    if group_ids is not None:
      if not flat:
        raise ValueError("group_ids: only for flat rewards (make_advantage_fn(..., flat=True))")
      return _advantages_by_ids(rewards, group_ids, num_groups, method, opts, logprobs)
    shape = jnp.shape(rewards)
    if flat:
      if group_size is None:
        raise ValueError("group_ids: this function was made without group_size, so each call "
                         "needs group_ids=[M] (or make it with group_size=N)")
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


def advantages_flat(rewards: chex.Array, group_size: int | None, method: Method, *,
                    logprobs: chex.Array | None = None, group_ids: chex.Array | None = None,
                    num_groups: int | None = None, binarize: float | None = None,
                    check_rewards: bool | None = None, **options: Any) -> jax.Array:
  """:func:`advantages` for the flat layout: contiguous groups, or groups given by ids.

  With ``group_ids=None``: rewards ``[..., B*N]``, each prompt's ``N = group_size`` rollouts
  contiguous; equals ``advantages(rewards.reshape(..., B, N), method).reshape(..., B*N)``.

  With ``group_ids`` (verl's ``index``/uid grouping): rewards ``[M]`` and integer ids ``[M]``,
  the group of each rollout (groups of any size, in any order; ``group_size`` must be
  ``None``); each rollout's ``K``, ``N`` are its group's, computed with segment sums over
  ``num_groups`` segments (static; default ``max(ids) + 1`` for concrete ids). For contiguous
  groups of equal size it equals the contiguous result. Methods whose options need a fixed
  ``N`` (``maxrl_truncated``, ``maxrl_maclaurin``, ``pkpo``) raise a ``ValueError``. See
  :func:`make_advantage_fn` for ``binarize`` and ``check_rewards``.
  """
  if group_ids is not None and group_size is not None:
    raise ValueError(f"group_size: give group_size=None with group_ids (groups are given by the "
                     f"ids and may differ in size), got {group_size!r}")
  if group_ids is None and num_groups is not None:
    raise ValueError("num_groups: only with group_ids")
  if group_ids is not None and num_groups is None:  # max(ids) + 1; traced ids raise here
    num_groups = _num_groups(jnp.asarray(group_ids), None)
  fn = make_advantage_fn(method, group_size=group_size, flat=True, num_groups=num_groups,
                         binarize=binarize, check_rewards=check_rewards, **options)
  return fn(rewards, logprobs, group_ids)


def coefficient_table(method: Method, n: int, *, logprobs: Any = None,
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
                   microbatch_size: int | None = None, num_microbatches: Any = None,
                   **deprecated: Any) -> jax.Array:
  r"""On-policy surrogate loss with a choice of aggregation and an optional entropy bonus.

  With ``sg`` the stop-gradient, ``m`` the mask and ``H`` the token entropies:

  * ``aggregation="sequence_mean"`` (default): mean over prompts and rollouts,

    .. math::  L = -\frac{1}{S} \sum_{b, i} \mathrm{sg}(A_{b,i}) \sum_t m_{b,i,t}
               \log \pi(y_{b,i,t} \mid \cdot), \qquad S = \texttt{num\_sequences}
               \text{ (default } B N\text{)};

    its gradient is ``-mean g`` (see :func:`surrogate_loss_from_logprobs`).
  * ``aggregation="token_mean"``: the sum over the batch of ``-A_i log pi(token)`` over
    response tokens, divided by the number of response tokens (verl's ``"token-mean"`` over
    one batch),

    .. math::  L = -\frac{1}{T} \sum_{b, i, t} \mathrm{sg}(A_{b,i})\, m_{b,i,t}
               \log \pi(y_{b,i,t} \mid \cdot), \qquad T = \texttt{num\_tokens}
               \text{ (default } \textstyle\sum m\text{, at least 1)}.

    Longer responses weigh more; the estimator is ``g`` reweighted by response length.
  * ``aggregation="microbatch_token_mean"`` (``microbatch_size=S`` sequences): the sequences,
    flattened over the leading axes of ``adv`` (``[..., N] -> [B N]``, row-major), are cut into
    ``M`` consecutive micro-batches ``mb`` of ``S`` sequences each, and the loss is the mean over
    micro-batches of each one's token-mean,

    .. math::  L = -\frac{1}{D} \sum_{mb} \frac{\sum_{(b,i) \in mb, t} \mathrm{sg}(A_{b,i})\,
               m_{b,i,t} \log \pi(y_{b,i,t} \mid \cdot)}{\max(\sum_{(b,i) \in mb, t}
               m_{b,i,t},\ 1)}, \qquad D = \texttt{num\_microbatches}
               \text{ (default } M\text{)}.

    This is what verl's actor loss computes with ``loss_agg_mode="token-mean"`` and gradient
    accumulation (``dp_actor.py``: each micro-batch's token-mean divided by the number of
    accumulation steps, then averaged over data-parallel ranks); at the paper's maze shapes (4
    GPUs, 4,096 sequences per micro-batch) it is the mean of 8 per-micro-batch token-means, not
    one global token-mean (a token's weight depends on its micro-batch's token count).
    ``microbatch_size`` equal to the number of sequences gives ``"token_mean"``.

  Entropy bonus: with ``token_entropies`` (e.g. :func:`token_entropy` of the logits, *not*
  under stop-gradient) ``L`` becomes ``L - entropy_coef * E`` with ``E`` the same aggregation of
  the entropies over response tokens (``sum m H / S``, ``sum m H / T``, or the mean over
  micro-batches of ``sum_mb m H / max(sum_mb m, 1)``).

  Gradient accumulation: split the batch into micro-batches and pass the *whole* batch's
  ``num_tokens`` (``sum`` of the full mask) or ``num_sequences`` to every micro-batch; the
  micro-batch losses (and gradients) then sum exactly to the unchunked ones. With the defaults
  each micro-batch is normalised by its own count, which is not the same for ``token_mean``.
  For ``microbatch_token_mean`` give every chunk whole micro-batches (its sequence count a
  multiple of ``microbatch_size``, chunk boundaries on micro-batch boundaries) and the *whole*
  batch's micro-batch count as ``num_microbatches``; the chunk losses then sum exactly to the
  unchunked one.

  Args:
    token_logprobs: ``[..., N, L]`` log-probabilities of the sampled tokens.
    token_mask: ``[..., N, L]`` 1 for response tokens that count, 0 for padding/prompt.
    adv: ``[..., N]`` advantages (e.g. from :func:`advantages`); positional or ``adv=``
      (``advantages_=`` is the deprecated spelling, kept with a DeprecationWarning).
    aggregation: one of :data:`AGGREGATIONS`: ``"sequence_mean"``, ``"token_mean"`` or
      ``"microbatch_token_mean"``.
    num_tokens: normaliser of ``token_mean`` (scalar, may be traced).
    num_sequences: normaliser of ``sequence_mean`` (scalar, may be traced).
    token_entropies: ``[..., N, L]`` per-token entropies, or ``None``.
    entropy_coef: weight of the entropy bonus (needs ``token_entropies`` when nonzero).
    microbatch_size: sequences per micro-batch ``S`` of ``microbatch_token_mean`` (a static
      int that divides the number of sequences; required there, only there).
    num_microbatches: divisor ``D`` of ``microbatch_token_mean`` (scalar, may be traced;
      default the number of micro-batches in the inputs).

  Returns:
    A scalar (float32 or wider).

  Raises:
    ValueError: unknown aggregation, a normaliser that does not belong to it, a
      ``microbatch_size`` that is missing, not a positive int or does not divide the number of
      sequences, or ``entropy_coef != 0`` without ``token_entropies``.
  """
  adv = _resolve_adv(adv, deprecated, "surrogate_loss")
  if aggregation not in AGGREGATIONS:
    raise ValueError(f"aggregation: must be one of {AGGREGATIONS}, got {aggregation!r}")
  if aggregation != "token_mean" and num_tokens is not None:
    raise ValueError(f"num_tokens: only for aggregation='token_mean' ({aggregation} takes "
                     f"{_NORMALISER[aggregation]})")
  if aggregation != "sequence_mean" and num_sequences is not None:
    raise ValueError(f"num_sequences: only for aggregation='sequence_mean' ({aggregation} "
                     f"takes {_NORMALISER[aggregation]})")
  if aggregation != "microbatch_token_mean":
    for name, value in (("microbatch_size", microbatch_size),
                        ("num_microbatches", num_microbatches)):
      if value is not None:
        raise ValueError(f"{name}: only for aggregation='microbatch_token_mean' "
                         f"({aggregation} takes {_NORMALISER[aggregation]})")
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
  ent = None
  if token_entropies is not None:
    chex.assert_equal_shape([token_logprobs, token_entropies])
    ent = jnp.asarray(token_entropies).astype(dtype)
  if aggregation == "microbatch_token_mean":
    return _microbatch_token_mean(logp.astype(dtype), mask, a, ent, coef, microbatch_size,
                                  num_microbatches, dtype)
  if aggregation == "sequence_mean":
    count = _normaliser(num_sequences, jnp.asarray(a.size), "num_sequences", dtype)
  else:
    total = jnp.sum(mask)
    count = _normaliser(num_tokens, jnp.where(total > 0, total, 1), "num_tokens", dtype)
  loss = -jnp.sum(a[..., None] * mask * logp.astype(dtype)) / count
  if ent is not None:
    loss = loss - coef * jnp.sum(mask * ent) / count
  return loss


_NORMALISER = {"sequence_mean": "num_sequences", "token_mean": "num_tokens",
               "microbatch_token_mean": "microbatch_size and num_microbatches"}


def _microbatch_token_mean(logp, mask, a, ent, coef: float, microbatch_size: Any,
                           num_microbatches: Any, dtype) -> jax.Array:
  """``aggregation="microbatch_token_mean"`` of :func:`surrogate_loss` (inputs validated)."""
  num_seq = a.size
  if microbatch_size is None:
    raise ValueError("microbatch_size: aggregation='microbatch_token_mean' needs "
                     "microbatch_size=S (sequences per micro-batch)")
  size = _check_int(microbatch_size, "microbatch_size", 1, None, "S")
  if num_seq % size:
    raise ValueError(f"microbatch_size: {size} does not divide the number of sequences "
                     f"{num_seq} (adv shape {a.shape})")
  count = num_seq // size
  length = logp.shape[-1]
  split = (count, size, length)
  logp, mask = jnp.reshape(logp, split), jnp.reshape(mask, split)
  a = jnp.reshape(a, (count, size, 1))
  tokens = jnp.sum(mask, axis=(1, 2))
  tokens = jnp.where(tokens > 0, tokens, 1)
  per_mb = -jnp.sum(a * mask * logp, axis=(1, 2)) / tokens
  if ent is not None:
    per_mb = per_mb - coef * jnp.sum(mask * jnp.reshape(ent, split), axis=(1, 2)) / tokens
  divisor = _normaliser(num_microbatches, jnp.asarray(count), "num_microbatches", dtype)
  return jnp.sum(per_mb) / divisor
