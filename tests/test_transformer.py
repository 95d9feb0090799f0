"""Tests of the Qwen2-style decoder (maxrl_jax.models.transformer)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maxrl_jax.models import transformer as tf

TINY = tf.DecoderConfig(vocab_size=16, num_layers=2, hidden_dim=32, mlp_dim=48, num_heads=4,
                        num_kv_heads=2, max_len=64)


@pytest.fixture(scope="module")
def params():
  return tf.init_params(jax.random.PRNGKey(0), TINY)


@jax.jit
def _apply(params, tokens, positions, cache=None, cache_index=None, prefix=None):
  return tf.Decoder(TINY).apply(params, tokens, positions, cache=cache, cache_index=cache_index,
                                prefix=prefix)


def _positions(shape, start=0):
  return jnp.broadcast_to(start + jnp.arange(shape[-1], dtype=jnp.int32), shape)


def test_paper_config_param_count():
  cfg = tf.DecoderConfig()  # paper defaults
  shapes = jax.eval_shape(functools.partial(tf.init_params, cfg=cfg), jax.random.PRNGKey(0))
  e, m, v, hd = cfg.hidden_dim, cfg.mlp_dim, cfg.vocab_size, cfg.head_dim
  kv = cfg.num_kv_heads * hd
  per_layer = (e * e + e) + 2 * (e * kv + kv) + e * e + 3 * e * m + 2 * e
  expected = v * e + cfg.num_layers * per_layer + e
  assert tf.num_params(shapes) == expected == 3_944_704


def test_rmsnorm_matches_formula():
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 8)) * 3.0
  norm = tf.RMSNorm(1e-6, jnp.float32, jnp.float32)
  p = {"params": {"scale": jnp.arange(8.0)}}
  want = x / np.sqrt(np.mean(np.square(x), -1, keepdims=True) + 1e-6) * np.arange(8.0)
  np.testing.assert_allclose(norm.apply(p, x), want, rtol=1e-5, atol=1e-6)


def test_rope_preserves_norm_and_relative_angle():
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 3, 8))
  pos = _positions((2, 5))
  r = tf.rope(x, pos, 1e4)
  np.testing.assert_allclose(jnp.linalg.norm(r, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5)
  # <rope(q, i), rope(k, j)> depends on i - j only.
  q, k = x[0, 0, 0], x[1, 0, 0]
  dot = lambda i, j: jnp.dot(tf.rope(q[None], jnp.array([i]), 1e4)[0],
                             tf.rope(k[None], jnp.array([j]), 1e4)[0])
  np.testing.assert_allclose(dot(7, 3), dot(24, 20), rtol=1e-4, atol=1e-5)


def test_attend_matches_repeated_kv_reference():
  """GQA: query head h = kv_head * G + g reads kv head h // G (Qwen2's repeat_kv)."""
  ks = jax.random.split(jax.random.PRNGKey(3), 5)
  b, n, l, hkv, g, d, lp = 2, 3, 4, 2, 2, 8, 5
  q = jax.random.normal(ks[0], (b, n, l, hkv, g, d))
  k = jax.random.normal(ks[1], (b, n, l, hkv, d))
  v = jax.random.normal(ks[2], (b, n, l, hkv, d))
  pk = jax.random.normal(ks[3], (b, lp, hkv, d))
  pv = jax.random.normal(ks[4], (b, lp, hkv, d))
  mask = np.tril(np.ones((l, l), bool))
  got = jax.jit(tf.attend)(q, k, v, mask, (pk, pv))
  # Reference: materialise [prefix; own] per rollout and the repeated kv heads.
  kk = jnp.concatenate([jnp.broadcast_to(pk[:, None], (b, n, lp, hkv, d)), k], axis=2)
  vv = jnp.concatenate([jnp.broadcast_to(pv[:, None], (b, n, lp, hkv, d)), v], axis=2)
  kk, vv = jnp.repeat(kk, g, axis=3), jnp.repeat(vv, g, axis=3)  # [b, n, lp+l, H, d]
  qq = q.reshape(b, n, l, hkv * g, d)
  full_mask = np.concatenate([np.ones((l, lp), bool), mask], axis=1)
  s = np.einsum("bnqhd,bnkhd->bnhqk", qq, kk)
  s = np.where(full_mask, s, -np.inf)
  p = np.exp(s - s.max(-1, keepdims=True))
  want = np.einsum("bnhqk,bnkhd->bnqhd", p / p.sum(-1, keepdims=True), vv)
  np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-5)


def test_logits_shape_dtype_and_causality(params):
  tokens = jax.random.randint(jax.random.PRNGKey(4), (3, 10), 0, TINY.vocab_size)
  logits, kv = _apply(params, tokens, _positions(tokens.shape))
  assert logits.shape == (3, 10, TINY.vocab_size) and logits.dtype == jnp.float32
  assert len(kv) == TINY.num_layers
  assert kv[0][0].shape == (3, 10, TINY.num_kv_heads, TINY.head_dim)
  changed = tokens.at[:, 6].set((tokens[:, 6] + 1) % TINY.vocab_size)
  logits2, _ = _apply(params, changed, _positions(tokens.shape))
  np.testing.assert_array_equal(logits[:, :6], logits2[:, :6])
  assert not np.allclose(logits[:, 6:], logits2[:, 6:])


