r"""MaxRL (and every group estimator of :mod:`maxrl_jax.estimators`) inside google-tunix.

google-tunix (``pip install google-tunix``; tested with 0.1.7) trains LLMs with GRPO-family
learners (``tunix.GRPOLearner`` and its DAPO subclass, ``tunix.AgenticGRPOLearner``; Dr. GRPO
fixes its estimator to tunix's ``"drgrpo"``). After the rollouts of a step they look up the
name in the config field ``GRPOConfig.advantage_estimator`` in ``tunix.rl.function_registry``
and call it as

.. code-block:: python

  advantages = estimator(rewards=rewards, num_generations=config.num_generations)

with ``rewards`` a float64 NumPy array ``[B*G]`` (the sum of the reward functions for each
rollout, each prompt's ``G = num_generations`` rollouts contiguous) and expect per-rollout
advantages of the same shape, which the learner broadcasts over each rollout's tokens in its
clipped GRPO loss. :func:`register` puts every estimator of :data:`estimators.METHODS` there
under ``"maxrl_jax/<method>"``; the MaxRL one (paper section 3, Algorithm 1) computes, per
group with ``K = sum_i r_i`` successes among ``N = G`` binary rewards,

.. math::  A_i = N r_i / K - 1 \quad (K > 0), \qquad A_i = 0 \quad (K = 0),

so ``E[sum_i A_i grad log pi(z_i)] / N = grad J^(N-1)``, the truncated maximum-likelihood
objective (paper section 2). Usage::

  from maxrl_jax.integrations import tunix as maxrl_tunix
  maxrl_tunix.register()                       # "maxrl_jax/maxrl", "maxrl_jax/grpo", ...
  config = tunix.GRPOConfig(num_generations=8, advantage_estimator="maxrl_jax/maxrl", ...)

Estimators with options: ``register(pkpo={"k": 4}, maxrl_truncated={"truncation": 4})``;
``register(maxrl={"binarize": 0.5})`` counts a summed reward ``> 0.5`` as a success (the MaxRL
family is derived for binary rewards; other rewards raise ``ValueError`` at tunix's first step).

What tunix's calling convention does not carry (so what this adapter cannot offer):

* ``dsgrpo`` needs each rollout's log-probability; tunix passes only ``rewards`` and
  ``num_generations``, so it is not registered (asking for it raises ``ValueError``).
* ``maxrl_truncated`` / ``maxrl_maclaurin`` need ``truncation=T``; with ``methods=None`` they are
  registered only when their ``truncation`` is given (they have no default).
* Groups are contiguous and of equal size ``num_generations`` (tunix's layout); the PPO learner's
  ``"gae"`` slot has another signature (values, mask, gamma) and cannot take these estimators.
* tunix's own ``"grpo"`` uses the sample std (``ddof=1``); ``"maxrl_jax/grpo"`` defaults to the
  population std. ``register(grpo={"std": "sample"})`` matches tunix's values.

Nothing here imports tunix until :func:`register` is called; :func:`tunix_advantages` and
:class:`TunixAdvantageEstimator` (the conversion, testable without tunix) need only JAX.
"""

from __future__ import annotations

import importlib
from typing import Any, Iterable, Mapping

import jax
import numpy as np

from maxrl_jax import estimators

__all__ = [
    "DEFAULT_PREFIX",
    "TUNIX_REQUIREMENT",
    "TunixAdvantageEstimator",
    "estimator_name",
    "register",
    "supported_methods",
    "tunix_advantages",
]

DEFAULT_PREFIX = "maxrl_jax"
# The oldest google-tunix this adapter was run against (BUILD_NOTES.md, "tunix adapter").
TUNIX_REQUIREMENT = "google-tunix>=0.1.7"

_INSTALL_HINT = ("maxrl_jax.integrations.tunix needs google-tunix, which is not installed: "
                 "pip install 'maxrl_jax[tunix]' (or pip install 'google-tunix>=0.1.7')")


