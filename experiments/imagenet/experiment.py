"""The ImageNet orchestrator (paper section 6.1): every run of ``config.runs``, then the figures.

:func:`run` trains each run once per seed of ``config.seeds`` (all runs of the first seed
first), each training as one stage (``train.train_run``: resumable, returned at once when
complete) in ``<workdir>/<run name>/`` (one seed) or ``<workdir>/<run name>_s<seed>/`` (several),
and stops at the first preempted training. With ``config.sweep_learning_rates`` the runs are
``<run name>_lr<rate>``, one per rate (appendix D.2's sweep). Once every training is complete it
writes the curves and pass@k figures (seed means, min-max bands), the learning-rate figure and
table of a sweep, runs the gradient-norm analysis on the first seed's runs (Figure 8; on every
process, files from process 0) and ``<workdir>/summary.json``.

In a learning-rate sweep a training whose loss or gradient norm turns non-finite (appendix D.2's
rates go up to 1.0) does not stop the sweep: it is recorded in ``<run>/diverged.json`` and
counted as finished without a final evaluation (the table says "diverged"); outside a sweep it
stops the comparison, with the last good checkpoint kept.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np

from experiments.imagenet import analysis as analysis_lib
from experiments.imagenet import data as data_lib
from experiments.imagenet import evaluate
from experiments.imagenet import gradnorm
from experiments.imagenet import plots
from experiments.imagenet import runs as runs_lib
from experiments.imagenet import steps
from experiments.imagenet import train
from experiments.imagenet import validation
from maxrl_jax.train import files
from maxrl_jax.train import logs
from maxrl_jax.train import loop
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train import stage as stage_lib
from maxrl_jax.train.errors import NonFiniteError

SUMMARY_FILE = analysis_lib.SUMMARY_FILE
DIVERGED_FILE = "diverged.json"
LR_SWEEP_TABLE = analysis_lib.LR_SWEEP_TABLE


def _run_entry(run: dict, result: stage_lib.StageResult) -> dict[str, Any]:
  """One training's line of the comparison summary: its final evaluation, flattened."""
  entry = {"objective": str(run["objective"]), "num_rollouts": int(run.get("num_rollouts", 1)),
           "step": int(result.step), "complete": result.complete, "run": str(run["name"]),
           "seed": int(run["seed"]), "learning_rate": float(run["learning_rate"])}
  entry.update(result.summary.get("eval", {}))
  if result.summary.get("diverged"):
    entry["diverged"] = {k: v for k, v in result.summary["diverged"].items() if k != "config"}
  return entry


def _train(config, run: dict, workdir, **kwargs) -> stage_lib.StageResult:
  """``train.train_run`` of one training; in a learning-rate sweep a non-finite loss or gradient
  norm is recorded in ``<workdir>/diverged.json`` (step, metric, value, the run's config) and
  returned as a finished training without evaluation, and a rerun with the same run config
  returns that record without training again."""
  run_config = runs_lib.run_config(config, run)
  if not config.get("sweep_learning_rates", ()):
    return train.train_run(run_config, workdir, **kwargs)
  as_dict = logs.config_to_dict(run_config)
  marker = files.as_path(workdir) / DIVERGED_FILE
  record = files.read_json(marker)
  if not record or stage_lib.config_diff(record["config"], as_dict):  # none for this config
    try:
      return train.train_run(run_config, workdir, **kwargs)
    except NonFiniteError as e:
      record = {"step": int(e.step), "metric": str(e.name), "value": str(e.value),
                "config": as_dict}
      if mesh_lib.is_chief():
        files.write_json(marker, record)
      print(f"[{run['dir']}] diverged at step {e.step} ({e.name}={e.value}); the sweep goes on",
            flush=True)
  return stage_lib.StageResult(None, int(record["step"]), loop.COMPLETED,
                               {"complete": True, "diverged": record})


def _agree(flag: bool) -> bool:
  """Process 0's ``flag`` on every process (decisions that gate collective work)."""
  if jax.process_count() == 1:
    return flag
  return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag, np.int32)))