def test_rope_makes_logits_translation_invariant(params):
  tokens = jax.random.randint(jax.random.PRNGKey(5), (2, 9), 0, TINY.vocab_size)
  a, _ = _apply(params, tokens, _positions(tokens.shape))
  b, _ = _apply(params, tokens, _positions(tokens.shape, start=17))
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_cached_decoding_and_shared_prefix_match_full_forward(params):
  """prompt once -> prefix; rollouts [B, N, ...] decoded token by token from a cache."""
  b, n, lp, lr = 2, 3, 5, 6
  key_p, key_r = jax.random.split(jax.random.PRNGKey(6))
  prompt = jax.random.randint(key_p, (b, lp), 0, TINY.vocab_size)
  resp = jax.random.randint(key_r, (b, n, lr), 0, TINY.vocab_size)
  full = jnp.concatenate([jnp.repeat(prompt, n, 0), resp.reshape(b * n, lr)], axis=1)
  want, _ = _apply(params, full, _positions(full.shape))
  want = want[:, lp:].reshape(b, n, lr, -1)

  _, prefix = _apply(params, prompt, _positions(prompt.shape))
  # Whole response block at once, attending to the shared prefix.
  got, _ = _apply(params, resp, _positions(resp.shape, start=lp), prefix=prefix)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # Token by token with a preallocated cache, in two chunks (3 tokens, then one at a time).
  cache = tf.init_cache(TINY, (b, n), lr + 2)
  pos = _positions(resp.shape, start=lp)
  step_logits = []
  out, cache = _apply(params, resp[..., :3], pos[..., :3], cache=cache, cache_index=0,
                      prefix=prefix)
  step_logits.append(out)
  for t in range(3, lr):
    out, cache = _apply(params, resp[..., t:t + 1], pos[..., t:t + 1], cache=cache,
                        cache_index=jnp.int32(t), prefix=prefix)
    step_logits.append(out)
  np.testing.assert_allclose(jnp.concatenate(step_logits, axis=2), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(cache[0][0][:, :, lr:], 0.0)  # untouched slots


def test_cache_without_rollout_axis(params):
  tokens = jax.random.randint(jax.random.PRNGKey(7), (2, 6), 0, TINY.vocab_size)
  want, _ = _apply(params, tokens, _positions(tokens.shape))
  cache = tf.init_cache(TINY, (2,), 8)
  outs = []
  for t in range(6):
    out, cache = _apply(params, tokens[:, t:t + 1], _positions((2, 1), start=t), cache=cache,
                        cache_index=t)
    outs.append(out)
  assert cache[0][0].shape == (2, 8, TINY.num_kv_heads, TINY.head_dim)
  np.testing.assert_allclose(jnp.concatenate(outs, 1), want, rtol=1e-5, atol=1e-5)


def test_tied_embeddings_and_no_untied_head(params):
  names = jax.tree_util.tree_flatten_with_path(params)[0]
  paths = ["/".join(str(getattr(k, "key", k)) for k in path) for path, _ in names]
  assert any(p.endswith("embed/embedding") for p in paths)
  assert not any("lm_head" in p or "unembed" in p for p in paths)
  # Zeroing the embedding zeroes the logits: the output projection is the embedding.
  zeroed = jax.tree.map(lambda x: x, params)
  zeroed["params"]["embed"]["embedding"] = jnp.zeros_like(params["params"]["embed"]["embedding"])
  logits, _ = _apply(zeroed, jnp.zeros((1, 3), jnp.int32), _positions((1, 3)))
  np.testing.assert_array_equal(logits, 0.0)


def test_bfloat16_compute_path():
  cfg = TINY.__class__(**{**TINY.__dict__, "dtype": "bfloat16"})
  p = tf.init_params(jax.random.PRNGKey(8), cfg)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(p))
  tokens = jax.random.randint(jax.random.PRNGKey(9), (2, 7), 0, cfg.vocab_size)
  logits, kv = jax.jit(tf.Decoder(cfg).apply)(p, tokens, _positions(tokens.shape))
  assert logits.dtype == jnp.float32 and kv[0][0].dtype == jnp.bfloat16
  assert np.all(np.isfinite(logits))
  ref, _ = _apply(tf.init_params(jax.random.PRNGKey(8), TINY), tokens, _positions(tokens.shape))
  np.testing.assert_allclose(logits, ref, atol=0.01)
  assert not np.array_equal(logits, ref)  # really computed in bfloat16


def test_remat_gives_same_gradients(params):
  cfg = TINY.__class__(**{**TINY.__dict__, "remat": True})
  tokens = jax.random.randint(jax.random.PRNGKey(10), (2, 7), 0, TINY.vocab_size)

  def loss(p, c):
    logits, _ = tf.Decoder(c).apply(p, tokens, _positions(tokens.shape))
    return jnp.sum(jax.nn.log_softmax(logits)[..., 0])

  grad = jax.jit(jax.grad(loss), static_argnums=1)
  g1, g2 = grad(params, TINY), grad(params, cfg)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("field,value", [("num_kv_heads", 3), ("num_heads", 3), ("hidden_dim", 36)])
def test_invalid_config_raises(field, value):
  cfg = TINY.__class__(**{**TINY.__dict__, field: value})
  with pytest.raises(ValueError):
    tf.init_params(jax.random.PRNGKey(0), cfg)
