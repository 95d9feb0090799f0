"""Configurations of the toy Bernoulli policy driver (not in the paper).

Presets: ``smoke`` (seconds; tests), ``cpu`` (the full default grid, N = 1..1024, about a minute
or two on 2 CPU cores), ``paper`` (more prompts, seeds and steps; an accelerator is comfortable).
Select one with ``--config=experiments/bernoulli/config.py:cpu`` and override fields with e.g.
``--config.num_prompts=512 --config.tabular.optimizer=adam``.
"""

from __future__ import annotations

import ml_collections

# The sampled estimators run on the grid by default (names of maxrl_jax.estimators.METHODS).
DEFAULT_ESTIMATORS = ("reinforce", "mean_baseline", "rloo", "grpo", "maxrl", "maxrl_keep_cv",
                      "maxrl_no_cv", "maxrl_maclaurin", "pkpo")


def _powers_of_two(max_n: int) -> tuple[int, ...]:
  out, n = [], 1
  while n <= max_n:
    out.append(n)
    n *= 2
  return tuple(out)


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
  """Returns the configuration of ``preset`` (``paper``, ``cpu`` or ``smoke``)."""
  if preset not in ("paper", "cpu", "smoke"):
    raise ValueError(f"unknown preset {preset!r}; expected 'paper', 'cpu' or 'smoke'")
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.seed = 0
  # Problem: M prompts with initial pass rates on a geometric grid in [min, max].
  c.num_prompts = 64
  c.initial_pass_rate_min = 1e-4
  c.initial_pass_rate_max = 0.9
  # Which prompts count as "hardest decile": this fraction with the lowest initial pass rate.
  c.hardest_fraction = 0.1
  c.policies = ("tabular", "logistic")

  # Optimisers: any optax constructor taking learning_rate (sgd, adam, adamw, rmsprop, ...).
  # Objectives are means over prompts, so each tabular logit gets 1/M of the gradient: the tabular
  # optimiser's learning rate is learning_rate * num_prompts (a per-prompt step size).
  c.tabular = ml_collections.ConfigDict()
  c.tabular.optimizer = "sgd"
  c.tabular.learning_rate = 0.5
  c.tabular.optimizer_kwargs = ml_collections.ConfigDict()
  c.logistic = ml_collections.ConfigDict()
  c.logistic.optimizer = "sgd"
  c.logistic.learning_rate = 20.0
  c.logistic.optimizer_kwargs = ml_collections.ConfigDict()
  c.logistic.num_features = 8
  c.logistic.feature_scale = 1.0

  c.num_steps = 200
  c.chunk_steps = 50  # steps per jitted lax.scan call (and per metrics.jsonl line)

  # Sampled runs: every estimator at every N, `num_seeds` seeds each.
  c.sampled = ml_collections.ConfigDict()
  c.sampled.estimators = DEFAULT_ESTIMATORS
  c.sampled.num_rollouts = _powers_of_two(1024)
  c.sampled.num_seeds = 3
  # Options per estimator name, passed to maxrl_jax.estimators.advantages.
  # "N" stands for each group's size: maxrl_maclaurin (the authors' Maclaurin estimator) of
  # grad J^(N), like maxrl_keep_cv with another variance; pkpo of grad pass@N.
  c.sampled.options = ml_collections.ConfigDict({"grpo": {"std": "population", "eps": 1e-6},
                                                 "maxrl_maclaurin": {"truncation": "N"},
                                                 "pkpo": {"k": "N"}})

  # Exact-gradient runs: each sampled estimator's exact expected gradient at each N, and the
  # truncated objectives J^(T) (T = inf is exact ML; T = 1 is RL).
  c.exact = ml_collections.ConfigDict()
  c.exact.estimators = DEFAULT_ESTIMATORS
  c.exact.truncations = _powers_of_two(1024) + (float("inf"),)

  c.metrics = ml_collections.ConfigDict()
  c.metrics.pass_at_k = (1, 8, 64)

  # Estimator analysis at the initial tabular policy (weights, Figure 8 shape, variance vs N).
  c.analysis = ml_collections.ConfigDict()
  c.analysis.num_repeats = 32  # Monte Carlo repeats per (estimator, N) for the empirical variance
  c.analysis.weight_num_rollouts = 16  # N of the weight-vs-pass-rate figure
  c.analysis.weight_grid_points = 200  # points of the exact weight curves on p in [1e-4, 1)

  c.figures = ml_collections.ConfigDict()
  c.figures.num_rollouts = 16  # N shown in the training-curve figures
  # On CPU, compile with XLA's backend optimisation level 0: the grid's many small kernels then
  # compile about 3x faster and run as fast (measured on the cpu preset).
  c.fast_cpu_compile = True
  c.checkpoint_every = 0  # steps between checkpoints; 0 = only the final one

  if preset == "smoke":
    c.num_prompts = 16
    c.num_steps = 20
    c.chunk_steps = 10
    c.sampled.num_rollouts = (1, 2, 4, 8)
    c.sampled.num_seeds = 2
    c.exact.truncations = (1, 2, 4, 8, float("inf"))
    c.analysis.num_repeats = 8
    c.analysis.weight_num_rollouts = 4
    c.analysis.weight_grid_points = 50
    c.figures.num_rollouts = 4
  elif preset == "paper":
    c.num_prompts = 1024
    c.num_steps = 2000
    c.chunk_steps = 100
    c.sampled.num_seeds = 8
    c.analysis.num_repeats = 256
    c.analysis.weight_num_rollouts = 128
    c.figures.num_rollouts = 64
  return c
