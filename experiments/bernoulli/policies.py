r"""Bernoulli policies over ``M`` prompts: a tabular policy and a shared-parameter logistic one.

A prompt ``x`` is solved by one rollout with probability ``p_theta(x) = sigmoid(l_theta(x))``.
A rollout is just its reward ``r ~ Bernoulli(p)``, so

.. math::  \log \pi_\theta(r \mid x) = r \log p + (1 - r) \log(1 - p),
           \qquad S = \nabla_\theta \log \pi_\theta(r|x) = (r - p)\, \nabla_\theta l_\theta(x),

and ``grad p = p (1 - p) grad l``. The exact gradient of any objective ``E_x[f(p(x))]`` is
therefore ``E_x[f'(p) p (1 - p) grad l]``, which the driver writes with the logit-space
coefficient ``c(x) = f'(p) p (1-p)`` as the surrogate ``-E_x[sg(c(x)) l_theta(x)]``.

* :class:`TabularPolicy`: every prompt has its own logit, ``l_theta(x) = theta_x``. Objectives
  do not compete: each prompt moves only by its own gradient.
* :class:`LogisticPolicy`: ``l_theta(x) = b_x + <theta, phi(x)>`` with fixed prompt features
  ``phi(x) in R^d`` (``d < M``, no constant feature) and a fixed per-prompt offset
  ``b_x = logit(p_0(x))`` (the "base model", so both policies start from the same pass
  rates). The shared ``theta`` starts at 0; one update moves every prompt, and with more
  prompts than features no ``theta`` raises every logit, so objectives compete for capacity.

Initial pass rates are spread log-uniformly (a geometric grid) between ``p_min`` and ``p_max``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

Params = Any


def initial_pass_rates(num_prompts: int, p_min: float, p_max: float) -> np.ndarray:
  """``p_0`` on a geometric grid from ``p_min`` to ``p_max`` (float64, ascending)."""
  return np.geomspace(p_min, p_max, num_prompts)


def logit(p: np.ndarray) -> np.ndarray:
  """``log(p / (1 - p))`` in float64."""
  p = np.asarray(p, np.float64)
  return np.log(p) - np.log1p(-p)


@dataclasses.dataclass(frozen=True, eq=False)
class TabularPolicy:
  """One free logit per prompt: ``l_theta(x) = theta_x``."""

  initial_logits: np.ndarray  # [M] float64

  name = "tabular"

  @property
  def num_prompts(self) -> int:
    return int(self.initial_logits.shape[0])

  def init(self) -> Params:
    return {"logits": jnp.asarray(self.initial_logits, jnp.float32)}

  def logits(self, params: Params) -> jax.Array:
    """``[M]`` logits."""
    return params["logits"]


@dataclasses.dataclass(frozen=True, eq=False)
class LogisticPolicy:
  """Shared logistic policy: ``l_theta(x) = b_x + <theta, phi(x)>``, ``theta_0 = 0``."""

  offsets: np.ndarray  # [M] float64, logit(p_0)
  features: np.ndarray  # [M, d] float64

  name = "logistic"

  @property
  def num_prompts(self) -> int:
    return int(self.offsets.shape[0])

  def init(self) -> Params:
    return {"theta": jnp.zeros((self.features.shape[1],), jnp.float32)}

  def logits(self, params: Params) -> jax.Array:
    """``[M]`` logits."""
    theta = params["theta"]
    chex.assert_shape(theta, (self.features.shape[1],))
    return jnp.asarray(self.offsets, jnp.float32) + jnp.asarray(self.features, jnp.float32) @ theta


def make_features(num_prompts: int, num_features: int, scale: float, seed: int) -> np.ndarray:
  """``phi(x) ~ N(0, (scale^2/d) I_d)`` i.i.d. over prompts, so ``|phi(x)| ~ scale``."""
  rng = np.random.default_rng(seed)
  return rng.normal(size=(num_prompts, num_features)) * (scale / np.sqrt(num_features))


def make_policy(name: str, config) -> TabularPolicy | LogisticPolicy:
  """The policy ``name`` (``"tabular"`` or ``"logistic"``) for ``config`` (see config.py)."""
  p0 = initial_pass_rates(config.num_prompts, config.initial_pass_rate_min,
                          config.initial_pass_rate_max)
  if name == "tabular":
    return TabularPolicy(initial_logits=logit(p0))
  if name == "logistic":
    feats = make_features(config.num_prompts, config.logistic.num_features,
                          config.logistic.feature_scale, config.seed)
    return LogisticPolicy(offsets=logit(p0), features=feats)
  raise ValueError(f"unknown policy {name!r}")


def rollout_log_probs(logits: jax.Array, rewards: jax.Array) -> jax.Array:
  """``log pi(r|x)`` for rewards ``[M, N]`` given logits ``[M]``: ``r log p + (1-r) log(1-p)``."""
  l = logits[:, None]
  return rewards * jax.nn.log_sigmoid(l) + (1.0 - rewards) * jax.nn.log_sigmoid(-l)
