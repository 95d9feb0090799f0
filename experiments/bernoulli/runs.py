"""The runs of the Bernoulli grid and their names.

Per policy (``config.policies``) three families train from the same initial pass rates
(:mod:`experiments.bernoulli.steps`): ``sampled`` (estimator ``e`` at group size ``N``, seeds
``0 .. sampled.num_seeds - 1``), ``exact_estimator`` (the same ``(e, N)`` with its exact expected
gradient) and ``exact_truncated`` (the exact gradient of ``J^(T)``; ``T = inf`` is maximum
likelihood). A run's label is ``<e>_n<N>`` or ``T<T>`` / ``ml`` (:func:`run_label`); its logged
scalars are ``<policy>/<sampled|exact>/<label>/<metric>``.
"""

from __future__ import annotations

import math
from typing import Any

from experiments.common import grid as grid_common
from experiments.common import options as options_lib

FAMILIES = ("sampled", "exact_estimator", "exact_truncated")


def sampled_seeds(config) -> tuple[int, ...]:
  """The seeds of every sampled run (``0 .. sampled.num_seeds - 1``; they share one vmap)."""
  return grid_common.seeds(range(int(config.sampled.num_seeds)))


def estimator_options(config, name: str, n: int | None = None) -> dict[str, Any]:
  """Options of estimator ``name`` from ``config.sampled.options`` (empty if none), validated by
  the estimator registry (:mod:`experiments.common.options`).

  An option value ``"N"`` stands for the group size ``n`` (e.g. ``maxrl_maclaurin`` with
  ``truncation="N"`` estimates grad J^(N), ``pkpo`` with ``k="N"`` grad pass@N), so one grid
  can run these estimators at every N.
  """
  return options_lib.of(config.sampled.options, name, n, field="config.sampled.options")


def truncation_label(t) -> str:
  return "ml" if t == math.inf else f"T{int(t)}"


def run_label(estimator: str, n: int) -> str:
  """``<estimator>_n<N>``: the label of a sampled or exact-estimator run."""
  return f"{estimator}_n{int(n)}"


def scalar_prefix(policy: str, family: str, label: str) -> str:
  """``<policy>/<sampled|exact>/<label>``: the prefix of a run's logged scalars."""
  return f"{policy}/{'sampled' if family == 'sampled' else 'exact'}/{label}"
