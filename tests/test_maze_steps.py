"""The maze RL step's memory splits do not change the update: chunked sampling draws the same
rollouts, and gradient accumulation over maze micro-batches gives the unchunked parameters; the
float16 dynamic loss scale skips overflowing steps."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.maze import config as maze_config
from experiments.maze import data as maze_data
from experiments.maze import loss_scale
from experiments.maze import steps
from experiments.maze import update
from maxrl_jax import estimators
from maxrl_jax import sampling


def _setup(batch=8, n=4):
  cfg = maze_config.get_config("smoke")
  task = maze_data.MazeTask.from_config(cfg)
  model_cfg = steps.decoder_config(cfg, task)
  params = steps.init_params(cfg, model_cfg)
  grids = jnp.asarray(task.chunk_grids("rl", 0, 1, batch)[0])
  return cfg, task, model_cfg, params, grids, n


def test_chunked_sampling_draws_the_same_rollouts():
  _, task, model_cfg, params, grids, n = _setup()
  prompts = task.prompts(grids)
  key = jax.random.key(3)
  sample = jax.jit(lambda c: steps.sample_batch(params, model_cfg, task, prompts, key, n=n,
                                                temperature=1.0, sample_mazes=c),
                   static_argnums=0)
  whole, chunked = sample(8), sample(2)
  np.testing.assert_array_equal(whole.tokens, chunked.tokens)
  np.testing.assert_allclose(whole.logprobs, chunked.logprobs, atol=1e-5)


@pytest.mark.parametrize("aggregation", [
    "token_mean", "microbatch_token_mean", pytest.param("sequence_mean", marks=pytest.mark.slow)])
def test_gradient_accumulation_equals_the_unchunked_update(aggregation):
  """Chunks of 8, 2 or 1 mazes (for verl's micro-batches of 8 sequences: chunks holding 4 or 1
  micro-batches, or half of one) and the loss cut to the longest response give one update."""
  cfg, task, model_cfg, params, grids, n = _setup()
  prompts = task.prompts(grids)
  out = steps.sample_batch(params, model_cfg, task, prompts, jax.random.key(0), n=n,
                           temperature=1.0, sample_mazes=8)
  # Responses that all stop within 10 tokens (padding after), as a trained policy's would.
  out = out._replace(tokens=out.tokens.at[..., 10:].set(task.pad_id),
                     mask=out.mask.at[..., 10:].set(0.0))
  rewards = task.rewards(grids, out.tokens)
  # Rewards of a fresh policy are mostly 0: use a fixed pattern so the advantages are not 0.
  rewards = rewards.at[:, 0].set(1.0)
  adv = estimators.advantages(rewards, "maxrl")
  optimizer = steps.make_optimizer(steps.optimizer_spec(cfg.rl))
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  state = steps.init_state(params, optimizer, mesh)

  mb = {"microbatch_size": 8} if aggregation == "microbatch_token_mean" else {}
  chunks = (8, 2, 1) if mb else (8, 2)
  results = {g: jax.jit(lambda s, g=g: update.rl_update(
      s, prompts, out, adv, model_cfg=model_cfg, optimizer=optimizer, grad_mazes=g,
      aggregation=aggregation, **mb))(state) for g in chunks}
  # Loss on a shorter response length when every rollout fits (lax.switch): same update.
  longest = int(out.mask.sum(-1).max())
  assert longest == 10 < out.tokens.shape[-1]
  results["cut"] = jax.jit(lambda s: update.rl_update(
      s, prompts, out, adv, model_cfg=model_cfg, optimizer=optimizer, grad_mazes=2,
      aggregation=aggregation, loss_lengths=(longest - 1, longest), **mb))(state)
  ref_state, ref_loss, ref_grads = results[8]
  assert float(jnp.abs(jax.flatten_util.ravel_pytree(ref_grads)[0]).max()) > 0
  if mb:  # the mean of the 4 micro-batches' token-means, not the global token-mean
    lp = sampling.response_logprobs(params, model_cfg, prompts, out.tokens)
    per_mb = [estimators.surrogate_loss(lp[2 * j:2 * j + 2], out.mask[2 * j:2 * j + 2],
                                        adv[2 * j:2 * j + 2], aggregation="token_mean")
              for j in range(4)]
    np.testing.assert_allclose(ref_loss, np.mean(per_mb), rtol=1e-5)
  for g in chunks[1:] + ("cut",):
    s, loss, grads = results[g]
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(ref_state.params)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_dynamic_loss_scale_skips_halves_and_grows():
  opt = loss_scale.dynamic_loss_scale(optax.sgd(1.0), init_scale=8.0, period=2)
  params = {"w": jnp.ones(3)}
  state = opt.init(params)
  finite = {"w": jnp.full(3, 0.5)}
  bad = {"w": jnp.array([0.5, jnp.inf, 0.5])}
  # Non-finite: no update, inner state kept, scale halved, count reset.
  updates, s1 = opt.update(bad, state, params)
  np.testing.assert_array_equal(updates["w"], 0.0)
  assert float(s1.scale) == 4.0 and int(s1.good_steps) == 0
  # Finite: the inner update; the scale doubles after `period` finite steps in a row.
  updates, s2 = opt.update(finite, s1, params)
  np.testing.assert_allclose(updates["w"], -0.5)
  assert float(s2.scale) == 4.0 and int(s2.good_steps) == 1
  _, s3 = opt.update(finite, s2, params)
  assert float(s3.scale) == 8.0 and int(s3.good_steps) == 0
  _, s4 = opt.update({"w": jnp.full(3, jnp.nan)}, s3, params)
  assert float(s4.scale) == 4.0
  assert loss_scale.scale_of(s4) is s4.scale and loss_scale.scale_of(s4.inner) is None
  with pytest.raises(ValueError, match="period"):
    loss_scale.dynamic_loss_scale(optax.sgd(1.0), period=0)


def _float16_update(init_scale, with_float32=False):
  cfg, task, model_cfg, params, grids, n = _setup()
  cfg.model.dtype = "float16"
  cfg.model.loss_scale_init = init_scale
  model16 = steps.decoder_config(cfg, task)
  prompts = task.prompts(grids)
  out = steps.sample_batch(params, model_cfg, task, prompts, jax.random.key(0), n=n,
                           temperature=1.0, sample_mazes=8)
  adv = estimators.advantages(jnp.zeros((8, n)).at[:, 0].set(1.0), "maxrl")
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  results = {}
  cases = [("fp16", model16, steps.loss_scale_spec(cfg))]
  if with_float32:
    cases.append(("fp32", model_cfg, None))
  for name, mcfg, scaled in cases:
    optimizer = steps.make_optimizer(steps.optimizer_spec(cfg.rl), scaled)
    state = steps.init_state(params, optimizer, mesh)
    results[name] = jax.jit(lambda s, o=optimizer, m=mcfg, sc=scaled: update.rl_update(
        s, prompts, out, adv, model_cfg=m, optimizer=o, grad_mazes=8,
        aggregation="token_mean", loss_scaling=sc is not None))(state)
  return params, results


def test_float16_update_with_loss_scaling_matches_float32():
  params, results = _float16_update(2.0 ** 16, with_float32=True)
  (s32, _, g32), (s16, _, g16) = results["fp32"], results["fp16"]
  flat = lambda t: jax.flatten_util.ravel_pytree(t)[0]
  assert bool(jnp.all(jnp.isfinite(flat(g16))))
  rel = float(jnp.linalg.norm(flat(g16) - flat(g32)) / jnp.linalg.norm(flat(g32)))
  assert rel < 0.05, rel  # float16 compute, float32 master weights
  assert float(s16.opt_state.scale) == 2.0 ** 16 and int(s16.opt_state.good_steps) == 1
  assert float(jnp.abs(flat(s16.params) - flat(params)).max()) > 0


def test_float16_overflow_skips_the_step_and_halves_the_scale():
  params, results = _float16_update(1e38)  # the scaled backward pass overflows float16
  s16, _, g16 = results["fp16"]
  assert not bool(jnp.all(jnp.isfinite(jax.flatten_util.ravel_pytree(g16)[0])))
  for a, b in zip(jax.tree.leaves(s16.params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  assert float(s16.opt_state.scale) == np.float32(1e38) / 2
