"""The one estimator-options schema of every driver, ``{estimator: {option: value}}``, checked by
the estimator registry (:func:`maxrl_jax.estimators.validate_options`) and reported as a
:class:`~maxrl_jax.train.errors.ConfigError` naming the field.

The string ``"N"`` as an option value (``truncation``, ``k``) means the group size: it stays
``"N"`` when no ``n`` is given and becomes ``n`` otherwise (the Bernoulli grid runs
``pkpo`` with ``k = N`` at every N).
"""

from __future__ import annotations

from typing import Any

from maxrl_jax import estimators
from maxrl_jax.train.errors import ConfigError


def validate(options: Any, n: int | None = None, *, field: str) -> dict[str, dict[str, Any]]:
  """``estimators.validate_options(options, n, field=field)``; a ConfigError (its field: the
  dotted option, e.g. ``config.estimators.maxrl.eps``) instead of a ValueError."""
  try:
    return estimators.validate_options(options if options is not None else {}, n, field=field)
  except ValueError as e:
    where, sep, message = str(e).partition(": ")
    raise (ConfigError(where, message) if sep else ConfigError(field, str(e))) from e


def of(options: Any, method: str, n: int | None = None, *, field: str) -> dict[str, Any]:
  """The options given for ``method`` (validated; ``"N"`` resolved at ``n``), ``{}`` if none."""
  return validate(options, n, field=field).get(method, {})
