"""Tests of the Hugging Face Qwen2 interop (maxrl_jax.models.hf_qwen2).

The reference forward pass below is written from the Hugging Face Qwen2 definition
(``Qwen2ForCausalLM``: RMSNorm, rotate-half RoPE, q/k/v biases, grouped-query attention via
``repeat_kv``, SiLU-gated MLP, tied head) in NumPy float64 on the Hugging Face tensor names; the
Flax decoder runs on the imported parameters in float32.
"""

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

safetensors_numpy = pytest.importorskip("safetensors.numpy")

from maxrl_jax.models import hf_qwen2 as hf  # noqa: E402
from maxrl_jax.models import transformer as tf  # noqa: E402

TINY = tf.DecoderConfig(vocab_size=16, num_layers=2, hidden_dim=32, mlp_dim=48, num_heads=4,
                        num_kv_heads=2, rope_theta=1e4, max_len=64)

# The authors' maze checkpoint's config.json (maze/ckpt-1500, saved by transformers 4.54.1).
AUTHORS_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
    "dtype": "bfloat16", "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 256,
    "initializer_range": 0.02, "intermediate_size": 1024, "layer_types": ["full_attention"] * 4,
    "max_position_embeddings": 512, "max_window_layers": 4, "model_type": "qwen2",
    "num_attention_heads": 4, "num_hidden_layers": 4, "num_key_value_heads": 2,
    "pad_token_id": 0, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000.0,
    "sliding_window": None, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.54.1", "use_cache": True, "use_sliding_window": False,
    "vocab_size": 32,
}


def _tiny_hf_config(**changes):
  c = dict(AUTHORS_CONFIG, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
           layer_types=["full_attention"] * 2, max_window_layers=2, rope_theta=1e4,
           max_position_embeddings=64, vocab_size=16)
  c.update(changes)
  return c


def _random_hf_tensors(hf_config, seed=0, scale=0.25, emb_scale=1.0):
  """Random Qwen2 tensors under Hugging Face names (weights [out, in]); O(1) logits."""
  rng = np.random.default_rng(seed)
  e, m, v = hf_config["hidden_size"], hf_config["intermediate_size"], hf_config["vocab_size"]
  h, hkv = hf_config["num_attention_heads"], hf_config["num_key_value_heads"]
  d = e // h
  w = lambda *s: (rng.normal(size=s) * scale).astype(np.float32)
  g = lambda n: (1.0 + 0.3 * rng.normal(size=n)).astype(np.float32)
  t = {"model.embed_tokens.weight": w(v, e) * emb_scale, "model.norm.weight": g(e)}
  for i in range(hf_config["num_hidden_layers"]):
    p = f"model.layers.{i}"
    t.update({
        f"{p}.input_layernorm.weight": g(e), f"{p}.post_attention_layernorm.weight": g(e),
        f"{p}.self_attn.q_proj.weight": w(h * d, e), f"{p}.self_attn.q_proj.bias": w(h * d),
        f"{p}.self_attn.k_proj.weight": w(hkv * d, e), f"{p}.self_attn.k_proj.bias": w(hkv * d),
        f"{p}.self_attn.v_proj.weight": w(hkv * d, e), f"{p}.self_attn.v_proj.bias": w(hkv * d),
        f"{p}.self_attn.o_proj.weight": w(e, h * d),
        f"{p}.mlp.gate_proj.weight": w(m, e), f"{p}.mlp.up_proj.weight": w(m, e),
        f"{p}.mlp.down_proj.weight": w(e, m),
    })
  return t


def _random_flax_params(cfg, seed):
  """Random values (norm gains and biases non-trivial too) in the decoder's parameter tree."""
  shapes = jax.eval_shape(functools.partial(tf.init_params, cfg=cfg), jax.random.PRNGKey(0))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(0.2 * rng.normal(size=s.shape), s.dtype), shapes)


def _write_checkpoint(path, hf_config, tensors):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_config, f)
  safetensors_numpy.save_file(tensors, os.path.join(path, "model.safetensors"),
                              metadata={"format": "pt"})


