"""maxrl_jax: Maximum Likelihood Reinforcement Learning (MaxRL) in JAX/Flax.

Modules:
  estimators: per-rollout advantages of every group estimator and the surrogate loss.
  theory:     exact finite-N and population weight functions, truncated objectives.
  metrics:    the unbiased pass@k estimator and analytic pass@k.
  train:      device mesh, checkpoints, metric writers and the host training loop.
  envs:       environments (maze).
  models:     Flax models (Qwen2-style decoder, ResNet).
"""

__version__ = "0.2.0.dev0"
