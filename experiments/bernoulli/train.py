"""The Bernoulli driver's training: the whole grid (:mod:`experiments.bernoulli.steps`) as one
stage of the shared lifecycle (:func:`maxrl_jax.train.stage.run_stage`); the orchestrator
(:mod:`experiments.bernoulli.experiment`) then adds the analysis, figures and summary.

The stage's checkpointed state is ``{"state": per-policy parameters and optimiser states,
"curves": every metric of every run at every step so far}``; the curves are host arrays filled by
the loop's ``on_metrics`` hook (:class:`maxrl_jax.train.loop.Hooks`), so a preempted run resumes
with its history and ends with exactly the curves of an uninterrupted one. Checkpoints are saved
synchronously (the curves are mutated in place between chunks).

Writes ``config.json``, ``metrics.jsonl`` + ``tb/`` (seed means of every run, one line per
chunk) and ``checkpoints/`` (the orchestrator adds the rest of the workdir).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from experiments.bernoulli import analysis as analysis_lib
from experiments.bernoulli import steps as steps_lib
from experiments.bernoulli import validation
from maxrl_jax.train import logs
from maxrl_jax.train import loop
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train import stage as stage_lib

# Fields that do not change the trained curves; they may differ when a workdir is resumed.
RESUME_IGNORE = ("analysis", "figures", "fast_cpu_compile", "checkpoint_every", "preset")


def _initial_tree(grids) -> dict:
  curves = {name: g.empty_curves() for name, g in grids.items()}
  for name, g in grids.items():
    initial = g.initial_metrics()
    for arr in curves[name].values():
      arr[0] = initial  # broadcast over the run axes
  return {"state": {name: g.init_state() for name, g in grids.items()}, "curves": curves}


def train(config, workdir: str | None = None, progress: bool = True) -> dict:
  """Trains every run of every policy (resuming in ``workdir``; nothing written if None).

  Returns ``{"grids": {policy: PolicyGrid}, "curves": {policy: {group: array}}, "state":
  {policy: final params and optimiser states}, "result": StageResult or None}``;
  ``curves[policy]["sampled/n16"]`` is ``[num_steps + 1, estimators, seeds, metrics]`` (row 0:
  initial policy), ``"exact_estimator/n16"`` ``[num_steps + 1, estimators, metrics]`` and
  ``"exact_truncated"`` ``[num_steps + 1, truncations, metrics]``.
  """
  validation.validate(config)
  grids = steps_lib.make_grids(config)
  chunk_fns = {name: g.make_chunk_fn() for name, g in grids.items()}
  host: dict[str, Any] = {"curves": None}

  def writable_curves(tree):
    if host["curves"] is not tree["curves"]:  # fresh or restored: own writable host copies
      host["curves"] = {p: {k: np.array(v) for k, v in c.items()}
                        for p, c in tree["curves"].items()}
    return host["curves"]

  def train_chunk(tree, start, n):
    curves = writable_curves(tree)
    outs = {name: chunk_fns[name](tree["state"][name], jnp.asarray(start, jnp.int32))
            for name in grids}
    metrics = {f"{name}|{key}": arr for name, (_, mets) in outs.items()
               for key, arr in mets.items()}
    return {"state": {name: out[0] for name, out in outs.items()}, "curves": curves}, metrics

  def on_metrics(start, n, metrics, writer):
    curves = host["curves"]
    for flat, arr in metrics.items():
      name, key = flat.split("|", 1)
      curves[name][key][start + 1: start + 1 + n] = arr
    if writer is not None:
      scalars = {}
      for name, g in grids.items():
        row = {k: v[start + n] for k, v in curves[name].items()}
        scalars.update(analysis_lib.curves_to_scalars(config, g, name, row))
      writer.write_scalars(start + n, scalars)

  hooks = loop.Hooks(on_metrics=on_metrics)
  finite = tuple(f"{name}|{key}" for name, g in grids.items() for key in g.empty_curves())
  if workdir is None:
    spec = loop.LoopSpec(total_steps=config.num_steps, chunk_steps=config.chunk_steps,
                         checkpoint_every=config.checkpoint_every or config.num_steps,
                         finite_keys=finite)
    tree, _, reason = loop.run_loop(
        _initial_tree(grids), 0, train_chunk, spec, hooks=hooks,
        progress=logs.Progress(config.num_steps, 0, every_seconds=5.0, name="bernoulli",
                               enabled=progress and mesh_lib.is_chief()))
    result = None
  else:
    program = stage_lib.Program(init_state=lambda: _initial_tree(grids), train_chunk=train_chunk,
                                hooks=hooks)
    result = stage_lib.run_stage(stage(config, workdir, finite), program)
    tree = result.state
  if tree is None:  # preempted before the stage began
    return {"grids": grids, "curves": None, "state": None, "result": result}
  curves = {p: {k: np.asarray(v) for k, v in c.items()} for p, c in tree["curves"].items()}
  return {"grids": grids, "curves": curves, "state": tree["state"], "result": result}


def stage(config, workdir: str, finite_keys=()) -> stage_lib.Stage:
  """The grid's stage in ``workdir`` (one stage: all policies and runs advance together)."""
  return stage_lib.Stage(
      name="bernoulli", workdir=workdir, config=config, total_steps=config.num_steps,
      chunk_steps=config.chunk_steps, checkpoint_every=config.checkpoint_every or config.num_steps,
      steps_field="num_steps", resume_ignore=RESUME_IGNORE, async_checkpointing=False,
      finite_keys=tuple(finite_keys), progress_every_seconds=5.0)
