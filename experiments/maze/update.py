"""The maze driver's RL update: one optimiser step from sampled rollouts (paper section 6.2, the
authors' verl actor update), with gradient accumulation over maze micro-batches, the rollout
temperature in the loss, verl's per-micro-batch token-mean and float16 loss scaling.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from experiments.maze import loss_scale as loss_scale_lib
from maxrl_jax import estimators
from maxrl_jax import sampling
from maxrl_jax.train.state import TrainState

# The driver's loss aggregations: maxrl_jax.estimators' two, and verl's per-micro-batch one.
AGGREGATIONS = ("token_mean", "sequence_mean", "microbatch_token_mean")


def blocks(x, size: int):
  """``[B, ...] -> [B // size, size, ...]``."""
  return x.reshape((x.shape[0] // size, size) + x.shape[1:])


def microbatch_tokens(mask, microbatch_size: int):
  """Response tokens of each consecutive micro-batch of ``microbatch_size`` sequences (the
  ``B N`` rollouts flattened maze-major, as verl lays out a batch): float32 ``[B N / S]``."""
  per_seq = mask.reshape(-1, mask.shape[-1]).sum(-1)
  return per_seq.reshape(-1, microbatch_size).sum(-1)


def rl_update(state: TrainState, prompts, out: sampling.SampleOutput, adv, *, model_cfg,
              optimizer, grad_mazes: int, aggregation: str, entropy_coef: float = 0.0,
              return_entropy: bool = False, loss_lengths: tuple[int, ...] = (),
              temperature: float = 1.0, microbatch_size: int = 0, loss_scaling: bool = False):
  r"""One optimiser update from sampled rollouts; gradients accumulated over maze micro-batches.

  The loss is ``estimators.surrogate_loss`` with ``aggregation`` over the whole batch, minus
  ``entropy_coef`` times the same aggregation of the exact per-token entropies; the log-probs
  and entropies are those of the tempered policy ``softmax(logits / temperature)``, the policy
  the rollouts were sampled from (verl divides the logits by the rollout temperature in the
  actor's forward pass).

  * ``"token_mean"`` / ``"sequence_mean"``: each accumulation chunk is normalised by the whole
    batch's token / sequence count, so the chunks sum to the unchunked loss.
  * ``"microbatch_token_mean"`` (verl's ``token-mean`` as its actor computes it): the ``B N``
    rollouts (maze-major) form ``M = B N / S`` consecutive micro-batches of
    ``S = microbatch_size`` sequences and the loss is the mean over them of each one's
    token-mean, :math:`L = \frac{1}{M} \sum_j \frac{1}{T_j} \sum_{(i,t) \in j} -A_i \log\pi`
    (verl divides each micro-batch's token-mean by the accumulation steps and averages the
    gradient over data-parallel ranks). An accumulation chunk of ``grad_mazes N`` sequences
    either holds whole micro-batches or lies inside one; the validation (``rl.grad_mazes``,
    ``rl.loss_microbatch_size``) guarantees one of the two.

  ``loss_scaling``: ``state.opt_state`` is a :class:`loss_scale.LossScaleState`; the loss is
  multiplied by its scale before differentiating and the gradients divided by it (float16).

  ``loss_lengths``: shorter response lengths to compute the loss on when every rollout of the
  batch fits (``lax.switch`` on the longest one; the tokens cut off are padding with mask 0, so
  the update is unchanged).

  Returns ``(state, loss, grads)``: the loss and (unscaled) gradients of the whole batch; with
  ``return_entropy`` also the mean per-token entropy of the policy on the sampled responses.
  """
  if aggregation not in AGGREGATIONS:
    raise ValueError(f"aggregation: must be one of {AGGREGATIONS}, got {aggregation!r}")
  b, n = adv.shape
  g = min(grad_mazes, b)
  num_tokens = jnp.maximum(out.mask.sum(), 1.0)
  scale = loss_scale_lib.scale_of(state.opt_state) if loss_scaling else None
  if loss_scaling and scale is None:
    raise ValueError("loss_scaling: the optimiser state holds no loss scale (build the "
                     "optimiser with loss_scale.dynamic_loss_scale)")
  per_chunk = None  # [B / g] token normalisers of chunks inside one verl micro-batch
  if aggregation == "microbatch_token_mean":
    s, c = int(microbatch_size), g * n
    if s < 1 or (b * n) % s or (c % s and s % c):
      raise ValueError(f"microbatch_size: {s} sequences must divide the batch ({b * n}) and "
                       f"divide or be a multiple of the accumulation chunk ({c} sequences)")
    m = b * n // s
    if c < s:
      tokens = microbatch_tokens(out.mask, s)
      tokens = jnp.where(tokens > 0, tokens, 1.0)  # as estimators' microbatch_token_mean
      per_chunk = m * jnp.repeat(tokens, s // c)
      norm = {}
    else:
      norm = {"microbatch_size": s, "num_microbatches": m}
  else:
    norm = ({"num_tokens": num_tokens} if aggregation == "token_mean"
            else {"num_sequences": b * n})

  def loss_fn(params, p, tokens, mask, a, chunk_norm=None):
    lp, ent = sampling.response_logprobs(params, model_cfg, p, tokens, temperature=temperature,
                                         return_entropy=True)
    bonus = {"token_entropies": ent, "entropy_coef": entropy_coef} if entropy_coef else {}
    if chunk_norm is not None:  # inside one verl micro-batch: its token-mean / M
      loss = estimators.surrogate_loss(lp, mask, a, aggregation="token_mean",
                                       num_tokens=chunk_norm, **bonus)
    else:
      loss = estimators.surrogate_loss(lp, mask, a, aggregation=aggregation, **norm, **bonus)
    if scale is not None:
      loss = loss * scale
    return loss, jax.lax.stop_gradient((ent * mask).sum())

  def body(acc, xs):
    (loss, ent), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, *xs)
    return jax.tree.map(jnp.add, acc, (loss, grads, ent)), None

  zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params),
           jnp.zeros((), jnp.float32))

  def accumulate(length):
    def run(_):
      xs = tuple(blocks(x, g) for x in (prompts, out.tokens[..., :length],
                                        out.mask[..., :length], adv))
      if per_chunk is not None:
        xs = xs + (per_chunk,)
      return jax.lax.scan(body, zeros, xs)[0]
    return run

  full = out.tokens.shape[-1]
  lengths = sorted({int(x) for x in loss_lengths if 0 < x < full} | {full})
  if len(lengths) == 1:
    loss, grads, ent = accumulate(full)(None)
  else:
    longest = jnp.max(out.mask.sum(-1))
    index = jnp.sum(longest > jnp.asarray(lengths[:-1], jnp.float32)).astype(jnp.int32)
    loss, grads, ent = jax.lax.switch(index, [accumulate(x) for x in lengths], None)
  if scale is not None:
    loss = loss / scale
    grads = jax.tree.map(lambda x: x / scale, grads)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  new = TrainState(optax.apply_updates(state.params, updates), opt_state)
  return (new, loss, grads, ent / num_tokens) if return_entropy else (new, loss, grads)
