"""The ImageNet comparison (paper section 6.1): every run of ``config.runs``, then the figures.

:func:`run` trains each run as one stage (``train.train_run``: resumable, returned at once when
complete) in ``<workdir>/<run name>/`` and stops at the first preempted run. Once every run is
complete it writes the curves and pass@k figures, runs the gradient-norm analysis (Figure 8;
on every process, files from process 0) and ``<workdir>/summary.json``.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np

from experiments.imagenet import evaluate
from experiments.imagenet import gradnorm
from experiments.imagenet import input_pipeline
from experiments.imagenet import plots
from experiments.imagenet import steps
from experiments.imagenet import train
from experiments.imagenet import validation
from maxrl_jax.train import files
from maxrl_jax.train import logs
from maxrl_jax.train import loop
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train import stage as stage_lib

SUMMARY_FILE = "summary.json"


def _run_entry(run: dict, result: stage_lib.StageResult) -> dict[str, Any]:
  """One run's line of the comparison summary: its final evaluation, flattened."""
  entry = {"objective": str(run["objective"]), "num_rollouts": int(run.get("num_rollouts", 1)),
           "step": int(result.step), "complete": result.complete}
  entry.update(result.summary.get("eval", {}))
  return entry


def _agree(flag: bool) -> bool:
  """Process 0's ``flag`` on every process (decisions that gate collective work)."""
  if jax.process_count() == 1:
    return flag
  return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag, np.int32)))


def run(config, workdir, devices: Sequence[jax.Device] | None = None,
        guard: loop.PreemptionGuard | None = None) -> dict[str, Any]:
  """Runs (resumes) every run of the comparison; returns the comparison summary.

  The summary is ``{"complete", "stopped", "dataset", "generated_data", "model", "preset",
  "num_classes", "runs": {name: {"objective", "num_rollouts", "step", "complete",
  "eval/pass@1", "eval/pass@128", "eval/top1", "eval/mean_log_p", "pass_at_k": {k: v}}},
  "figures": [paths], "gradnorm": {"json", "step", "runs", "missing"},
  "wall_seconds_this_session"}``; a run that did not finish has only its first four fields,
  and a comparison stopped by a preemption (``stopped == "preempted"``, ``complete`` False)
  has no figures and writes no ``summary.json``.
  """
  t0 = time.time()
  mesh = mesh_lib.make_mesh(devices)
  validation.validate(config, mesh)
  builder = input_pipeline.prepare_dataset(config)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("imagenet_dataset_prepared")
  num_train = input_pipeline.num_train_examples(config, builder)
  validation.validate_schedule(config, steps.schedule_steps(config, num_train)[1])
  memory = evaluate.MemoryData(config, builder, mesh) if config.data.in_memory else None
  root = files.as_path(workdir)
  if mesh_lib.is_chief():
    files.write_json(root / "config.json", logs.config_to_dict(config))

  runs: dict[str, dict] = {}
  stopped = loop.COMPLETED
  for r in config.runs:
    result = train.train_run(steps.run_config(config, r), root / r["name"], mesh=mesh,
                             builder=builder, memory=memory, guard=guard)
    runs[str(r["name"])] = _run_entry(r, result)
    if result.preempted:
      stopped = loop.PREEMPTED
      break
  complete = stopped == loop.COMPLETED and len(runs) == len(config.runs) and all(
      e["complete"] for e in runs.values())
  summary: dict[str, Any] = {
      "complete": complete, "stopped": stopped, "dataset": config.data.dataset,
      "generated_data": config.data.dataset == "pattern_classes",
      "model": config.model.name, "preset": config.get("preset", ""),
      "num_classes": input_pipeline.num_classes(builder), "runs": runs}
  if not complete:
    summary["wall_seconds_this_session"] = time.time() - t0
    return summary

  figures = plots.comparison_figures(config, root) if mesh_lib.is_chief() else []
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