def run(config, workdir, devices: Sequence[jax.Device] | None = None,
        guard: loop.PreemptionGuard | None = None) -> dict[str, Any]:
  """Runs (resumes) every run of the comparison; returns the comparison summary.

  The summary is ``{"complete", "stopped", "dataset", "generated_data", "model", "preset",
  "num_classes", "runs": {directory: {"objective", "num_rollouts", "step", "complete", "run",
  "seed", "learning_rate", "eval/pass@1", "eval/pass@128", "eval/top1", "eval/mean_log_p",
  "pass_at_k": {k: v}}}, "seeds", "aggregate": {run name: ...} (:func:`analysis.aggregate`),
  "lr_sweep" (with a sweep: :func:`analysis.lr_sweep_summary` plus "table"), "figures": [paths],
  "gradnorm": {"json", "step", "runs", "missing"}, "wall_seconds_this_session"}``. ``runs``
  has one entry per training (per run and seed); a training that did not finish has no
  ``eval`` fields, and a comparison stopped by a preemption (``stopped == "preempted"``,
  ``complete`` False) has no aggregate and no figures and writes no ``summary.json``.
  """
  t0 = time.time()
  mesh = mesh_lib.make_mesh(devices)
  validation.validate(config, mesh)
  builder = data_lib.prepare_dataset(config)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("imagenet_dataset_prepared")
  num_train = data_lib.num_train_examples(config, builder)
  validation.validate_schedule(config, steps.schedule_steps(config, num_train)[1])
  memory = evaluate.MemoryData(config, builder, mesh) if config.data.in_memory else None
  root = files.as_path(workdir)
  if mesh_lib.is_chief():
    files.write_json(root / "config.json", logs.config_to_dict(config))

  runs: dict[str, dict] = {}
  stopped = loop.COMPLETED
  trained = runs_lib.trained_runs(config)
  for r in trained:
    result = _train(config, r, root / r["dir"], mesh=mesh, builder=builder, memory=memory,
                    guard=guard)
    runs[r["dir"]] = _run_entry(r, result)
    if result.preempted:
      stopped = loop.PREEMPTED
      break
  complete = stopped == loop.COMPLETED and len(runs) == len(trained) and all(
      e["complete"] for e in runs.values())
  summary: dict[str, Any] = {
      "complete": complete, "stopped": stopped, "dataset": config.data.dataset,
      "generated_data": config.data.dataset == "pattern_classes",
      "model": config.model.name, "preset": config.get("preset", ""),
      "num_classes": data_lib.num_classes(builder), "runs": runs}
  if not complete:
    summary["wall_seconds_this_session"] = time.time() - t0
    return summary

  summary["seeds"] = list(runs_lib.seeds(config))
  summary["aggregate"] = analysis_lib.aggregate(config, runs)
  sweep = None
  if config.get("sweep_learning_rates", ()):
    sweep = summary["lr_sweep"] = analysis_lib.lr_sweep_summary(config, summary["aggregate"])
    summary["lr_sweep"]["table"] = str(root / LR_SWEEP_TABLE)
    if mesh_lib.is_chief():
      files.write_text(root / LR_SWEEP_TABLE, analysis_lib.lr_sweep_table(sweep))
  figures = plots.draw_all(config, root, lr_sweep=sweep) if mesh_lib.is_chief() else []
  if config.analysis.runs:
    fresh = _agree(gradnorm.is_current(config, root))
    analysis = (gradnorm.load(config, root) if fresh else
                gradnorm.analyse(config, root, mesh=mesh, builder=builder, memory=memory))
    figures.append(analysis["figure"])
    summary["gradnorm"] = {"json": analysis["json"], "step": analysis["step"],
                           "runs": [p["run"] for p in analysis["panels"]],
                           "missing": analysis["missing"]}
  summary["figures"] = figures
  summary["wall_seconds_this_session"] = time.time() - t0
  if mesh_lib.is_chief():
    files.write_json(root / SUMMARY_FILE, summary)
  return summary
