"""The maze orchestrator (:func:`run`): one SFT stage, then every (estimator, N) RL run, then
the figures.

Workdir layout (every stage in its own directory, each resumable on its own)::

  <workdir>/config.json
  <workdir>/sft/                 stage 1: checkpoints/, metrics.jsonl, tb/, summary.json,
                                 eval_counts.json (successes per test maze)
  <workdir>/sft_s<seed>/         repeats of stage 1 with the other sweep.sft_seeds
  <workdir>/rl/<run name>/       stage 2 from sft/'s final parameters: same files; run names
                                 <estimator>_n<N>[_lr<rate>][_s<seed>] (runs.run_name)
  <workdir>/figures/*.png, <workdir>/table.md
  <workdir>/summary.json         the final numbers of every run (written when all are complete)

A stage whose directory holds a complete ``summary.json`` is skipped; an interrupted one resumes
from its latest checkpoint. The orchestrator stops at the first preempted stage (SIGTERM) and
never starts RL from an SFT stage that is not complete. Running the same command again finishes
whatever is left and redraws the figures.
"""

from __future__ import annotations

import time

import jax
import ml_collections

from experiments.maze import plots
from experiments.maze import runs as runs_lib
from experiments.maze import train
from experiments.maze import validation
from maxrl_jax.train import files
from maxrl_jax.train import logs
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train import stage as stage_lib


def sft_dir(workdir: str, repeat_seed: int | None = None) -> str:
  """``<workdir>/sft`` (the first of sweep.sft_seeds, RL's start), ``sft_s<seed>`` (repeats)."""
  return str(files.as_path(workdir) / ("sft" if repeat_seed is None else f"sft_s{repeat_seed}"))


def run_dir(workdir: str, name: str) -> str:
  return str(files.as_path(workdir) / "rl" / name)


def run_sweep(config: ml_collections.ConfigDict, workdir: str, *, mesh=None,
              max_new_runs: int | None = None) -> dict:
  """SFT, the RL grid of ``config`` and the figures, in ``workdir`` (resumable).

  Args:
    config: a maze config (``experiment`` "sweep", "data_scarce" or "single").
    workdir: output directory (any epath path, e.g. ``gs://``).
    mesh: device mesh (default: all devices on the "data" axis).
    max_new_runs: start at most this many RL runs that were not already complete (None: all);
      for splitting a sweep over several jobs.

  Returns:
    ``{"complete", "preempted", "sft": {...}, "runs": {name: run summary}, "figures": [...],
    "table": path, ...}`` (also written to ``workdir/summary.json`` once every run is complete).
  """
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  validation.validate(config, mesh)
  t0 = time.time()
  if mesh_lib.is_chief():
    files.write_json(files.as_path(workdir) / logs.CONFIG_FILE, logs.config_to_dict(config))
  out = {"complete": False, "preempted": False, "experiment": config.experiment,
         "preset": config.preset, "runs": {}}
  sft_seeds = [int(s) for s in config.sweep.get("sft_seeds", (0,))]
  if config.experiment == "single":
    sft_seeds = sft_seeds[:1]
  first = sft_seeds[0]
  sft = train.sft(runs_lib.sft_config(config, first), sft_dir(workdir), mesh=mesh)
  out["sft"] = sft.summary
  if not sft.complete:  # preempted: never start RL from a half-trained model
    out["preempted"] = sft.preempted
    return out
  initial = dict(sft.summary.get("eval", {}))
  started = 0
  grid = runs_lib.grid_runs(config)
  for run in grid:
    rdir = run_dir(workdir, run.name)
    if stage_lib.read_summary(rdir) is None:
      if max_new_runs is not None and started >= max_new_runs:
        continue
      started += 1
    result = train.rl(runs_lib.rl_config(config, run), rdir, sft.state.params,
                      mesh=mesh, initial_eval=initial)
    if result.preempted:
      out["preempted"] = True
      return out
    if result.complete:
      out["runs"][run.name] = result.summary
  # Repeats of stage 1 (the spread of the starting point), after the RL grid.
  out["sft_repeats"] = {}
  for seed in sft_seeds[1:]:
    rep = train.sft(runs_lib.sft_config(config, seed), sft_dir(workdir, seed), mesh=mesh)
    if rep.preempted:
      out["preempted"] = True
      return out
    out["sft_repeats"][str(seed)] = rep.summary
  out["complete"] = (len(out["runs"]) == len(grid)
                     and len(out["sft_repeats"]) == len(sft_seeds) - 1)
  out["this_invocation_wall_s"] = time.time() - t0
  if out["runs"] and mesh_lib.is_chief():
    out.update(plots.draw_all(workdir))
  if out["complete"] and mesh_lib.is_chief():
    files.write_json(files.as_path(workdir) / stage_lib.SUMMARY_FILE, out)
  jax.effects_barrier()
  return out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The experiment ``config.experiment`` in ``workdir`` (resumable); returns its summary."""
  return run_sweep(config, workdir)
