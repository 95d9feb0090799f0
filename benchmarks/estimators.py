"""Benchmark: advantages + surrogate loss + its gradient, jitted JAX vs a plain NumPy loop.

For reward arrays of shape ``[256, 1024]`` and ``[4096, 16]`` (prompts x rollouts) it times

* JAX: one jitted function ``(rewards, logprobs) -> (loss, d loss / d logprobs)`` built from
  :func:`maxrl_jax.estimators.advantages` and
  :func:`maxrl_jax.estimators.surrogate_loss_from_logprobs`;
* NumPy: a Python loop over prompts computing the same advantages, loss and analytic gradient
  ``-A / (B N)`` row by row (the straightforward host implementation),

checks that both agree, and prints one JSON object with the median times and their ratio.

  python -m benchmarks.estimators [--repeats=20] [--methods=maxrl,grpo,pkpo,...]
"""

from __future__ import annotations

import json
import math
import platform
import time
from typing import Callable, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from maxrl_jax import estimators

SHAPES = ((256, 1024), (4096, 16))

_REPEATS = flags.DEFINE_integer("repeats", 20, "Timed repetitions (median reported).")
_METHODS = flags.DEFINE_list(
    "methods", ["maxrl", "grpo", "rloo", "maxrl_truncated", "maxrl_maclaurin", "pkpo", "dsgrpo"],
    "Estimators to time (maxrl_truncated and maxrl_maclaurin use T = N // 4, pkpo k = min(16, N)).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random rewards and log-probabilities.")


def _options(method: str, n: int) -> dict:
  if method in ("maxrl_truncated", "maxrl_maclaurin"):
    return {"truncation": max(1, n // 4)}
  if method == "pkpo":
    return {"k": min(16, n)}
  return {}


def _numpy_row_advantages(r: np.ndarray, method: str, options: dict,
                          logp: np.ndarray) -> np.ndarray:
  """One prompt's advantages, written directly from the definitions (float64 NumPy)."""
  n = r.shape[0]
  k = r.sum()
  if method == "maxrl_maclaurin":  # success 1; failure -sum_{j=2}^T C(F-1,j-1)/C(N-1,j-1)
    f, t = n - int(k), options["truncation"]
    term, fail = 1.0, 0.0
    for j in range(2, min(t, f) + 1):
      term *= (f - j + 1) / (n - j + 1)
      fail -= term
    return np.where(r > 0, 1.0, fail)
  if method == "pkpo":  # k C(N-K, k-1)/C(N-1, k-1) for a success, 0 for a failure
    kk = options["k"]
    c = math.prod((n - k - j) / (n - 1 - j) for j in range(kk - 1)) if k > 0 else 0.0
    return kk * r * max(c, 0.0)
  if method == "dsgrpo":
    adv = (r - r.mean()) / (r.std() + 1e-6)
    return adv - 0.05 * np.where(r > 0, logp, 0.0) + 0.05 * np.where(r == 0, logp, 0.0)
  if method == "maxrl":
    return n * r / k - 1.0 if k > 0 else np.zeros(n)
  if method == "grpo":
    return (r - r.mean()) / (r.std() + 1e-6)
  if method == "rloo":
    return r - (k - r) / (n - 1)
  if method == "maxrl_truncated":
    t = options["truncation"]
    q = 0.0 if k > n - t else math.prod(1.0 - k / (n - j) for j in range(t))
    return n * r * (1.0 - q) / k - 1.0 if k > 0 else -np.ones(n)
  raise ValueError(f"methods: no NumPy reference for {method!r}")


def _numpy_loop(rewards: np.ndarray, logprobs: np.ndarray, method: str, options: dict):
  b, n = rewards.shape
  grad = np.empty_like(logprobs)
  loss = 0.0
  for i in range(b):
    adv = _numpy_row_advantages(rewards[i], method, options, logprobs[i])
    loss -= float(np.dot(adv, logprobs[i])) / (b * n)
    grad[i] = -adv / (b * n)
  return loss, grad


def _jax_step(method: str, options: dict) -> Callable:
  def loss_fn(logprobs, rewards):
    # dsgrpo also takes each rollout's log-probability (here the same log-probabilities).
    extra = ({"logprobs": jax.lax.stop_gradient(logprobs)}
             if method in estimators.LOGPROB_METHODS else {})
    adv = estimators.advantages(rewards, method, **extra, **options)
    return estimators.surrogate_loss_from_logprobs(logprobs, adv)

  @jax.jit
  def step(rewards, logprobs):
    return jax.value_and_grad(loss_fn)(logprobs, rewards)

  return step


def _median_seconds(fn: Callable, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def run_benchmark(methods: Sequence[str], repeats: int, seed: int = 0) -> dict:
  """Times every (shape, method) pair side by side; returns the JSON-ready report."""
  rng = np.random.default_rng(seed)
  results = []
  for b, n in SHAPES:
    p = rng.uniform(0.0, 0.3, size=(b, 1))  # per-prompt pass rates, some groups all-zero
    rewards = (rng.random((b, n)) < p).astype(np.float32)
    logprobs = np.log(rng.uniform(0.01, 1.0, size=(b, n))).astype(np.float32)
    rewards_d, logprobs_d = jnp.asarray(rewards), jnp.asarray(logprobs)
    for method in methods:
      options = _options(method, n)
      step = _jax_step(method, options)
      start = time.perf_counter()
      jax.block_until_ready(step(rewards_d, logprobs_d))
      compile_s = time.perf_counter() - start
      jax_s = _median_seconds(lambda: step(rewards_d, logprobs_d), repeats)
      np_repeats = max(1, repeats // 5)
      numpy_s = _median_seconds(
          lambda: _numpy_loop(rewards.astype(np.float64), logprobs.astype(np.float64), method,
                              options), np_repeats)
      loss, grad = step(rewards_d, logprobs_d)
      ref_loss, ref_grad = _numpy_loop(rewards.astype(np.float64), logprobs.astype(np.float64),
                                       method, options)
      grad_err = float(np.max(np.abs(np.asarray(grad, np.float64) - ref_grad)) * b * n)
      if not (abs(float(loss) - ref_loss) <= 1e-4 * max(1.0, abs(ref_loss)) and grad_err < 1e-3):
        raise AssertionError(f"{method} {b}x{n}: JAX and NumPy disagree (grad err {grad_err})")
      results.append({
          "shape": f"{b}x{n}",
          "method": method,
          "options": options,
          "jax_jit_ms": 1e3 * jax_s,
          "jax_compile_s": compile_s,
          "numpy_loop_ms": 1e3 * numpy_s,
          "speedup_numpy_over_jax": numpy_s / jax_s,
          "max_abs_advantage_diff_vs_numpy": grad_err,
      })
  return {
      "benchmark": "estimators: advantages + surrogate loss + gradient",
      "device": str(jax.devices()[0]),
      "backend": jax.default_backend(),
      "jax": jax.__version__,
      "python": platform.python_version(),
      "repeats": repeats,
      "results": results,
  }


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  print(json.dumps(run_benchmark(_METHODS.value, _REPEATS.value, _SEED.value), indent=1))


if __name__ == "__main__":
  app.run(main)