def supported_methods() -> tuple[str, ...]:
  """The estimators tunix can call: :data:`estimators.METHODS` less those needing log-probs."""
  return tuple(m for m in estimators.METHODS if m not in estimators.LOGPROB_METHODS)


def estimator_name(method: str, prefix: str = DEFAULT_PREFIX) -> str:
  """The tunix registry name of ``method``: ``"<prefix>/<method>"``."""
  return f"{prefix}/{method}"


def _as_array(rewards: Any) -> Any:
  """JAX arrays pass through (no host copy); anything else becomes a NumPy array."""
  return rewards if isinstance(rewards, jax.Array) else np.asarray(rewards)


class TunixAdvantageEstimator:
  """A tunix advantage estimator ``(rewards, num_generations) -> advantages`` for one method.

  ``rewards``: ``[..., B*G]`` (tunix passes a 1-D float64 NumPy array), each prompt's
  ``G = num_generations`` rollouts contiguous. Returns a NumPy array of the same shape, float32
  (float64 when JAX runs with x64), ``A`` of :func:`maxrl_jax.estimators.advantages` for each
  group. The method and its options are validated when the estimator is built; the options that
  depend on ``N = num_generations`` (``truncation``, ``pkpo``'s ``k``) at the first call with a
  new ``num_generations``. The computation runs eagerly on concrete rewards (tunix calls it
  outside ``jit``; a handful of small array ops per step).
  """

  def __init__(self, method: str, **options: Any):
    if method in estimators.LOGPROB_METHODS:
      raise ValueError(
          f"method: {method!r} needs each rollout's log-probability, but tunix calls advantage "
          f"estimators with (rewards, num_generations) only; use one of {supported_methods()}")
    estimators.make_advantage_fn(method, **options)   # validates the N-independent options
    self.method = method
    self.options = dict(options)
    self._fns: dict[int, Any] = {}

  def _fn(self, num_generations: int):
    fn = self._fns.get(num_generations)
    if fn is None:
      fn = estimators.make_advantage_fn(self.method, group_size=num_generations, flat=True,
                                        **self.options)
      self._fns[num_generations] = fn
    return fn

  def __call__(self, rewards: Any, num_generations: int) -> np.ndarray:
    if (isinstance(num_generations, bool)
        or not isinstance(num_generations, (int, np.integer)) or num_generations < 1):
      raise ValueError(f"num_generations: must be an int >= 1, got {num_generations!r}")
    num_generations = int(num_generations)
    r = _as_array(rewards)
    shape = np.shape(r)
    if len(shape) == 0 or shape[-1] % num_generations:
      raise ValueError(
          f"rewards: tunix's flat [B*G] rewards must have a last axis divisible by "
          f"num_generations = {num_generations}, got shape {shape}")
    return np.asarray(self._fn(num_generations)(r))

  def same_as(self, other: Any) -> bool:
    """Whether ``other`` is an estimator of this class with the same method and options."""
    return (isinstance(other, TunixAdvantageEstimator) and other.method == self.method
            and other.options == self.options)

  def __repr__(self) -> str:
    opts = "".join(f", {k}={v!r}" for k, v in sorted(self.options.items()))
    return f"TunixAdvantageEstimator({self.method!r}{opts})"


def tunix_advantages(rewards: Any, num_generations: int, method: str = "maxrl",
                     **options: Any) -> np.ndarray:
  """What ``"maxrl_jax/<method>"`` returns inside tunix, for flat ``[B*G]`` rewards.

  Equals ``np.asarray(estimators.advantages_flat(rewards, num_generations, method, **options))``;
  e.g. ``tunix_advantages([1, 0, 0, 0, 1, 1, 0, 0], 4)`` gives MaxRL's ``N r_i/K - 1``:
  ``[3, -1, -1, -1, 1, 1, -1, -1]``.
  """
  return TunixAdvantageEstimator(method, **options)(rewards, num_generations)


