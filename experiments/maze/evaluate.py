"""Maze evaluation: pass@k (unbiased) and best@k (the authors' bootstrap) on held-out mazes.

``n`` samples per test maze at temperature ``eval.temperature``; ``c`` of them reach the goal.
Sampling is split into calls of at most ``eval.mazes_per_call`` mazes x
``eval.samples_per_call`` rollouts (a memory bound), one compiled program for every call; every
process runs the same number of calls (the last maze block is padded), so multi-host runs stay in
step.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.maze import data as maze_data
from experiments.maze import steps
from maxrl_jax import metrics as metrics_lib
from maxrl_jax import sampling
from maxrl_jax.train import mesh as mesh_lib


@functools.lru_cache(maxsize=None)
def _eval_program(task, model_cfg, num_samples, temperature, compile_options, mesh):
  """Jitted ``(params, grids[M, S, S], key) -> successes[M]`` among ``num_samples`` rollouts."""

  # Replicated output: every process reads all counts (multi-host runs).
  @functools.partial(jax.jit, compiler_options=dict(compile_options) or None,
                     out_shardings=mesh_lib.replicated(mesh))
  def successes(params, grids, key):
    prompts = task.prompts(grids)
    out = sampling.sample(params, model_cfg, prompts, key, num_samples=num_samples,
                          max_new_tokens=task.max_response_length, temperature=temperature,
                          stop_tokens=task.stop_tokens, pad_id=task.pad_id)
    return task.rewards(grids, out.tokens).sum(-1).astype(jnp.int32)

  return successes


def _divisor_at_most(n: int, cap: int) -> int:
  """The largest divisor of ``n`` that is <= ``cap``."""
  return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def success_counts(params, model_cfg, task: maze_data.MazeTask, grids: jax.Array,
                   key: jax.Array, *, num_samples: int, samples_per_call: int,
                   mazes_per_call: int, temperature: float = 1.0, mesh=None,
                   compile_options: tuple = ()) -> np.ndarray:
  """Successes ``c`` per maze among ``num_samples`` samples (host int array ``[M]``).

  Sampling is split into calls of at most ``mazes_per_call`` mazes x ``samples_per_call``
  rollouts (a memory bound); the sample block is the largest divisor of ``num_samples`` within
  the bound and the maze block a multiple of the device count (a last partial maze block is
  padded and the padding dropped), so every call reuses one compiled program.
  """
  grids = np.asarray(grids)
  m = grids.shape[0]
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  ndev = mesh.devices.size
  mb = -(-min(mazes_per_call, m) // ndev) * ndev
  sb = _divisor_at_most(num_samples, samples_per_call)
  program = _eval_program(task, model_cfg, sb, float(temperature), compile_options, mesh)
  counts = np.zeros((m,), np.int64)
  for i0 in range(0, m, mb):
    block = grids[i0:i0 + mb]
    valid = block.shape[0]
    if valid < mb:
      block = np.concatenate([block, np.repeat(block[:1], mb - valid, 0)], 0)
    block = mesh_lib.put_global(block, mesh_lib.batch_sharding(mesh))
    for j0 in range(0, num_samples, sb):
      k = jax.random.fold_in(jax.random.fold_in(key, i0), j0)
      c = program(params, block, k)
      counts[i0:i0 + valid] += np.asarray(c.addressable_data(0))[:valid]
  return counts


def pass_at_k_table(counts: np.ndarray, num_samples: int, ks) -> dict[str, float]:
  """Mean pass@k over mazes for every ``k <= num_samples``, two estimators side by side.

  ``pass@k``: the unbiased ``1 - C(n-c, k)/C(n, k)`` (paper appendix G). ``best@k``: the
  authors' bootstrap best@k, ``1 - (1 - c/n)^k`` in closed form (what their plotted numbers
  are; lower than pass@k at large k). ``pass@k_ci``: a 95% bootstrap interval over mazes.
  """
  counts = np.asarray(counts)
  out = {}
  for k in ks:
    if k <= num_samples:
      per_maze = np.asarray(metrics_lib.pass_at_k(num_samples, counts, k), np.float64)
      out[f"pass@{k}"] = float(per_maze.mean())
      out[f"best@{k}"] = float(np.mean(metrics_lib.best_at_k(num_samples, counts, k)))
      _, lo, hi = metrics_lib.bootstrap_ci(per_maze, num_resamples=2000, seed=k)
      out[f"pass@{k}_ci_low"], out[f"pass@{k}_ci_high"] = float(lo), float(hi)
  return out


def evaluate(params, model_cfg, task: maze_data.MazeTask, grids, key, *, num_samples: int,
             ks, samples_per_call: int, mazes_per_call: int, temperature: float = 1.0,
             mesh=None, compile_options: tuple = ()) -> dict[str, float]:
  """pass@k (unbiased, averaged over ``grids``) for every ``k <= num_samples``.

  Returns ``{"pass@k": ...}`` plus ``"solved_any"`` (fraction of mazes with at least one
  success among the ``num_samples``).
  """
  out, _ = evaluate_counts(params, model_cfg, task, grids, key, num_samples=num_samples, ks=ks,
                           samples_per_call=samples_per_call, mazes_per_call=mazes_per_call,
                           temperature=temperature, mesh=mesh, compile_options=compile_options)
  return out


def evaluate_counts(params, model_cfg, task, grids, key, *, num_samples: int, ks,
                    samples_per_call: int, mazes_per_call: int, temperature: float = 1.0,
                    mesh=None, compile_options: tuple = ()) -> tuple[dict[str, float], np.ndarray]:
  """:func:`evaluate` and the per-maze success counts it was computed from."""
  counts = success_counts(params, model_cfg, task, grids, key, num_samples=num_samples,
                          samples_per_call=samples_per_call, mazes_per_call=mazes_per_call,
                          temperature=temperature, mesh=mesh, compile_options=compile_options)
  out = pass_at_k_table(counts, num_samples, ks)
  out["solved_any"] = float((counts > 0).mean())
  return out, counts


def eval_sets(config, task) -> dict[str, np.ndarray]:
  """Named maze sets evaluated: ``test`` (unless ``eval.num_mazes`` is 0), ``validation`` when
  ``eval.validation_mazes`` > 0, ``train`` in the data-scarce regime."""
  sets = {}
  if config.eval.num_mazes:
    sets["test"] = np.asarray(task.test_grids())[: config.eval.num_mazes]
  if config.eval.get("validation_mazes", 0):
    sets["validation"] = np.asarray(task.validation_grids())[: config.eval.validation_mazes]
  if config.eval.train_mazes:
    sets["train"] = np.asarray(task.fixed_train_grids(config.rl.train_set_size)
                               )[: config.eval.train_mazes]
  return sets


# Fixed fold_in tags of the evaluation sets (the keys of a set do not depend on the others).
_SET_TAGS = {"test": 0, "train": 1, "validation": 2}


def evaluate_sets(params, model_cfg, task, config, step: int, num_samples: int, mesh,
                  counts_out: dict | None = None) -> dict[str, float]:
  """``{"eval/<set>/pass@k": ...}`` over every evaluation set (keys fixed by ``step``).

  ``counts_out``, if given, receives ``{set: int array [mazes]}``, the successes per maze among
  ``num_samples`` (what the report's paired bootstrap over mazes and seeds resamples).
  """
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), steps.EVAL_STREAM), step)
  out = {}
  for name, grids in eval_sets(config, task).items():
    res, counts = evaluate_counts(
        params, model_cfg, task, grids, jax.random.fold_in(key, _SET_TAGS[name]),
        num_samples=num_samples, ks=config.eval.ks,
        samples_per_call=config.eval.samples_per_call,
        mazes_per_call=config.eval.mazes_per_call, temperature=config.eval.temperature,
        mesh=mesh, compile_options=steps.compile_options(config))
    out.update({f"eval/{name}/{k}": v for k, v in res.items()})
    if counts_out is not None:
      counts_out[name] = counts
  return out
