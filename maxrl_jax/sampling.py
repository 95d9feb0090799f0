"""Autoregressive sampling of N rollouts per prompt, and the log-probabilities the RL loss uses.

The hot loop of the maze experiment (paper section 6.2). For prompts ``x_b`` (all of one length ``Lp``)
we draw ``N`` responses ``y_{b,n} ~ pi_theta^{(T)}(. | x_b)`` from the temperature-``T`` policy
``pi^{(T)}(y_t | x, y_<t) = softmax(z_t / T)[y_t]`` (``z_t`` the logits), stopping each rollout
after its first stop token (``DONE`` or ``<eos>``) and the whole batch as soon as every rollout
has stopped.

Shared prompt. ``sample`` runs the prompt through the model once per prompt (``[B, Lp]``) and
keeps its keys/values ``[B, Lp, kv_heads, head_dim]`` per layer; the ``N`` rollouts of prompt
``b`` attend to them without copying (``Decoder`` with ``prefix``, see
``maxrl_jax.models.transformer``) and keep their own response cache ``[B, N, T_max, ...]``,
updated in place in a ``lax.while_loop``. ``response_logprobs`` does the same in the training
forward/backward pass: the prompt is encoded once per prompt (gradients flow through that
encoding) and the ``[B, N, Lr]`` responses attend to its keys/values.

Randomness is layout independent: the token of prompt ``b``, rollout ``n``, response position ``t``
is drawn with ``fold_in(fold_in(fold_in(key, b), n), t)`` (Gumbel-max via
``jax.random.categorical``), so the shared-prompt sampler, the repeated-prompt sampler and the
uncached sampler draw the same tokens for the same key, up to float rounding of the logits (a
flip needs a near-tie of two Gumbel-perturbed logits, probability ~ rounding error).

The reference variants (tests, benchmarks): ``share_prompt=False`` repeats every prompt ``N`` times
(``[B*N, Lp]``, N copies of the prompt cache); ``use_cache=False`` recomputes the whole sequence
``[B*N, Lp + max_new_tokens]`` at every step. ``sample_naive`` = both.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp

from maxrl_jax import estimators
from maxrl_jax.models import transformer

Array = jax.Array
DecoderConfig = transformer.DecoderConfig


class SampleOutput(NamedTuple):
  """Rollouts.

  Attributes:
    tokens: int32 ``[B, N, max_new_tokens]``, ``pad_id`` after the first stop token.
    mask: float32 ``[B, N, max_new_tokens]``, 1 for generated tokens including the stop token.
    logprobs: float32 ``[B, N, max_new_tokens]``, ``log softmax(z_t / T)[y_t]`` of each sampled
      token under the sampling distribution (0 where ``mask`` is 0).
  """
  tokens: Array
  mask: Array
  logprobs: Array


def rollout_keys(key: Array, num_prompts: int, num_samples: int, first_prompt=0) -> Array:
  """Per-(prompt, rollout) keys ``fold_in(fold_in(key, first_prompt + b), n)``, ``[B, N]``.

  ``first_prompt`` (may be traced) numbers the prompts of a chunk of a larger batch, so sampling
  the batch in chunks draws exactly the rollouts of sampling it at once.
  """
  fold = jax.vmap(jax.random.fold_in, in_axes=(None, 0))
  kb = fold(key, first_prompt + jnp.arange(num_prompts))
  return jax.vmap(fold, in_axes=(0, None))(kb, jnp.arange(num_samples))


def _draw(keys: Array, t: Array, logits: Array, temperature) -> tuple[Array, Array]:
  """Samples ``y ~ softmax(logits / T)`` with key ``fold_in(keys, t)``; returns (y, log p(y)).

  keys: ``[R]`` (+ key data) and logits ``[R, V]`` for ``R`` rollouts.
  """
  scaled = logits.astype(jnp.float32) / temperature
  step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, t)
  tok = jax.vmap(jax.random.categorical)(step_keys, scaled).astype(jnp.int32)
  logp = jnp.take_along_axis(jax.nn.log_softmax(scaled, axis=-1), tok[:, None], axis=-1)[:, 0]
  return tok, logp


def _is_stop(tok: Array, stop_tokens: Sequence[int]) -> Array:
  stop = jnp.zeros(tok.shape, bool)
  for s in stop_tokens:
    stop = stop | (tok == s)
  return stop


class _LoopState(NamedTuple):
  t: Array
  logits: Array      # [R, V] logits of the next token
  cache: Any
  tokens: Array      # [R, T]
  logprobs: Array    # [R, T]
  mask: Array        # [R, T]
  done: Array        # [R]


def _decode_loop(step_fn, init_logits, init_cache, keys, max_new_tokens, temperature,
                 stop_tokens, pad_id, early_exit):
  """Generic decoding loop over flat rollouts ``R``.

  ``step_fn(cache, t, tok[R]) -> (logits[R, V], cache)`` feeds response token ``t`` and returns
  the logits for position ``t + 1``.
  """
  r = init_logits.shape[0]
  tmax = max_new_tokens

  def body(s: _LoopState) -> _LoopState:
    tok, logp = _draw(keys, s.t, s.logits, temperature)
    active = ~s.done
    tok = jnp.where(active, tok, pad_id)
    logp = jnp.where(active, logp, 0.0)
    upd = lambda buf, x: jax.lax.dynamic_update_slice_in_dim(buf, x[:, None], s.t, axis=1)
    done = s.done | (active & _is_stop(tok, stop_tokens))
    logits, cache = step_fn(s.cache, s.t, tok)
    return _LoopState(s.t + 1, logits, cache, upd(s.tokens, tok), upd(s.logprobs, logp),
                      upd(s.mask, active.astype(jnp.float32)), done)

  def cond(s: _LoopState) -> Array:
    go = s.t < tmax
    if early_exit:
      go = go & ~jnp.all(s.done)
    return go

  init = _LoopState(
      t=jnp.zeros((), jnp.int32), logits=init_logits, cache=init_cache,
      tokens=jnp.full((r, tmax), pad_id, jnp.int32),
      logprobs=jnp.zeros((r, tmax), jnp.float32), mask=jnp.zeros((r, tmax), jnp.float32),
      done=jnp.zeros((r,), bool))
  out = jax.lax.while_loop(cond, body, init)
  return (out.tokens, out.mask, out.logprobs), out.t


def _sample_cached(params, cfg, prompts, keys, max_new_tokens, temperature, stop_tokens, pad_id,
                   early_exit):
  """Shared-prompt cached sampler: ``prompts [B, Lp]``, ``keys [B, N]`` -> ``[B*N, T]`` each."""
  model = transformer.Decoder(cfg)
  b, lp = prompts.shape
  n = keys.shape[1]
  pos = jnp.broadcast_to(jnp.arange(lp, dtype=jnp.int32), (b, lp))
  logits_p, prompt_kv = model.apply(params, prompts, pos)
  init_logits = jnp.broadcast_to(logits_p[:, None, -1], (b, n, cfg.vocab_size))
  cache = transformer.init_cache(cfg, (b, n), max_new_tokens)

  def step_fn(cache, t, tok):
    positions = jnp.full((b, n, 1), lp, jnp.int32) + t
    logits, cache = model.apply(params, tok.reshape(b, n, 1), positions, cache=cache,
                                cache_index=t, prefix=prompt_kv)
    return logits.reshape(b * n, -1), cache

  flat_keys = keys.reshape((b * n,) + keys.shape[2:])
  return _decode_loop(step_fn, init_logits.reshape(b * n, -1), cache, flat_keys,
                      max_new_tokens, temperature, stop_tokens, pad_id, early_exit)


def _sample_uncached(params, cfg, prompts, keys, max_new_tokens, temperature, stop_tokens, pad_id,
                     early_exit):
  """No cache: every step recomputes the full ``[R, Lp + T]`` sequence (prompt per rollout)."""
  model = transformer.Decoder(cfg)
  b, lp = prompts.shape
  n = keys.shape[1]
  r, total = b * n, lp + max_new_tokens
  seq = jnp.concatenate([jnp.repeat(prompts, n, axis=0),
                         jnp.full((r, max_new_tokens), pad_id, jnp.int32)], axis=1)
  pos = jnp.broadcast_to(jnp.arange(total, dtype=jnp.int32), (r, total))
  init_logits = model.apply(params, seq, pos)[0][:, lp - 1]

  def step_fn(seq, t, tok):
    seq = jax.lax.dynamic_update_slice_in_dim(seq, tok[:, None], lp + t, axis=1)
    logits = model.apply(params, seq, pos)[0]
    return jax.lax.dynamic_index_in_dim(logits, lp + t, axis=1, keepdims=False), seq

  flat_keys = keys.reshape((r,) + keys.shape[2:])
  return _decode_loop(step_fn, init_logits, seq, flat_keys, max_new_tokens, temperature,
                      stop_tokens, pad_id, early_exit)


def sample(params: Any, cfg: DecoderConfig, prompts: Array, key: Array, *, num_samples: int,
           max_new_tokens: int, temperature: float = 1.0, stop_tokens: Sequence[int] = (),
           pad_id: int = 0, share_prompt: bool = True, use_cache: bool = True,
           early_exit: bool = True, return_num_steps: bool = False, first_prompt=0):
  """Draws ``num_samples`` rollouts per prompt from ``softmax(logits / temperature)``.

  Jitted (static: ``cfg``, the sizes, ``stop_tokens``, ``pad_id`` and the flags); may also be
  called inside another ``jit``.

  Args:
    params: decoder parameters (``init_params``).
    cfg: decoder config.
    prompts: int32 ``[B, Lp]``, all the same length; ``Lp + max_new_tokens <= cfg.max_len``.
    key: PRNG key; token ``(b, n, t)`` uses ``fold_in(fold_in(fold_in(key, b), n), t)``.
    num_samples: ``N`` rollouts per prompt.
    max_new_tokens: response length bound ``T``.
    temperature: sampling temperature ``> 0`` (may be traced; changing it does not recompile).
    stop_tokens: token ids that end a rollout (kept in the response, masked 1).
    pad_id: written after the stop token.
    share_prompt: encode each prompt once and share its cache across the N rollouts (default);
      False repeats the prompt N times (reference/benchmark).
    use_cache: KV-cached decoding (default); False recomputes the whole sequence every step
      (reference/benchmark; implies a repeated prompt).
    early_exit: stop the loop once every rollout has stopped (the outputs do not depend on it).
    return_num_steps: also return the number of decoding steps the loop ran (int32 scalar).
    first_prompt: index of ``prompts[0]`` in a larger batch sampled in chunks (int, may be
      traced): prompt ``b`` then uses ``fold_in(key, first_prompt + b)``.

  Returns:
    ``SampleOutput`` with ``[B, N, max_new_tokens]`` tokens, mask and log-probs (and the step
    count if ``return_num_steps``).
  """
  if num_samples < 1 or max_new_tokens < 1:
    raise ValueError(f"need num_samples >= 1 and max_new_tokens >= 1, got {num_samples}, "
                     f"{max_new_tokens}")
  lp = prompts.shape[-1]
  if lp < 1 or lp + max_new_tokens > cfg.max_len:
    raise ValueError(f"prompt length {lp} + max_new_tokens {max_new_tokens} exceeds "
                     f"max_len {cfg.max_len} (or the prompt is empty)")
  out, steps = _sample_jit(params, cfg, prompts, key, temperature, num_samples=num_samples,
                           max_new_tokens=max_new_tokens,
                           stop_tokens=tuple(int(s) for s in stop_tokens), pad_id=int(pad_id),
                           share_prompt=share_prompt, use_cache=use_cache,
                           early_exit=early_exit, first_prompt=first_prompt)
  return (out, steps) if return_num_steps else out


@functools.partial(jax.jit, static_argnames=(
    "cfg", "num_samples", "max_new_tokens", "stop_tokens", "pad_id", "share_prompt", "use_cache",
    "early_exit"))
def _sample_jit(params, cfg, prompts, key, temperature, *, num_samples, max_new_tokens,
                stop_tokens, pad_id, share_prompt, use_cache, early_exit, first_prompt=0):
  chex.assert_rank(prompts, 2)
  b = prompts.shape[0]
  prompts = prompts.astype(jnp.int32)
  keys = rollout_keys(key, b, num_samples, first_prompt)
  args = (max_new_tokens, temperature, stop_tokens, pad_id, early_exit)
  if not use_cache:
    out, steps = _sample_uncached(params, cfg, prompts, keys, *args)
  elif share_prompt:
    out, steps = _sample_cached(params, cfg, prompts, keys, *args)
  else:
    rep = jnp.repeat(prompts, num_samples, axis=0)
    flat = keys.reshape((b * num_samples, 1) + keys.shape[2:])
    out, steps = _sample_cached(params, cfg, rep, flat, *args)
  out = tuple(x.reshape(b, num_samples, max_new_tokens) for x in out)
  return SampleOutput(*out), steps


def sample_naive(params: Any, cfg: DecoderConfig, prompts: Array, key: Array, *, num_samples: int,
                 max_new_tokens: int, temperature: float = 1.0, stop_tokens: Sequence[int] = (),
                 pad_id: int = 0, early_exit: bool = True, return_num_steps: bool = False):
  """Reference sampler: prompt repeated N times, no KV cache (full recompute every step)."""
  return sample(params, cfg, prompts, key, num_samples=num_samples,
                max_new_tokens=max_new_tokens, temperature=temperature, stop_tokens=stop_tokens,
                pad_id=pad_id, share_prompt=False, use_cache=False, early_exit=early_exit,
                return_num_steps=return_num_steps)


@functools.partial(jax.jit, static_argnames=("cfg", "return_entropy"))
def response_logprobs(params: Any, cfg: DecoderConfig, prompts: Array, responses: Array, *,
                      temperature: float = 1.0, return_entropy: bool = False):
  """``log pi^{(T)}(y_t | x, y_<t)`` for every response token, prompt encoded once.

  Args:
    params: decoder parameters.
    cfg: decoder config.
    prompts: int32 ``[B, Lp]``.
    responses: int32 ``[B, N, Lr]`` (padding after the stop token is scored too; mask it).
    temperature: the sampling temperature (1.0 for the RL loss).

    return_entropy: also return the exact entropy of each token's distribution (float32
      ``[B, N, Lr]``, ``maxrl_jax.estimators.token_entropy``), e.g. for an entropy bonus.

  Returns:
    float32 ``[B, N, Lr]``, differentiable in ``params`` (through the prompt encoding as well);
    with ``return_entropy``, ``(logprobs, entropies)``.
  """
  chex.assert_rank([prompts, responses], [2, 3])
  b, lp = prompts.shape
  n, lr = responses.shape[1:]
  model = transformer.Decoder(cfg)
  pos = jnp.broadcast_to(jnp.arange(lp, dtype=jnp.int32), (b, lp))
  logits_p, prompt_kv = model.apply(params, prompts.astype(jnp.int32), pos)
  first = jnp.broadcast_to(logits_p[:, None, -1:], (b, n, 1, cfg.vocab_size))
  if lr > 1:
    rpos = jnp.broadcast_to(lp + jnp.arange(lr - 1, dtype=jnp.int32), (b, n, lr - 1))
    logits_r, _ = model.apply(params, responses[:, :, :-1].astype(jnp.int32), rpos,
                              prefix=prompt_kv)
    logits = jnp.concatenate([first, logits_r], axis=2)
  else:
    logits = first
  logprobs = _token_logprobs(logits, responses, temperature)
  if return_entropy:
    return logprobs, estimators.token_entropy(logits.astype(jnp.float32) / temperature)
  return logprobs


def _token_logprobs(logits: Array, tokens: Array, temperature) -> Array:
  logp = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)
  return jnp.take_along_axis(logp, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]


@functools.partial(jax.jit, static_argnames=("cfg", "return_entropy"))
def response_logprobs_naive(params: Any, cfg: DecoderConfig, prompts: Array, responses: Array, *,
                            temperature: float = 1.0, return_entropy: bool = False):
  """Reference ``response_logprobs``: prompt repeated N times, one causal pass over
  ``[B*N, Lp + Lr]``."""
  chex.assert_rank([prompts, responses], [2, 3])
  b, lp = prompts.shape
  n, lr = responses.shape[1:]
  seq = jnp.concatenate([jnp.repeat(prompts, n, axis=0),
                         responses.reshape(b * n, lr)], axis=1).astype(jnp.int32)
  pos = jnp.broadcast_to(jnp.arange(lp + lr, dtype=jnp.int32), seq.shape)
  logits = transformer.Decoder(cfg).apply(params, seq, pos)[0][:, lp - 1: lp + lr - 1]
  logprobs = _token_logprobs(logits, responses.reshape(b * n, lr), temperature).reshape(b, n, lr)
  if return_entropy:
    ent = estimators.token_entropy(logits.astype(jnp.float32) / temperature)
    return logprobs, ent.reshape(b, n, lr)
  return logprobs
