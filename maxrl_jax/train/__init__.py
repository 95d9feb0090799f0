"""Shared training infrastructure: device mesh, checkpoints, metrics/progress, the host loop.

Modules: :mod:`~maxrl_jax.train.mesh`, :mod:`~maxrl_jax.train.checkpoint`,
:mod:`~maxrl_jax.train.logs`, :mod:`~maxrl_jax.train.loop`, :mod:`~maxrl_jax.train.errors`, and
:mod:`~maxrl_jax.train.toy` (a small reference problem that exercises all of them).
"""

from maxrl_jax.train.errors import ConfigError, NonFiniteError, require

__all__ = ["ConfigError", "NonFiniteError", "require"]
