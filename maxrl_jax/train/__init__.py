"""Shared training infrastructure: device mesh, checkpoints, metrics/progress, the host loop.

Modules: :mod:`~maxrl_jax.train.mesh`, :mod:`~maxrl_jax.train.checkpoint`,
:mod:`~maxrl_jax.train.logs`, :mod:`~maxrl_jax.train.loop`, :mod:`~maxrl_jax.train.errors`,
:mod:`~maxrl_jax.train.files` (epath I/O, workdir lock), :mod:`~maxrl_jax.train.stage` (one
stage's lifecycle, ``run_stage``), :mod:`~maxrl_jax.train.entry` (the drivers' entry point),
:mod:`~maxrl_jax.train.state` (the train state) and :mod:`~maxrl_jax.train.optim` (the optimiser
factory every driver builds its optax chain with). ``examples/toy_trainer.py`` is a minimal
example of the infrastructure.
"""

from maxrl_jax.train.errors import ConfigError, NonFiniteError, require

__all__ = ["ConfigError", "NonFiniteError", "require"]
