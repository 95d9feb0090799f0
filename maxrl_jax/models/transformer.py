"""Qwen2-style decoder-only Transformer: the maze policy (paper section 6.2).

Architecture (per layer, pre-norm residual)::

  h = x + Attn(RMSNorm(x))           # grouped-query attention with RoPE
  y = h + W_down(silu(W_gate RMSNorm(h)) * W_up RMSNorm(h))

followed by a final RMSNorm and the tied output projection ``logits = h E^T`` (``E`` the token
embedding). RMSNorm: ``x / sqrt(mean(x^2) + eps) * g`` with eps 1e-6, computed in float32.
Attention: ``num_heads`` query heads share ``num_kv_heads`` key/value heads (query head
``h`` reads key/value head ``h // (num_heads // num_kv_heads)``, as Qwen2's ``repeat_kv``);
q/k/v projections have a bias, the output projection has none (as Qwen2). Rotary position
embedding (rotate-half convention) with base ``rope_theta`` on q and k; scores are
``q.k / sqrt(head_dim)``, softmax in float32. Parameters are initialised N(0, 0.02^2) (as
Qwen2), RMSNorm gains at 1. Matmuls run in ``cfg.dtype`` (bfloat16 on accelerators); the logits
are always float32 (the final projection is done in float32; the vocabulary is tiny).

Rollout axis and shared prefix.
  ``Decoder.__call__`` accepts tokens of shape ``[B, L]`` or ``[B, N, L]``. With the extra rollout
  axis ``N`` the ``N`` sequences of row ``b`` may all attend to one shared *prefix* (the prompt's
  keys/values, shape ``[B, Lp, kv_heads, head_dim]`` per layer), which is never copied ``N``
  times: the attention scores against the prefix are ``einsum('bnqhgd,bphd->bnhgqp')`` and against
  the sequence's own keys ``einsum('bnqhgd,bnkhd->bnhgqk')``; both are normalised by one joint
  softmax (a log-sum-exp merge, see ``attend``), which is exactly attention over the
  concatenated sequence ``[prefix; own tokens]``.

KV cache layout.
  ``KVCache = tuple over layers of (k, v)``. Without a cache the call returns, as its second
  output, the keys/values of the tokens it processed (``[B, L, kv_heads, head_dim]``, or
  ``[B, N, L, ...]`` with a rollout axis) -- e.g. the prompt's, to be used as ``prefix``. With a
  preallocated cache (``[B, (N,) T, kv_heads, head_dim]`` per layer, see ``init_cache``) and
  ``cache_index = i`` the new tokens' keys/values are written at positions ``i .. i + L - 1``
  (``lax.dynamic_update_slice``) and each new token ``i + l`` attends to cache entries ``<= i + l``
  (plus the whole prefix); the updated cache is returned.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Tuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
LayerKV = Tuple[Array, Array]
KVCache = Tuple[LayerKV, ...]

_INIT = nn.initializers.normal(stddev=0.02)


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Sizes of the decoder. Defaults are the paper's maze model (paper section 6.2).

  Attributes:
    vocab_size: number of token ids.
    num_layers: Transformer blocks.
    hidden_dim: residual width; ``head_dim = hidden_dim // num_heads``.
    mlp_dim: inner width of the SiLU-gated MLP.
    num_heads: query heads.
    num_kv_heads: key/value heads (grouped-query attention); divides ``num_heads``.
    rope_theta: RoPE base.
    rms_eps: RMSNorm epsilon.
    max_len: longest sequence (prompt + response) the model is used with.
    dtype: compute dtype name ("float32", or "bfloat16" on accelerators).
    param_dtype: parameter dtype name.
    remat: rematerialise each block in the backward pass (saves activation memory when training
      on many long rollouts).
  """
  vocab_size: int = 32
  num_layers: int = 4
  hidden_dim: int = 256
  mlp_dim: int = 1024
  num_heads: int = 4
  num_kv_heads: int = 2
  rope_theta: float = 1e6
  rms_eps: float = 1e-6
  max_len: int = 512
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat: bool = False

  @property
  def head_dim(self) -> int:
    return self.hidden_dim // self.num_heads

  def validate(self) -> None:
    """Raises ValueError on inconsistent sizes (checked before any compilation)."""
    if self.hidden_dim % self.num_heads:
      raise ValueError(f"hidden_dim={self.hidden_dim} not divisible by num_heads={self.num_heads}")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f"num_heads={self.num_heads} not divisible by num_kv_heads={self.num_kv_heads}")
    if self.head_dim % 2:
      raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")


