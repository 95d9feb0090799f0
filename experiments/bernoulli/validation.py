"""Checks of a Bernoulli config before anything is compiled: :func:`validate`.

Every error is a :class:`~maxrl_jax.train.errors.ConfigError` naming the first invalid field.
"""

from __future__ import annotations

import math

import optax

from experiments.common import options as options_lib
from maxrl_jax import estimators
from maxrl_jax.train.errors import require


def validate(config) -> None:
  """Raises ConfigError naming the first invalid field (before anything is compiled)."""
  require(config.num_prompts >= 2, "config.num_prompts", f"must be >= 2, got {config.num_prompts}")
  require(0.0 < config.initial_pass_rate_min <= config.initial_pass_rate_max < 1.0,
          "config.initial_pass_rate_min",
          "need 0 < initial_pass_rate_min <= initial_pass_rate_max < 1, got "
          f"{config.initial_pass_rate_min}, {config.initial_pass_rate_max}")
  require(0.0 < config.hardest_fraction <= 1.0, "config.hardest_fraction",
          f"must be in (0, 1], got {config.hardest_fraction}")
  require(len(config.policies) >= 1 and set(config.policies) <= {"tabular", "logistic"},
          "config.policies", f"must be a non-empty subset of (tabular, logistic), "
          f"got {tuple(config.policies)}")
  for name in config.policies:
    pc = config[name]
    require(hasattr(optax, pc.optimizer) and callable(getattr(optax, pc.optimizer)),
            f"config.{name}.optimizer", f"not an optax optimiser: {pc.optimizer!r}")
    require(pc.learning_rate > 0, f"config.{name}.learning_rate",
            f"must be > 0, got {pc.learning_rate}")
  require(config.logistic.num_features >= 1, "config.logistic.num_features",
          f"must be >= 1, got {config.logistic.num_features}")
  require(isinstance(config.seed, int) and config.seed >= 0, "config.seed",
          f"must be an int >= 0, got {config.seed!r}")
  require(config.num_steps >= 1, "config.num_steps", f"must be >= 1, got {config.num_steps}")
  require(config.chunk_steps >= 1 and config.num_steps % config.chunk_steps == 0,
          "config.chunk_steps",
          f"must be >= 1 and divide num_steps={config.num_steps}, got {config.chunk_steps}")
  require(config.checkpoint_every >= 0 and config.checkpoint_every % config.chunk_steps == 0,
          "config.checkpoint_every",
          f"must be 0 or a multiple of chunk_steps={config.chunk_steps}, "
          f"got {config.checkpoint_every}")
  ns = tuple(config.sampled.num_rollouts)
  require(len(ns) >= 1 and all(isinstance(n, int) and n >= 1 for n in ns)
          and len(set(ns)) == len(ns), "config.sampled.num_rollouts",
          f"must be distinct ints >= 1, got {ns}")
  require(config.sampled.num_seeds >= 1, "config.sampled.num_seeds",
          f"must be >= 1, got {config.sampled.num_seeds}")
  for field in ("sampled", "exact"):
    names = tuple(config[field].estimators)
    require(len(set(names)) == len(names), f"config.{field}.estimators",
            f"must be distinct names (may be empty), got {names}")
    for name in names:
      require(name in estimators.METHODS, f"config.{field}.estimators",
              f"unknown estimator {name!r}; expected names from {estimators.METHODS}")
  for n in ns:  # The options at every N (e.g. maxrl_truncated's truncation <= N).
    options_lib.validate(config.sampled.options, n, field="config.sampled.options")
  ts = tuple(config.exact.truncations)
  require(all(t == math.inf or (float(t) == int(t) and t >= 1) for t in ts),
          "config.exact.truncations", f"must be ints >= 1 or inf, got {ts}")
  ks = tuple(config.metrics.pass_at_k)
  require(len(ks) >= 1 and all(isinstance(k, int) and k >= 1 for k in ks),
          "config.metrics.pass_at_k", f"must be ints >= 1, got {ks}")
  require(config.figures.num_rollouts in ns, "config.figures.num_rollouts",
          f"must be one of config.sampled.num_rollouts={ns}, got {config.figures.num_rollouts}")
  require(config.analysis.num_repeats >= 2, "config.analysis.num_repeats",
          f"must be >= 2, got {config.analysis.num_repeats}")
  require(config.analysis.weight_num_rollouts >= 1, "config.analysis.weight_num_rollouts",
          f"must be >= 1, got {config.analysis.weight_num_rollouts}")