def _function_registry():
  """``tunix.rl.function_registry``, imported on first use (an optional dependency: the
  ``tunix`` extra, not the core or ``data`` ones that tests/test_packaging.py checks)."""
  try:
    return importlib.import_module("tunix.rl.function_registry")
  except ImportError as err:
    raise ImportError(_INSTALL_HINT) from err


def _choose(methods: str | Iterable[str] | None,
            options: Mapping[str, Any]) -> dict[str, TunixAdvantageEstimator]:
  """The estimators to register, built (so validated) before anything is registered."""
  for name, opts in options.items():
    if name not in estimators.METHODS:
      raise ValueError(f"{name}: not an estimator; per-method options are keyed by one of "
                       f"{estimators.METHODS}, e.g. register(pkpo={{'k': 4}})")
    if not isinstance(opts, Mapping):
      raise ValueError(f"{name}: options must be a dict of {name}'s options, got {opts!r}")
  if methods is None:
    chosen: dict[str, TunixAdvantageEstimator] = {}
    for m in supported_methods():
      if m in options:
        chosen[m] = TunixAdvantageEstimator(m, **options[m])
        continue
      try:
        chosen[m] = TunixAdvantageEstimator(m)
      except ValueError:   # a required option (truncation) not given: not registered
        continue
    for m in sorted(set(options) - set(chosen)):   # e.g. dsgrpo: say why it cannot be
      TunixAdvantageEstimator(m, **options[m])
    return chosen
  names = (methods,) if isinstance(methods, str) else tuple(methods)
  if not names:
    raise ValueError("methods: empty; pass None for every supported estimator")
  for m in names:
    if m not in estimators.METHODS:
      raise ValueError(f"methods: unknown estimator {m!r}; expected some of {estimators.METHODS}")
  extra = sorted(set(options) - set(names))
  if extra:
    raise ValueError(f"{extra[0]}: options given for an estimator not in methods={names}")
  return {m: TunixAdvantageEstimator(m, **options.get(m, {})) for m in names}


def register(prefix: str = DEFAULT_PREFIX, methods: str | Iterable[str] | None = None,
             **options: Mapping[str, Any]) -> tuple[str, ...]:
  """Registers the group estimators in tunix's advantage-estimator registry.

  Args:
    prefix: registry names are ``"<prefix>/<method>"`` (default ``"maxrl_jax/maxrl"``, ...).
    methods: a method name or names of :data:`estimators.METHODS`; ``None`` registers every one
      that tunix can call (:func:`supported_methods`) and whose options are complete:
      ``maxrl_truncated`` / ``maxrl_maclaurin`` only when their ``truncation`` is given.
    **options: per method, a dict of its options (as for
      :func:`maxrl_jax.estimators.advantages`), e.g. ``grpo={"std": "sample"}``,
      ``pkpo={"k": 4}``, ``maxrl_truncated={"truncation": 4}``.

  Idempotent: a name already registered with the same method and options is left as it is;
  with other options it is replaced (tunix logs that it overwrites it).

  Returns:
    The registered names, in :data:`estimators.METHODS` order (select one with
    ``GRPOConfig(advantage_estimator=name)``).

  Raises:
    ImportError: google-tunix is not installed (the message says how to install it).
    ValueError: unknown method or option, bad option value, a method tunix cannot call; raised
      before anything is registered.
  """
  if not isinstance(prefix, str) or not prefix:
    raise ValueError(f"prefix: must be a non-empty str, got {prefix!r}")
  chosen = _choose(methods, options)
  registry = _function_registry()
  names = []
  for method in estimators.METHODS:
    if method not in chosen:
      continue
    est, name = chosen[method], estimator_name(method, prefix)
    try:
      existing = registry.get_advantage_estimator(name)
    except LookupError:
      existing = None
    if not est.same_as(existing):
      registry.register_advantage_estimator(name)(est)
    names.append(name)
  return tuple(names)
