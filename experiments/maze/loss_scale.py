"""Dynamic loss scaling for float16 compute (the authors' RL runs train in fp16; their actor wraps
the optimiser in torch's ``ShardedGradScaler(growth_interval=400)``, ``verl/workers/actor/
dp_actor.py``), in the spirit of jmp's ``DynamicLossScale``.

The step multiplies the loss by the current scale ``s`` before differentiating (so small float16
cotangents do not underflow), divides the gradients by ``s`` and hands them to the optimiser
wrapped by :func:`dynamic_loss_scale`, which

* skips the update (parameters and inner optimiser state unchanged) and halves ``s`` when any
  gradient is non-finite (an overflow in the scaled backward pass);
* otherwise applies the inner optimiser and, after ``period`` consecutive finite steps, doubles
  ``s`` (and restarts the count).

The scale lives in the optimiser state (:class:`LossScaleState`), hence in the checkpointed
``TrainState``: a resumed run continues with the scale it had. float32 and bfloat16 compute need
no scaler (bfloat16 has float32's exponent range).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax


class LossScaleState(NamedTuple):
  """``scale`` (float32), finite steps since the last change ``good_steps`` (int32), ``inner``."""
  scale: jax.Array
  good_steps: jax.Array
  inner: Any


def all_finite(tree) -> jax.Array:
  """True when every element of every leaf is finite (a scalar bool)."""
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.asarray(True)
  return jnp.stack([jnp.isfinite(x).all() for x in leaves]).all()


def dynamic_loss_scale(inner: optax.GradientTransformation, *, init_scale: float = 2.0 ** 16,
                       period: int = 400, factor: float = 2.0,
                       min_scale: float = 1.0) -> optax.GradientTransformation:
  """``inner`` behind a dynamic loss scale; ``update`` takes the UNSCALED gradients.

  Non-finite gradients: zero updates, ``inner``'s state kept, ``scale <- max(scale / factor,
  min_scale)``, count reset. Finite: ``inner``'s update, count + 1, and at ``period`` finite steps
  ``scale <- scale * factor`` with the count reset (torch's ``GradScaler`` defaults: initial
  scale 2^16, factor 2; the authors' growth interval 400).
  """
  if not init_scale > 0 or not factor > 1 or not min_scale > 0 or int(period) < 1:
    raise ValueError(f"dynamic_loss_scale: need init_scale > 0, factor > 1, min_scale > 0 and "
                     f"period >= 1, got {init_scale}, {factor}, {min_scale}, {period}")

  def init(params):
    return LossScaleState(jnp.asarray(init_scale, jnp.float32), jnp.zeros((), jnp.int32),
                          inner.init(params))

  def update(grads, state: LossScaleState, params=None):
    chex.assert_rank(state.scale, 0)
    finite = all_finite(grads)
    safe = jax.tree.map(lambda g: jnp.where(finite, g, jnp.zeros_like(g)), grads)
    updates, new_inner = inner.update(safe, state.inner, params)
    updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), updates)
    new_inner = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_inner, state.inner)
    good = jnp.where(finite, state.good_steps + 1, 0)
    grow = good >= int(period)
    scale = jnp.where(finite, jnp.where(grow, state.scale * factor, state.scale),
                      jnp.maximum(state.scale / factor, min_scale))
    return updates, LossScaleState(scale.astype(jnp.float32),
                                   jnp.where(grow, 0, good).astype(jnp.int32), new_inner)

  return optax.GradientTransformation(init, update)


def scale_of(opt_state) -> jax.Array | None:
  """The current loss scale of an optimiser state built by :func:`dynamic_loss_scale`, or None."""
  return opt_state.scale if isinstance(opt_state, LossScaleState) else None


def scaled_metrics(metrics: dict, opt_state, grads, loss_scaling: bool) -> dict:
  """With loss scaling, a step whose gradients are not finite is skipped, not an error: its
  ``loss`` and ``grad_norm`` are logged as 0 (the update applied is 0) with
  ``train/skipped_step`` 1, and ``train/loss_scale`` is the scale after the step."""
  if not loss_scaling:
    return metrics
  finite = all_finite(grads) & jnp.isfinite(metrics["loss"])
  out = {k: jnp.where(finite, v, 0.0) if k in ("loss", "grad_norm") else v
         for k, v in metrics.items()}
  out["train/skipped_step"] = 1.0 - finite.astype(jnp.float32)
  out["train/loss_scale"] = scale_of(opt_state)
  return out
