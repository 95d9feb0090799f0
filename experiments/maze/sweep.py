"""The maze sweep: one SFT checkpoint, then every (estimator, N) RL run, then the figures.

Workdir layout (every run in its own directory, each resumable on its own)::

  <workdir>/config.json
  <workdir>/sft/                 stage 1: checkpoints/, metrics.jsonl, tb/, summary.json
  <workdir>/rl/<estimator>_n<N>/ stage 2 from sft/'s final parameters: same files
  <workdir>/figures/*.png, <workdir>/table.md
  <workdir>/summary.json         the final numbers of every run (written when all are complete)

A run whose directory holds a complete ``summary.json`` is skipped; an interrupted run resumes
from its latest checkpoint. Running the same command again therefore finishes whatever is left
and redraws the figures. ``config.experiment == "data_scarce"`` uses the same machinery with a
fixed training set (``config.rl.train_set_size``) and also evaluates on the training mazes.
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections

from experiments.maze import plots
from experiments.maze import train
from maxrl_jax.train import logs
from maxrl_jax.train import mesh as mesh_lib


def sft_dir(workdir: str) -> str:
  return os.path.join(workdir, "sft")


def run_dir(workdir: str, name: str) -> str:
  return os.path.join(workdir, "rl", name)


def run_sweep(config: ml_collections.ConfigDict, workdir: str, *, mesh=None,
              max_new_runs: int | None = None, stop_step: int | None = None) -> dict:
  """SFT, the RL grid of ``config`` and the figures, in ``workdir`` (resumable).

  Args:
    config: a maze config (``experiment`` "sweep", "data_scarce" or "single").
    workdir: output directory.
    mesh: device mesh (default: all devices on the "data" axis).
    max_new_runs: start at most this many RL runs that were not already complete, then stop
      (None: all). With ``stop_step``, for tests and for splitting a sweep over several jobs.
    stop_step: stop each started RL run at this step (it stays resumable; no summary).

  Returns:
    The sweep summary (also written to ``workdir/summary.json`` once every run is complete):
    ``{"complete", "sft": {...}, "runs": {name: run summary}, "figures": [...], "table": path,
    "wall_s"}``.
  """
  mesh = mesh if mesh is not None else train.make_mesh()
  train.validate(config, mesh)
  t0 = time.time()
  os.makedirs(workdir, exist_ok=True)
  if mesh_lib.is_chief():
    with logs.MetricWriter(workdir, tensorboard=False) as w:
      w.write_config(config)
  sft_params, sft_summary = train.sft(config, sft_dir(workdir), mesh=mesh)
  initial = {k: v for k, v in sft_summary.get("eval", {}).items()}
  runs = {}
  started = 0
  for estimator, n, name in train.grid_runs(config):
    rdir = run_dir(workdir, name)
    done = train.read_summary(rdir)
    if done is not None:
      print(f"[maze sweep] {name}: complete, skipped", flush=True)
      runs[name] = done
      continue
    if max_new_runs is not None and started >= max_new_runs:
      continue
    started += 1
    cfg = train.rl_config(config, estimator, n)
    _, summary = train.rl(cfg, rdir, sft_params, mesh=mesh, stop_step=stop_step,
                          initial_eval=initial)
    if summary.get("complete"):
      runs[name] = summary
  complete = len(runs) == len(train.grid_runs(config))
  out = {"complete": complete, "experiment": config.experiment, "preset": config.preset,
         "sft": sft_summary, "runs": runs, "this_invocation_wall_s": time.time() - t0}
  if runs and mesh_lib.is_chief():
    out.update(plots.draw_all(workdir))
  if complete:
    train.write_json(os.path.join(workdir, train.SUMMARY_FILE), out)
  jax.effects_barrier()
  return out
