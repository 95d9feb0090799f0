"""Rollout throughput and RL step time of the maze policy: shared prompt against naive.

  python benchmarks/maze_sampler.py                   # cpu preset (7x7 mazes, tiny model)
  python benchmarks/maze_sampler.py --preset=paper    # 17x17, 256 mazes, N up to 128 (accelerator)
  python benchmarks/maze_sampler.py --ns=4,32 --repeats=5

For each N (rollouts per maze) it measures, on the same mazes, parameters and key:

  sampling (maxrl_jax.sampling.sample, KV cache in a lax.while_loop):
    shared    prompt encoded once per maze, the N rollouts attend to its keys/values
    repeated  prompt repeated N times (N copies of the prompt cache)
    nocache   prompt repeated N times and no cache: the whole sequence recomputed every step
  RL step (the maze driver's update, experiments.maze.steps.rl_update: MaxRL advantages, the
  token-mean surrogate loss on the sampled responses, forward + backward accumulated over maze
  micro-batches, the paper's AdamW with clipping):
    shared    maxrl_jax.sampling.response_logprobs (prompt encoded once per maze)
    naive     the same update traced with response_logprobs_naive (prompt repeated N times)

and prints one JSON object: seconds per call (median of --repeats, compilation excluded and
reported separately), generated tokens per second (tokens up to and including each rollout's stop
token), and the ratios shared/naive. Large batches are processed in chunks of mazes (per-variant
rollout budgets of the preset, gradient accumulation for the RL step) so the naive variants fit in
memory; ``nocache`` runs on the first ``nocache_mazes`` mazes only and is compared as a rate.
The model is untrained (random initialisation): rollouts rarely stop early, so most calls run
``max_new_tokens`` decoding steps (reported as ``decode_steps``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from experiments.maze import steps as maze_steps  # noqa: E402
from maxrl_jax import estimators  # noqa: E402
from maxrl_jax import sampling  # noqa: E402
from maxrl_jax.envs import maze as M  # noqa: E402
from maxrl_jax.models import transformer as tf  # noqa: E402
from maxrl_jax.train.state import TrainState  # noqa: E402

PRESETS = {
    # About a minute on 2 idle CPU cores (most of it compilation).
    "cpu": dict(
        size=7, num_mazes=4, ns=(4, 16), max_new_tokens=20, repeats=3, nocache_mazes=2,
        model=dict(num_layers=2, hidden_dim=64, mlp_dim=256, num_heads=4, num_kv_heads=2,
                   max_len=128, dtype="float32"),
        sample_rollouts={"shared": 1 << 20, "repeated": 1 << 20, "nocache": 1 << 20},
        rl_rollouts={"shared": 1 << 20, "naive": 1 << 20}),
    # paper section 6.2 scaling sweep: 17x17 (prompt 310 tokens), 256 mazes per batch, response <= 180,
    # the ~3.9M-parameter model in bfloat16. For one accelerator with >= 40 GB.
    "paper": dict(
        size=17, num_mazes=256, ns=(4, 16, 128), max_new_tokens=180, repeats=2, nocache_mazes=8,
        model=dict(max_len=512, dtype="bfloat16", remat=True),
        sample_rollouts={"shared": 32768, "repeated": 4096, "nocache": 1024},
        rl_rollouts={"shared": 1024, "naive": 512}),
}


def _chunk(num_mazes: int, n: int, rollout_budget: int) -> int:
  """Largest divisor of num_mazes with chunk * n <= rollout_budget (at least 1)."""
  best = 1
  for c in range(1, num_mazes + 1):
    if num_mazes % c == 0 and c * n <= rollout_budget:
      best = c
  return best


def _timed(fn, repeats: int):
  """(first-call seconds incl. compilation, median seconds of ``repeats`` further calls, output)."""
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn())
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return first, statistics.median(times), out


def _sample_all(params, cfg, prompts, key, n, max_new_tokens, variant, chunk):
  """Samples every maze in chunks; returns SampleOutput over all mazes and the max step count."""
  outs, steps = [], []
  for i in range(0, prompts.shape[0], chunk):
    out, s = sampling.sample(
        params, cfg, prompts[i:i + chunk], jax.random.fold_in(key, i), num_samples=n,
        max_new_tokens=max_new_tokens, stop_tokens=M.STOP_TOKENS, pad_id=M.PAD,
        share_prompt=variant == "shared", use_cache=variant != "nocache", return_num_steps=True)
    outs.append(out)
    steps.append(s)
  cat = sampling.SampleOutput(*(jnp.concatenate(x, axis=0) for x in zip(*outs)))
  return cat, jnp.max(jnp.stack(steps))


def make_rl_step(cfg, optimizer, variant: str, chunk: int):
  """The maze driver's RL update (``experiments.maze.steps.rl_update``) on given rollouts.

  MaxRL advantages from the rewards, the token-mean surrogate loss, gradients accumulated over
  micro-batches of ``chunk`` mazes, one optimiser step: ``(state, prompts, tokens, mask,
  rewards) -> (state, loss)``. ``naive`` is the same update traced with the prompt repeated N
  times in the loss (``sampling.response_logprobs_naive`` in place of ``response_logprobs``).
  """

  def step(state, prompts, tokens, mask, rewards):
    adv = estimators.advantages(rewards, "maxrl")
    out = sampling.SampleOutput(tokens, mask, jnp.zeros_like(mask))
    res = maze_steps.rl_update(state, prompts, out, adv, model_cfg=cfg, optimizer=optimizer,
                               grad_mazes=chunk, aggregation="token_mean")
    return res[0], res[1]  # (state, loss, grads[, ...])

  jitted = jax.jit(step)
  if variant == "shared":
    return jitted

  def naive(*args):
    # Traced (first call) with the repeated-prompt log-probabilities; later calls hit the cache.
    with mock.patch.object(sampling, "response_logprobs", sampling.response_logprobs_naive):
      return jitted(*args)

  return naive


def run(preset: str, ns=None, repeats=None, seed: int = 0) -> dict:
  p = dict(PRESETS[preset])
  ns = tuple(ns or p["ns"])
  repeats = repeats or p["repeats"]
  cfg = tf.DecoderConfig(vocab_size=M.VOCAB_SIZE, **p["model"])
  params = tf.init_params(jax.random.PRNGKey(seed), cfg)
  grids = M.train_batch(seed, 0, p["num_mazes"], p["size"])
  prompts = jax.vmap(M.prompt_tokens)(grids)
  t_max = p["max_new_tokens"]
  key = jax.random.PRNGKey(seed + 1)
  reward_fn = jax.jit(jax.vmap(jax.vmap(M.reward, in_axes=(None, 0)), in_axes=(0, 0)))
  # The paper's RL optimiser (experiments/maze/config.py): AdamW lr 1e-4, betas (0.9, 0.999),
  # weight decay 0.01, clipping at global norm 1.0.
  optimizer = maze_steps.make_optimizer((1e-4, 0.01, 0, 1.0, (0.9, 0.999)))
  state = TrainState(params, optimizer.init(params))

  result = {
      "preset": preset, "device": str(jax.devices()[0].device_kind),
      "backend": jax.default_backend(), "num_params": tf.num_params(params),
      "model": {k: getattr(cfg, k) for k in ("num_layers", "hidden_dim", "mlp_dim", "num_heads",
                                             "num_kv_heads", "dtype", "remat")},
      "maze_size": p["size"], "prompt_len": int(prompts.shape[1]),
      "num_mazes": p["num_mazes"], "max_new_tokens": t_max, "repeats": repeats, "per_n": {},
  }
  for n in ns:
    row = {"sample": {}, "rl_step": {}}
    shared_out = None
    for variant in ("shared", "repeated", "nocache"):
      mazes = p["num_mazes"] if variant != "nocache" else min(p["nocache_mazes"], p["num_mazes"])
      chunk = _chunk(mazes, n, p["sample_rollouts"][variant])
      fn = functools.partial(_sample_all, params, cfg, prompts[:mazes], key, n, t_max, variant,
                             chunk)
      first, sec, (out, steps) = _timed(fn, repeats)
      gen = float(jnp.sum(out.mask))
      row["sample"][variant] = {
          "mazes": mazes, "chunk_mazes": chunk, "seconds": sec, "first_call_seconds": first,
          "generated_tokens": gen, "tokens_per_s": gen / sec, "decode_steps": int(steps)}
      if variant == "shared":
        shared_out = out
    s = row["sample"]
    row["sample"]["speedup_shared_over_repeated"] = (
        s["shared"]["tokens_per_s"] / s["repeated"]["tokens_per_s"])
    row["sample"]["speedup_shared_over_nocache"] = (
        s["shared"]["tokens_per_s"] / s["nocache"]["tokens_per_s"])
    # The untrained policy solves no maze; for a non-degenerate loss the RL step uses
    # Bernoulli(1/2) rewards (the step's cost does not depend on their values).
    row["mean_verifier_reward"] = float(jnp.mean(reward_fn(grids, shared_out.tokens)))
    rewards = jax.random.bernoulli(jax.random.fold_in(key, n), 0.5, (p["num_mazes"], n))
    for variant in ("shared", "naive"):
      chunk = _chunk(p["num_mazes"], n, p["rl_rollouts"][variant])
      step = make_rl_step(cfg, optimizer, variant, chunk)
      fn = lambda: step(state, prompts, shared_out.tokens, shared_out.mask, rewards)
      first, sec, (_, loss) = _timed(fn, repeats)
      row["rl_step"][variant] = {"chunk_mazes": chunk, "seconds": sec,
                                 "first_call_seconds": first, "loss": float(loss),
                                 "rollouts_per_s": p["num_mazes"] * n / sec}
    row["rl_step"]["speedup_shared_over_naive"] = (
        row["rl_step"]["naive"]["seconds"] / row["rl_step"]["shared"]["seconds"])
    result["per_n"][str(n)] = row
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
  parser.add_argument("--ns", default=None, help="comma-separated N values (default: preset's)")
  parser.add_argument("--repeats", type=int, default=None)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  ns = tuple(int(x) for x in args.ns.split(",")) if args.ns else None
  t0 = time.perf_counter()
  result = run(args.preset, ns, args.repeats, args.seed)
  result["wall_seconds"] = time.perf_counter() - t0
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
