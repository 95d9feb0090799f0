"""The maze RL step's memory splits do not change the update: chunked sampling draws the same
rollouts, and gradient accumulation over maze micro-batches gives the unchunked parameters."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.maze import config as maze_config
from experiments.maze import data as maze_data
from experiments.maze import steps
from maxrl_jax import estimators


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
    "token_mean", pytest.param("sequence_mean", marks=pytest.mark.slow)])
def test_gradient_accumulation_equals_the_unchunked_update(aggregation):
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

  results = {g: jax.jit(lambda s, g=g: steps.rl_update(
      s, prompts, out, adv, model_cfg=model_cfg, optimizer=optimizer, grad_mazes=g,
      aggregation=aggregation))(state) for g in (8, 2)}
  # Loss on a shorter response length when every rollout fits (lax.switch): same update.
  longest = int(out.mask.sum(-1).max())
  assert longest == 10 < out.tokens.shape[-1]
  results["cut"] = jax.jit(lambda s: steps.rl_update(
      s, prompts, out, adv, model_cfg=model_cfg, optimizer=optimizer, grad_mazes=2,
      aggregation=aggregation, loss_lengths=(longest - 1, longest)))(state)
  ref_state, ref_loss, ref_grads = results[8]
  assert float(jnp.abs(jax.flatten_util.ravel_pytree(ref_grads)[0]).max()) > 0
  for g in (2, "cut"):
    s, loss, grads = results[g]
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(ref_state.params)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
