"""The optimiser factory builds exactly the chains the drivers built by hand (bit-identical)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from maxrl_jax.train import optim
from maxrl_jax.train.errors import ConfigError


def _params():
  k1, k2 = jax.random.split(jax.random.key(0))
  return {"w": jax.random.normal(k1, (3, 4)), "b": jax.random.normal(k2, (4,))}


def _run(tx, steps=5):
  params = _params()
  state = tx.init(params)
  for t in range(steps):
    grads = jax.tree.map(lambda p, t=t: jnp.sin(p * (t + 1)), params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def _same(tx_a, tx_b):
  pa, sa = _run(tx_a)
  pb, sb = _run(tx_b)
  assert jax.tree.structure(sa) == jax.tree.structure(sb)
  for x, y in zip(jax.tree.leaves((pa, sa)), jax.tree.leaves((pb, sb))):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_imagenet_sgd_coupled_decay_warmup_cosine():
  sec = ml_collections.ConfigDict({"learning_rate": 0.1, "momentum": 0.9, "nesterov": False,
                                   "weight_decay": 1e-4, "warmup_steps": -1, "batch_size": 8})
  tx, schedule = optim.make_optimizer(
      sec, field="config.optim", defaults={"optimizer": "sgd", "schedule": "warmup_cosine"},
      warmup_steps=2, total_steps=10)
  ref_schedule = optax.warmup_cosine_decay_schedule(0.0, 0.1, 2, 10, 0.0)
  ref = optax.chain(optax.add_decayed_weights(1e-4),
                    optax.sgd(ref_schedule, momentum=0.9, nesterov=False))
  _same(tx, ref)
  for s in range(11):
    assert float(schedule(s)) == float(ref_schedule(s))


@pytest.mark.parametrize("clip,warmup", [(1.0, 0), (0.0, 3), (1.0, 3)])
def test_maze_adamw_clip_warmup(clip, warmup):
  sec = ml_collections.ConfigDict({"learning_rate": 5e-4, "betas": (0.9, 0.95),
                                   "weight_decay": 0.01, "max_grad_norm": clip,
                                   "warmup_steps": warmup})
  tx, _ = optim.make_optimizer(sec, field="config.sft",
                               defaults={"optimizer": "adamw", "schedule": "warmup_constant"})
  lr = optax.linear_schedule(0.0, 5e-4, warmup) if warmup else 5e-4
  parts = [optax.clip_by_global_norm(clip)] if clip else []
  ref = optax.chain(*parts, optax.adamw(lr, b1=0.9, b2=0.95, weight_decay=0.01))
  _same(tx, ref)


def test_bernoulli_bare_optax_name_with_kwargs_and_scale():
  sec = ml_collections.ConfigDict({"optimizer": "sgd", "learning_rate": 0.5,
                                   "optimizer_kwargs": {"momentum": 0.5}})
  tx, schedule = optim.make_optimizer(sec, field="config.tabular", learning_rate_scale=16)
  assert schedule == 0.5 * 16
  _same(tx, optax.sgd(learning_rate=8.0, momentum=0.5))  # bare: no chain level in the state
  tx, _ = optim.make_optimizer({"optimizer": "adam", "learning_rate": 0.1})
  _same(tx, optax.adam(learning_rate=0.1))


def test_spec_is_hashable_and_reusable():
  sec = {"optimizer": "adamw", "learning_rate": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.99]}
  a, b = optim.optimizer_spec(sec), optim.optimizer_spec(dict(sec))
  assert a == b and hash(a) == hash(b)
  tx, _ = optim.make_optimizer(a)
  _same(tx, optax.chain(optax.adamw(1e-3, b1=0.9, b2=0.99, weight_decay=0.0)))


def test_errors_name_the_field():
  with pytest.raises(ConfigError, match=r"config\.rl\.optimizer"):
    optim.make_optimizer({"optimizer": "nope", "learning_rate": 1.0}, field="config.rl")
  with pytest.raises(ConfigError, match=r"config\.optim\.schedule"):
    optim.make_optimizer({"optimizer": "sgd", "learning_rate": 1.0, "schedule": "linear"})
  with pytest.raises(ConfigError, match=r"config\.optim\.schedule"):
    optim.make_optimizer({"optimizer": "sgd", "learning_rate": 1.0, "schedule": "warmup_cosine"})
  with pytest.raises(ConfigError, match=r"config\.x\.optimizer"):
    optim.make_optimizer({"optimizer": "sgd", "learning_rate": 1.0,
                          "optimizer_kwargs": {"bogus": 1}}, field="config.x")
