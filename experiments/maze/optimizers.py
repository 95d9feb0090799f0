"""The maze driver's optimisers (paper section 6.2, appendix E): AdamW from the shared factory
(:mod:`maxrl_jax.train.optim`) with the authors' settings (``config.sft``: betas (0.9, 0.95),
maze/sft.py; ``config.rl``: betas (0.9, 0.999), verl), behind float16's dynamic loss scale
(:mod:`experiments.maze.loss_scale`) when ``model.dtype`` is float16.
"""

from __future__ import annotations

import optax

from experiments.maze import loss_scale as loss_scale_lib
from maxrl_jax.train import optim as optim_lib

# The maze optimisers' fixed choices (paper section 6.2; the authors' maze/sft.py and verl):
# AdamW with decoupled weight decay, an optional linear warmup, clipping when max_grad_norm > 0.
OPTIMIZER_DEFAULTS = {"optimizer": "adamw", "schedule": "warmup_constant", "betas": (0.9, 0.999)}


def optimizer_spec(sec, field: str = "config.rl") -> optim_lib.OptimizerSpec:
  """The named, hashable optimiser settings of ``config.sft`` or ``config.rl`` (the shared
  factory's :class:`maxrl_jax.train.optim.OptimizerSpec`)."""
  return optim_lib.optimizer_spec(sec, field=field, defaults=OPTIMIZER_DEFAULTS)


def loss_scale_spec(config) -> tuple | None:
  """``(init_scale, period)`` of the dynamic loss scale when ``config.model.dtype`` is float16
  (the authors' RL precision), else None (float32 and bfloat16 need no scaler)."""
  if str(config.model.dtype) != "float16":
    return None
  return (float(config.model.loss_scale_init), int(config.model.loss_scale_period))


def make_optimizer(spec, loss_scale: tuple | None = None) -> optax.GradientTransformation:
  """The shared factory's optimiser of ``spec`` (:func:`optimizer_spec`; AdamW after optional
  global-norm clipping, optional linear warmup), behind a dynamic loss scale
  (:mod:`experiments.maze.loss_scale`) when ``loss_scale`` is ``(init_scale, period)``."""
  tx, _ = optim_lib.make_optimizer(spec)
  if loss_scale is None:
    return tx
  init_scale, period = loss_scale
  return loss_scale_lib.dynamic_loss_scale(tx, init_scale=init_scale, period=period)
