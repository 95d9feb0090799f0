"""Tests of the shared-prompt KV-cached sampler and the training log-probabilities."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maxrl_jax import sampling
from maxrl_jax.models import transformer as tf

TINY = tf.DecoderConfig(vocab_size=12, num_layers=2, hidden_dim=32, mlp_dim=48, num_heads=4,
                        num_kv_heads=2, max_len=48)
STOP = (2, 3)   # stand-ins for DONE / <eos>
PAD = 0
B, N, LP, T = 3, 5, 7, 12


def _params(seed=0, scale=1.0):
  """Tiny random model; ``scale`` sharpens the embedding so rollouts differ in length."""
  p = tf.init_params(jax.random.PRNGKey(seed), TINY)
  p["params"]["embed"]["embedding"] = p["params"]["embed"]["embedding"] * scale
  return p


@pytest.fixture(scope="module")
def params():
  return _params(0, scale=5.0)


@pytest.fixture(scope="module")
def prompts():
  return jax.random.randint(jax.random.PRNGKey(1), (B, LP), 4, TINY.vocab_size)


def _sample(params, prompts, key, **kw):
  kw = {"num_samples": N, "max_new_tokens": T, "stop_tokens": STOP, "pad_id": PAD, **kw}
  return sampling.sample(params, TINY, prompts, key, **kw)


@pytest.fixture(scope="module")
def shared(params, prompts):
  return _sample(params, prompts, jax.random.PRNGKey(2), temperature=0.8)


def test_output_structure(shared):
  chex.assert_shape([shared.tokens, shared.mask, shared.logprobs], (B, N, T))
  assert shared.tokens.dtype == jnp.int32 and shared.mask.dtype == jnp.float32
  tokens, mask = np.asarray(shared.tokens), np.asarray(shared.mask)
  is_stop = np.isin(tokens, STOP) & (mask > 0)
  # mask = 1 up to and including the first stop token, 0 after; pad after the stop.
  stopped_before = np.cumsum(is_stop, axis=-1) - is_stop > 0
  np.testing.assert_array_equal(mask, 1.0 - stopped_before)
  assert np.all(tokens[mask == 0] == PAD)
  assert np.all(np.asarray(shared.logprobs)[mask == 0] == 0.0)
  assert np.all(np.asarray(shared.logprobs)[mask == 1] <= 0.0)
  lengths = mask.sum(-1)
  assert lengths.min() < T and len(np.unique(lengths)) > 1, "want rollouts of varied lengths"


def test_cached_equals_uncached_and_shared_equals_repeated(params, prompts, shared):
  key = jax.random.PRNGKey(2)
  repeated = _sample(params, prompts, key, temperature=0.8, share_prompt=False)
  uncached = sampling.sample_naive(params, TINY, prompts, key, num_samples=N, max_new_tokens=T,
                                   temperature=0.8, stop_tokens=STOP, pad_id=PAD)
  for other in (repeated, uncached):
    np.testing.assert_array_equal(other.tokens, shared.tokens)
    np.testing.assert_array_equal(other.mask, shared.mask)
    np.testing.assert_allclose(other.logprobs, shared.logprobs, atol=1e-5)


def test_keys_are_layout_independent(params, prompts, shared):
  """Rollout n of prompt b is the same whether sampled with N or fewer rollouts, in any batch."""
  key = jax.random.PRNGKey(2)
  few = _sample(params, prompts, key, temperature=0.8, num_samples=2)
  np.testing.assert_array_equal(few.tokens, shared.tokens[:, :2])
  again = _sample(params, prompts, key, temperature=0.8)
  np.testing.assert_array_equal(again.tokens, shared.tokens)
  typed = _sample(params, prompts, jax.random.key(2), temperature=0.8)  # new-style key
  np.testing.assert_array_equal(typed.tokens, shared.tokens)
  other = _sample(params, prompts, jax.random.PRNGKey(3), temperature=0.8)
  assert not np.array_equal(other.tokens, shared.tokens)


def test_on_policy_logprobs(params, prompts):
  """response_logprobs (training) == log-probs of the sampling distribution, at T=1 and T!=1."""
  for temperature in (1.0, 0.7):
    out = _sample(params, prompts, jax.random.PRNGKey(4), temperature=temperature)
    lp = sampling.response_logprobs(params, TINY, prompts, out.tokens, temperature=temperature)
    chex.assert_shape(lp, (B, N, T))
    np.testing.assert_allclose(lp * out.mask, out.logprobs, atol=1e-5)
    naive = sampling.response_logprobs_naive(params, TINY, prompts, out.tokens,
                                             temperature=temperature)
    np.testing.assert_allclose(lp, naive, atol=1e-5)


def test_response_logprob_gradients_match_naive(params, prompts, shared):
  weights = jax.random.normal(jax.random.PRNGKey(5), (B, N))

  def loss(p, fn):
    lp = fn(p, TINY, prompts, shared.tokens)
    return jnp.sum(weights * jnp.sum(lp * shared.mask, -1))

  g_shared = jax.jit(jax.grad(lambda p: loss(p, sampling.response_logprobs)))(params)
  g_naive = jax.jit(jax.grad(lambda p: loss(p, sampling.response_logprobs_naive)))(params)
  for a, b in zip(jax.tree.leaves(g_shared), jax.tree.leaves(g_naive)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  # The prompt encoding receives gradient (it is not cut off by the shared prefix).
  assert np.abs(g_shared["params"]["layer_0"]["attn"]["k_proj"]["kernel"]).max() > 0


def test_sampling_frequencies_match_the_policy():
  """First response token: empirical frequencies of many rollouts vs softmax(z / T)."""
  p = _params(1, scale=5.0)
  prompt = jax.random.randint(jax.random.PRNGKey(6), (1, LP), 4, TINY.vocab_size)
  n, temperature = 4000, 1.3
  out = sampling.sample(p, TINY, prompt, jax.random.PRNGKey(7), num_samples=n, max_new_tokens=1,
                        temperature=temperature)
  logits, _ = jax.jit(tf.Decoder(TINY).apply)(p, prompt, jnp.arange(LP)[None])
  probs = np.asarray(jax.nn.softmax(logits[0, -1] / temperature))
  freq = np.bincount(np.asarray(out.tokens).ravel(), minlength=TINY.vocab_size) / n
  # 5 standard errors of a binomial proportion.
  np.testing.assert_array_less(np.abs(freq - probs), 5 * np.sqrt(probs * (1 - probs) / n) + 1e-3)
  np.testing.assert_allclose(np.exp(out.logprobs[0, :, 0]), probs[out.tokens[0, :, 0]], rtol=1e-5)


def test_early_exit(params, prompts, shared):
  key = jax.random.PRNGKey(2)
  full, steps_full = _sample(params, prompts, key, temperature=0.8, early_exit=False,
                             return_num_steps=True)
  early, steps = _sample(params, prompts, key, temperature=0.8, return_num_steps=True)
  for a, b in zip(full, early):
    np.testing.assert_array_equal(a, b)
  assert int(steps_full) == T
  assert int(steps) == int(np.max(np.sum(shared.mask, -1)))
  # Every token is a stop token: every rollout is one token long and the loop runs once.
  one, steps_one = _sample(params, prompts, key, stop_tokens=tuple(range(TINY.vocab_size)),
                           return_num_steps=True)
  assert int(steps_one) == 1
  np.testing.assert_array_equal(np.asarray(one.mask).sum(-1), 1)


def test_no_retrace_across_keys_prompts_and_temperatures(params, prompts):
  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(p, x, key, temperature):
    return sampling.sample(p, TINY, x, key, num_samples=2, max_new_tokens=4,
                           temperature=temperature, stop_tokens=STOP)

  run(params, prompts, jax.random.PRNGKey(0), 1.0)
  run(params, prompts + 1, jax.random.PRNGKey(1), 0.5)


def test_bfloat16_sampling_runs(prompts):
  cfg = tf.DecoderConfig(**{**TINY.__dict__, "dtype": "bfloat16"})
  p = tf.init_params(jax.random.PRNGKey(0), cfg)
  out = sampling.sample(p, cfg, prompts, jax.random.PRNGKey(1), num_samples=3, max_new_tokens=5,
                        stop_tokens=STOP)
  assert out.tokens.dtype == jnp.int32 and out.logprobs.dtype == jnp.float32
  lp = sampling.response_logprobs(p, cfg, prompts, out.tokens)
  assert np.all(np.isfinite(lp))
  np.testing.assert_allclose(lp * out.mask, out.logprobs, atol=0.05)


def test_length_check():
  with pytest.raises(ValueError, match="max_len"):
    sampling.sample(None, TINY, jnp.zeros((1, 40), jnp.int32), jax.random.PRNGKey(0),
                    num_samples=1, max_new_tokens=9)