def numpy_qwen2_logits(t, c, tokens, positions):
  """Qwen2ForCausalLM forward in float64 NumPy from the Hugging Face definition.

  tokens, positions: int [B, L]. Returns logits [B, L, V].
  """
  t = {k: np.asarray(v, np.float64) for k, v in t.items()}
  h, hkv, eps = c["num_attention_heads"], c["num_key_value_heads"], c["rms_norm_eps"]
  d = c["hidden_size"] // h
  n_rep = h // hkv

  def rms_norm(x, weight):  # Qwen2RMSNorm
    variance = np.mean(x ** 2, axis=-1, keepdims=True)
    return weight * (x / np.sqrt(variance + eps))

  def linear(x, name, bias=False):  # nn.Linear: x W^T + b
    y = x @ t[name + ".weight"].T
    return y + t[name + ".bias"] if bias else y

  def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return np.concatenate([-x2, x1], axis=-1)

  # Qwen2RotaryEmbedding: inv_freq and the angles in float32 ("Force float32"), cos/sin after.
  inv_freq = (1.0 / (c["rope_theta"] ** (np.arange(0, d, 2).astype(np.float32) / d))).astype(
      np.float32)
  freqs = (positions[..., None].astype(np.float32) * inv_freq).astype(np.float64)  # [B, L, D/2]
  emb = np.concatenate([freqs, freqs], axis=-1)
  cos, sin = np.cos(emb)[:, None], np.sin(emb)[:, None]  # [B, 1, L, D]

  b, l = tokens.shape
  x = t["model.embed_tokens.weight"][tokens]
  causal = np.tril(np.ones((l, l), bool))
  for i in range(c["num_hidden_layers"]):
    p = f"model.layers.{i}"
    hs = rms_norm(x, t[f"{p}.input_layernorm.weight"])
    q = linear(hs, f"{p}.self_attn.q_proj", True).reshape(b, l, h, d).transpose(0, 2, 1, 3)
    k = linear(hs, f"{p}.self_attn.k_proj", True).reshape(b, l, hkv, d).transpose(0, 2, 1, 3)
    v = linear(hs, f"{p}.self_attn.v_proj", True).reshape(b, l, hkv, d).transpose(0, 2, 1, 3)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    k = np.repeat(k, n_rep, axis=1)  # repeat_kv: head j -> heads j*n_rep .. j*n_rep + n_rep-1
    v = np.repeat(v, n_rep, axis=1)
    scores = q @ k.transpose(0, 1, 3, 2) * d ** -0.5
    scores = np.where(causal, scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    attn = (probs @ v).transpose(0, 2, 1, 3).reshape(b, l, h * d)
    x = x + linear(attn, f"{p}.self_attn.o_proj")
    hs = rms_norm(x, t[f"{p}.post_attention_layernorm.weight"])
    gate = linear(hs, f"{p}.mlp.gate_proj")
    silu = gate / (1.0 + np.exp(-gate))
    x = x + linear(silu * linear(hs, f"{p}.mlp.up_proj"), f"{p}.mlp.down_proj")
  x = rms_norm(x, t["model.norm.weight"])
  return x @ t["model.embed_tokens.weight"].T  # tied lm_head


@functools.lru_cache(maxsize=None)
def _jitted_apply(cfg):
  return jax.jit(tf.Decoder(cfg).apply)


def _flax_logits(cfg, params, tokens, positions):
  return np.asarray(_jitted_apply(cfg)(params, jnp.asarray(tokens), jnp.asarray(positions))[0])


def test_logits_match_numpy_reference_of_hf_qwen2(tmp_path):
  c = _tiny_hf_config()
  tensors = _random_hf_tensors(c, seed=1)
  _write_checkpoint(tmp_path, c, tensors)
  cfg, params = hf.load_hf(tmp_path)
  assert cfg == TINY
  rng = np.random.default_rng(2)
  tokens = rng.integers(0, c["vocab_size"], size=(3, 20))
  positions = np.arange(20)[None, :] + np.array([[0], [5], [40]])  # also offset positions
  want = numpy_qwen2_logits(tensors, c, tokens, positions)
  got = _flax_logits(cfg, params, tokens, positions)
  assert got.dtype == np.float32 and 1.0 < np.abs(want).max() < 100.0  # non-trivial logits
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_logits_match_numpy_reference_paper_size(tmp_path):
  """The paper's maze model (3,944,704 parameters) from a bf16 checkpoint like the authors'."""
  tensors = {k: v.astype(jnp.bfloat16)
             for k, v in _random_hf_tensors(AUTHORS_CONFIG, seed=3, scale=0.05).items()}
  _write_checkpoint(tmp_path, AUTHORS_CONFIG, tensors)
  cfg, params = hf.load_hf(tmp_path)
  assert cfg == tf.DecoderConfig()  # the paper defaults
  assert tf.num_params(params) == 3_944_704
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  tokens = np.random.default_rng(4).integers(0, 32, size=(2, 24))
  positions = np.broadcast_to(np.arange(300, 324), tokens.shape)
  want = numpy_qwen2_logits({k: v.astype(np.float32) for k, v in tensors.items()},
                            AUTHORS_CONFIG, tokens, positions)
  np.testing.assert_allclose(_flax_logits(cfg, params, tokens, positions), want, rtol=0,
                             atol=1e-5)


def test_export_import_round_trip_is_exact(tmp_path):
  params = _random_flax_params(TINY, seed=0)
  hf.save_hf(tmp_path, TINY, params)
  with open(tmp_path / "config.json") as f:
    written = json.load(f)
  assert written["architectures"] == ["Qwen2ForCausalLM"] and written["tie_word_embeddings"]
  assert written["torch_dtype"] == "float32" and written["hidden_size"] == 32
  tensors = safetensors_numpy.load_file(str(tmp_path / "model.safetensors"))
  assert "lm_head.weight" not in tensors
  kernel = params["params"]["layer_1"]["attn"]["k_proj"]["kernel"]
  np.testing.assert_array_equal(tensors["model.layers.1.self_attn.k_proj.weight"],
                                np.asarray(kernel).T)
  for cfg_arg in (None, TINY):
    cfg, loaded = hf.load_hf(tmp_path, cfg_arg)
    assert cfg == TINY
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    assert jax.tree.structure(loaded) == jax.tree.structure(_random_flax_params(
        dataclasses.replace(TINY, remat=True), seed=1))  # same names with remat
    jax.tree.map(np.testing.assert_array_equal, loaded, params)
  # Logits survive too, and the export of the paper config reproduces the authors' fields.
  tokens = np.arange(12)[None] % 16
  np.testing.assert_array_equal(_flax_logits(TINY, loaded, tokens, np.arange(12)[None]),
                                _flax_logits(TINY, params, tokens, np.arange(12)[None]))
  mine = hf.hf_config_from_decoder(tf.DecoderConfig(), torch_dtype="bfloat16")
  for key, value in AUTHORS_CONFIG.items():
    if key != "transformers_version":
      assert mine[key] == value, key


def test_bfloat16_files_and_conversion(tmp_path):
  params = _random_flax_params(TINY, seed=5)
  hf.save_hf(tmp_path / "bf16", TINY, params, dtype="bfloat16")
  with open(tmp_path / "bf16" / "config.json") as f:
    assert json.load(f)["torch_dtype"] == "bfloat16"
  raw = hf.load_safetensors(tmp_path / "bf16" / "model.safetensors")
  assert all(v.dtype == jnp.bfloat16 for v in raw.values())
  # The format-level reader (fallback for old safetensors releases) agrees.
  fallback = hf._read_safetensors_raw(tmp_path / "bf16" / "model.safetensors")
  for k, v in raw.items():
    np.testing.assert_array_equal(fallback[k].view(np.uint16), v.view(np.uint16))
  # Import into float32 parameters: the exact upcast of the rounded values.
  cfg, loaded = hf.load_hf(tmp_path / "bf16")
  rounded = jax.tree.map(lambda x: x.astype(jnp.bfloat16).astype(jnp.float32), params)
  jax.tree.map(np.testing.assert_array_equal, loaded, rounded)
  # ... or keep bfloat16 parameters.
  cfg16, loaded16 = hf.load_hf(tmp_path / "bf16", param_dtype="bfloat16")
  assert cfg16.param_dtype == "bfloat16"
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(loaded16))
  # File conversion bf16 -> f32 (and f16) keeps the values exactly.
  hf.convert_safetensors(tmp_path / "bf16" / "model.safetensors", tmp_path / "f32.safetensors")
  f32 = safetensors_numpy.load_file(str(tmp_path / "f32.safetensors"))
  for k, v in raw.items():
    assert f32[k].dtype == np.float32
    np.testing.assert_array_equal(f32[k], v.astype(np.float32))
  f16 = hf.load_safetensors(tmp_path / "f32.safetensors", "float16")
  assert f16["model.norm.weight"].dtype == np.float16