def _dtype(name: str) -> Any:
  return jnp.dtype(name)


class RMSNorm(nn.Module):
  """``y = x / sqrt(mean(x^2, -1) + eps) * g``, computed in float32, returned in ``dtype``."""
  eps: float
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
    return (y * scale.astype(jnp.float32)).astype(self.dtype)


def rope(x: Array, positions: Array, theta: float) -> Array:
  """Rotary embedding, rotate-half convention.

  For ``x = [x1, x2]`` (halves of the last axis) and angles ``a_j = pos * theta^(-2j/d)``:
  ``rope(x) = [x1 cos a - x2 sin a, x2 cos a + x1 sin a]``.

  Args:
    x: ``[..., L, heads..., D]`` with ``positions`` broadcasting against ``x.shape[:-1]`` after
      appending singleton axes for the head axes.
    positions: ``[..., L]`` integer positions.
    theta: base.
  """
  d = x.shape[-1]
  inv_freq = 1.0 / (theta ** (np.arange(0, d, 2, dtype=np.float32) / d))  # [D/2]
  extra = x.ndim - positions.ndim - 1  # head axes between L and D
  pos = positions.astype(jnp.float32).reshape(positions.shape + (1,) * extra + (1,))
  angles = pos * inv_freq  # [..., L, 1.., D/2]
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  x32 = x.astype(jnp.float32)
  x1, x2 = x32[..., : d // 2], x32[..., d // 2:]
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


def attend(q: Array, k: Array, v: Array, mask: Array,
           prefix: Optional[LayerKV] = None) -> Array:
  r"""Grouped-query softmax attention, optionally over a prefix shared across the rollout axis.

  ``out_i = sum_j softmax_j(s_ij) v_j`` over the keys ``j`` of ``[prefix; own]`` with
  ``s_ij = q_i.k_j`` (q already scaled by ``1/sqrt(D)``) and ``s_ij = -inf`` where ``mask`` is
  False (own keys only; every prefix key is visible). The softmax over the two key segments is
  one joint softmax, merged without concatenating the scores: with ``m_i = max_j s_ij`` (held
  under ``stop_gradient``; the result does not depend on it)

  .. math::  out_i = \frac{\sum_{j \in pre \cup own} e^{s_{ij} - m_i} v_j}
                          {\sum_{j \in pre \cup own} e^{s_{ij} - m_i}}.

  Scores, exponentials and the normaliser are float32; the two value products take the
  exponentials in ``v.dtype`` and accumulate in float32.

  Args:
    q: ``[B, N, Lq, Hkv, G, D]``.
    k: own keys ``[B, N, Lk, Hkv, D]``; v likewise.
    mask: bool ``[Lq, Lk]`` (the same for every sequence).
    prefix: optional ``(k, v)`` each ``[B, Lp, Hkv, D]``, shared by the ``N`` rollouts.

  Returns:
    ``[B, N, Lq, Hkv, G, D]`` in ``q.dtype``.
  """
  f32 = jnp.float32
  s_own = jnp.einsum("bnqhgd,bnkhd->bnhgqk", q, k, preferred_element_type=f32)
  s_own = jnp.where(mask, s_own, jnp.finfo(f32).min)
  m = jnp.max(s_own, axis=-1, keepdims=True)
  if prefix is not None:
    pk, pv = prefix
    s_pre = jnp.einsum("bnqhgd,bphd->bnhgqp", q, pk, preferred_element_type=f32)
    m = jnp.maximum(m, jnp.max(s_pre, axis=-1, keepdims=True))
  m = jax.lax.stop_gradient(m)
  e_own = jnp.exp(s_own - m)
  denom = jnp.sum(e_own, axis=-1)
  out = jnp.einsum("bnhgqk,bnkhd->bnqhgd", e_own.astype(v.dtype), v, preferred_element_type=f32)
  if prefix is not None:
    e_pre = jnp.exp(s_pre - m)
    denom = denom + jnp.sum(e_pre, axis=-1)
    out = out + jnp.einsum("bnhgqp,bphd->bnqhgd", e_pre.astype(pv.dtype), pv,
                           preferred_element_type=f32)
  denom = jnp.transpose(denom, (0, 1, 4, 2, 3))[..., None]  # [B, N, Lq, Hkv, G, 1]
  return (out / denom).astype(q.dtype)


class Attention(nn.Module):
  """GQA self-attention with RoPE, optional shared prefix and optional KV cache."""
  cfg: DecoderConfig

  @nn.compact
  def __call__(self, x: Array, positions: Array, prefix: Optional[LayerKV],
               cache: Optional[LayerKV], cache_index: Optional[Array]) -> Tuple[Array, LayerKV]:
    cfg = self.cfg
    dt, pdt = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
    b, n, l, _ = x.shape
    hkv, g, d = cfg.num_kv_heads, cfg.num_heads // cfg.num_kv_heads, cfg.head_dim
    dense = lambda f, bias, name: nn.Dense(f, use_bias=bias, dtype=dt, param_dtype=pdt,
                                           kernel_init=_INIT, name=name)
    q = dense(cfg.num_heads * d, True, "q_proj")(x).reshape(b, n, l, hkv, g, d)
    k = dense(hkv * d, True, "k_proj")(x).reshape(b, n, l, hkv, d)
    v = dense(hkv * d, True, "v_proj")(x).reshape(b, n, l, hkv, d)
    q = rope(q, positions, cfg.rope_theta) * jnp.asarray(d ** -0.5, dt)
    k = rope(k, positions, cfg.rope_theta)
    qi = jnp.arange(l)
    if cache is None:
      mask = qi[:, None] >= qi[None, :]  # causal, [L, L]
      new_kv = (k, v)
    else:
      ck, cv = cache
      start = (0, 0, cache_index, 0, 0)
      ck = jax.lax.dynamic_update_slice(ck, k.astype(ck.dtype), start)
      cv = jax.lax.dynamic_update_slice(cv, v.astype(cv.dtype), start)
      mask = jnp.arange(ck.shape[2])[None, :] <= (cache_index + qi)[:, None]  # [L, T]
      k, v, new_kv = ck, cv, (ck, cv)
    if prefix is not None:
      prefix = (prefix[0].astype(dt), prefix[1].astype(dt))
    out = attend(q, k.astype(dt), v.astype(dt), mask, prefix)
    out = out.reshape(b, n, l, cfg.num_heads * d)
    return dense(cfg.hidden_dim, False, "o_proj")(out), new_kv


class MLP(nn.Module):
  """SiLU-gated MLP: ``W_down(silu(W_gate x) * (W_up x))``, no biases."""
  cfg: DecoderConfig

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.cfg
    dense = lambda f, name: nn.Dense(f, use_bias=False, dtype=_dtype(cfg.dtype),
                                     param_dtype=_dtype(cfg.param_dtype), kernel_init=_INIT,
                                     name=name)
    h = nn.silu(dense(cfg.mlp_dim, "gate_proj")(x)) * dense(cfg.mlp_dim, "up_proj")(x)
    return dense(cfg.hidden_dim, "down_proj")(h)


class Block(nn.Module):
  """Pre-norm Transformer block."""
  cfg: DecoderConfig

  @nn.compact
  def __call__(self, x, positions, prefix, cache, cache_index):
    cfg = self.cfg
    norm = lambda name: RMSNorm(cfg.rms_eps, _dtype(cfg.dtype), _dtype(cfg.param_dtype), name=name)
    a, kv = Attention(cfg, name="attn")(norm("input_norm")(x), positions, prefix, cache,
                                        cache_index)
    x = x + a
    x = x + MLP(cfg, name="mlp")(norm("post_attention_norm")(x))
    return x, kv


class Decoder(nn.Module):
  """The decoder. See the module docstring for shapes, the shared prefix and the cache."""
  cfg: DecoderConfig

  @nn.compact
  def __call__(self, tokens: Array, positions: Array, cache: Optional[KVCache] = None,
               cache_index: Optional[Array] = None,
               prefix: Optional[KVCache] = None) -> Tuple[Array, KVCache]:
    """Logits of the next token at every input position.

    Args:
      tokens: int32 ``[B, L]`` or ``[B, N, L]``.
      positions: int32, same shape as ``tokens`` (absolute positions, used by RoPE).
      cache: optional preallocated cache (``init_cache``) matching the tokens' leading axes.
      cache_index: scalar int, where the tokens go in the cache (required with ``cache``).
      prefix: optional per-layer ``(k, v)`` ``[B, Lp, kv_heads, head_dim]`` that every sequence of
        row ``b`` attends to in full (a shared prompt); needs ``positions`` to continue after it.

    Returns:
      ``(logits, kv)``: float32 logits ``tokens.shape + (V,)``; ``kv`` the updated cache, or the
      processed tokens' keys/values when no cache was given.
    """
    cfg = self.cfg
    chex.assert_equal_shape([tokens, positions])
    squeeze = tokens.ndim == 2
    if squeeze:
      tokens, positions = tokens[:, None], positions[:, None]
      if cache is not None:
        cache = jax.tree.map(lambda c: c[:, None], cache)
    if cache is not None and cache_index is None:
      raise ValueError("cache_index is required with a cache")
    embed = nn.Embed(cfg.vocab_size, cfg.hidden_dim, dtype=_dtype(cfg.dtype),
                     param_dtype=_dtype(cfg.param_dtype), embedding_init=_INIT, name="embed")
    x = embed(tokens)
    block_cls = nn.remat(Block) if cfg.remat else Block
    new_kv = []
    for i in range(cfg.num_layers):
      x, kv = block_cls(cfg, name=f"layer_{i}")(
          x, positions, None if prefix is None else prefix[i],
          None if cache is None else cache[i], cache_index)
      new_kv.append(kv)
    x = RMSNorm(cfg.rms_eps, _dtype(cfg.dtype), _dtype(cfg.param_dtype), name="final_norm")(x)
    # Tied output projection in float32.
    logits = jnp.einsum("...e,ve->...v", x.astype(jnp.float32),
                        embed.embedding.astype(jnp.float32))
    kv_out = tuple(new_kv)
    if squeeze:
      logits = logits[:, 0]
      kv_out = jax.tree.map(lambda c: c[:, 0], kv_out)
    return logits, kv_out


def init_params(key: Array, cfg: DecoderConfig) -> Any:
  """Initial parameters (a pytree ``{'params': ...}`` for ``Decoder(cfg).apply``)."""
  cfg.validate()
  tokens = jnp.zeros((1, 2), jnp.int32)
  return jax.jit(Decoder(cfg).init)(key, tokens, jnp.zeros_like(tokens))


def num_params(params: Any) -> int:
  """Total number of parameter scalars."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def init_cache(cfg: DecoderConfig, leading: Sequence[int], length: int) -> KVCache:
  """Zero cache, per layer ``(k, v)`` of shape ``leading + (length, kv_heads, head_dim)``."""
  shape = tuple(leading) + (length, cfg.num_kv_heads, cfg.head_dim)
  z = jnp.zeros(shape, _dtype(cfg.dtype))
  return tuple((z, z) for _ in range(cfg.num_layers))