@pytest.mark.parametrize("changes,field", [
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"tie_word_embeddings": False}, "tie_word_embeddings"),
    ({"use_sliding_window": True, "sliding_window": 8}, "use_sliding_window"),
    ({"layer_types": ["full_attention", "sliding_attention"]}, "layer_types"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling"),
    ({"head_dim": 16}, "head_dim"),
    ({"model_type": "llama"}, "model_type"),
    ({"architectures": ["LlamaForCausalLM"]}, "architectures"),
    ({"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
])
def test_unsupported_features_are_refused(changes, field):
  with pytest.raises(ValueError, match=f"'{field}'"):
    hf.decoder_config_from_hf(_tiny_hf_config(**changes))


def test_missing_fields_and_defaults():
  c = _tiny_hf_config()
  del c["hidden_size"]
  with pytest.raises(ValueError, match="'hidden_size' is missing"):
    hf.decoder_config_from_hf(c)
  c = _tiny_hf_config()
  for key in ("num_key_value_heads", "rope_theta", "rope_scaling", "layer_types"):
    del c[key]
  cfg = hf.decoder_config_from_hf(c)  # Qwen2Config's defaults
  assert cfg.num_kv_heads == 4 and cfg.rope_theta == 10000.0
  # transformers >= 5 nests rope_theta in rope_parameters.
  c = _tiny_hf_config(rope_parameters={"rope_type": "default", "rope_theta": 500.0})
  del c["rope_theta"]
  assert hf.decoder_config_from_hf(c).rope_theta == 500.0


@pytest.mark.parametrize("attr,value,field", [
    ("num_layers", 3, "num_hidden_layers"), ("hidden_dim", 64, "hidden_size"),
    ("mlp_dim", 32, "intermediate_size"), ("num_heads", 2, "num_attention_heads"),
    ("num_kv_heads", 4, "num_key_value_heads"), ("vocab_size", 32, "vocab_size"),
    ("rope_theta", 1e6, "rope_theta"), ("rms_eps", 1e-5, "rms_norm_eps"),
    ("max_len", 128, "max_position_embeddings"),
])
def test_config_mismatch_names_the_field(tmp_path, attr, value, field):
  c = _tiny_hf_config()
  _write_checkpoint(tmp_path, c, _random_hf_tensors(c))
  with pytest.raises(ValueError, match=f"'{field}'.*DecoderConfig.{attr}|DecoderConfig.{attr}.*"
                                       f"'{field}'"):
    hf.load_hf(tmp_path, dataclasses.replace(TINY, **{attr: value}))
  # A shorter max_len is fine (only a longer one exceeds the RoPE table HF would build).
  cfg, _ = hf.load_hf(tmp_path, dataclasses.replace(TINY, max_len=32, dtype="bfloat16"))
  assert cfg.max_len == 32 and cfg.dtype == "bfloat16"


def test_tensor_errors():
  c = _tiny_hf_config()
  good = _random_hf_tensors(c)
  check = functools.partial(hf.params_from_hf_tensors, cfg=TINY)
  check(dict(good, **{"lm_head.weight": good["model.embed_tokens.weight"].copy()}))  # tied copy: ok
  with pytest.raises(ValueError, match="missing tensors.*model.layers.1.mlp.up_proj.weight"):
    check({k: v for k, v in good.items() if k != "model.layers.1.mlp.up_proj.weight"})
  with pytest.raises(ValueError, match="unexpected tensors.*model.layers.2"):
    check(dict(good, **{"model.layers.2.input_layernorm.weight": np.ones(32, np.float32)}))
  with pytest.raises(ValueError, match="k_proj.bias.*shape"):
    check(dict(good, **{"model.layers.0.self_attn.k_proj.bias": np.ones(8, np.float32)}))
  with pytest.raises(ValueError, match="lm_head.weight.*tied"):
    check(dict(good, **{"lm_head.weight": good["model.embed_tokens.weight"] + 1.0}))
