"""The ImageNet comparison (paper section 6.1): every run of ``config.runs``, then the figures.

:func:`run` trains each run once per seed of ``config.seeds`` (all runs of the first seed
first), each training as one stage (``train.train_run``: resumable, returned at once when
complete) in ``<workdir>/<run name>/`` (one seed) or ``<workdir>/<run name>_s<seed>/`` (several),
and stops at the first preempted training. With ``config.sweep_learning_rates`` the runs are
``<run name>_lr<rate>``, one per rate (appendix D.2's sweep). Once every training is complete it
writes the curves and pass@k figures (seed means, min-max bands), the learning-rate figure and
table of a sweep, runs the gradient-norm analysis on the first seed's runs (Figure 8; on every
process, files from process 0) and ``<workdir>/summary.json``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping, Sequence

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
LR_SWEEP_TABLE = "lr_sweep.md"
SWEEP_METRIC = "eval/pass@1"  # The sweep's choice of the best learning rate (final, validation).


def _run_entry(run: dict, result: stage_lib.StageResult) -> dict[str, Any]:
  """One training's line of the comparison summary: its final evaluation, flattened."""
  entry = {"objective": str(run["objective"]), "num_rollouts": int(run.get("num_rollouts", 1)),
           "step": int(result.step), "complete": result.complete, "run": str(run["name"]),
           "seed": int(run["seed"]), "learning_rate": float(run["learning_rate"])}
  entry.update(result.summary.get("eval", {}))
  return entry


def _stats(values: Sequence[float]) -> dict[str, float | None]:
  """Mean, min, max and sample standard deviation (None with one value) over seeds."""
  v = np.asarray(values, np.float64)
  return {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)),
          "std": float(np.std(v, ddof=1)) if len(v) > 1 else None}


def aggregate(config, entries: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """Per comparison run: its final evaluation over seeds.

  ``{run name: {"objective", "num_rollouts", "learning_rate", "seeds", "dirs",
  "eval/<metric>": {"mean", "min", "max", "std"}, "pass_at_k": {k: {...}}}}`` for every
  ``eval/*`` number of the trainings' entries (``entries``: the summary's ``runs``, by
  directory); ``std`` is the sample standard deviation over seeds (None with one seed).
  """
  out: dict[str, dict[str, Any]] = {}
  for r in steps.comparison_runs(config):
    trained = [t for t in steps.trained_runs(config) if t["name"] == r["name"]]
    per_seed = [entries[t["dir"]] for t in trained]
    agg: dict[str, Any] = {"objective": r["objective"], "num_rollouts": r["num_rollouts"],
                           "learning_rate": r["learning_rate"],
                           "seeds": [t["seed"] for t in trained],
                           "dirs": [t["dir"] for t in trained]}
    keys = [k for k, v in per_seed[0].items()
            if k.startswith("eval/") and isinstance(v, (int, float))]
    for k in keys:
      agg[k] = _stats([e[k] for e in per_seed])
    ks = per_seed[0].get("pass_at_k", {})
    agg["pass_at_k"] = {k: _stats([e["pass_at_k"][k] for e in per_seed]) for k in ks}
    out[r["name"]] = agg
  return out


def lr_sweep_summary(config, agg: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  """The learning-rate sweep per run of ``config.runs`` (an objective and its N).

  ``{"metric", "learning_rates", "runs": {name: {"objective", "num_rollouts", "by_rate":
  {rate: {"mean", "min", "max", "std"}}, "best_learning_rate", "best", "best_run"}}}``: the
  best rate has the highest seed-mean final validation pass@1 (rates whose value is not finite,
  e.g. a diverged run, are not candidates; ``best_learning_rate`` is None if none is).
  """
  rates = [float(lr) for lr in config.sweep_learning_rates]
  out: dict[str, Any] = {"metric": SWEEP_METRIC, "learning_rates": rates, "runs": {}}
  for r in config.runs:
    by_rate = {f"{lr:g}": agg[steps.lr_run_name(r["name"], lr)].get(SWEEP_METRIC)
               for lr in rates}
    finite = {lr: float(v["mean"]) for lr, v in zip(rates, by_rate.values())
              if v is not None and math.isfinite(v["mean"])}
    best = max(finite, key=finite.get) if finite else None
    out["runs"][str(r["name"])] = {
        "objective": str(r["objective"]), "num_rollouts": int(r.get("num_rollouts", 1)),
        "by_rate": by_rate, "best_learning_rate": best,
        "best": finite.get(best) if best is not None else None,
        "best_run": steps.lr_run_name(r["name"], best) if best is not None else None}
  return out


def lr_sweep_table(sweep: Mapping[str, Any]) -> str:
  """Markdown: one row per run, the seed-mean final validation pass@1 at every rate (the best
  in bold) and the best rate."""
  rates = sweep["learning_rates"]
  lines = ["| run | " + " | ".join(f"lr {lr:g}" for lr in rates) + " | best lr |",
           "|---|" + "---|" * (len(rates) + 1)]
  for name, r in sweep["runs"].items():
    cells = []
    for lr in rates:
      v = r["by_rate"].get(f"{lr:g}")
      text = "-" if v is None else f"{v['mean']:.4g}"
      cells.append(f"**{text}**" if lr == r["best_learning_rate"] else text)
    best = "-" if r["best_learning_rate"] is None else f"{r['best_learning_rate']:g}"
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {best} |")
  return "\n".join(lines) + "\n"


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
  "pass_at_k": {k: v}}}, "seeds", "aggregate": {run name: ...} (:func:`aggregate`),
  "lr_sweep" (with a sweep: :func:`lr_sweep_summary` plus "table"), "figures": [paths],
  "gradnorm": {"json", "step", "runs", "missing"}, "wall_seconds_this_session"}``. ``runs``
  has one entry per training (per run and seed); a training that did not finish has no
  ``eval`` fields, and a comparison stopped by a preemption (``stopped == "preempted"``,
  ``complete`` False) has no aggregate and no figures and writes no ``summary.json``.
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
  trained = steps.trained_runs(config)
  for r in trained:
    result = train.train_run(steps.run_config(config, r), root / r["dir"], mesh=mesh,
                             builder=builder, memory=memory, guard=guard)
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
      "num_classes": input_pipeline.num_classes(builder), "runs": runs}
  if not complete:
    summary["wall_seconds_this_session"] = time.time() - t0
    return summary

  summary["seeds"] = list(steps.seeds(config))
  summary["aggregate"] = aggregate(config, runs)
  sweep = None
  if config.get("sweep_learning_rates", ()):
    sweep = summary["lr_sweep"] = lr_sweep_summary(config, summary["aggregate"])
    summary["lr_sweep"]["table"] = str(root / LR_SWEEP_TABLE)
    if mesh_lib.is_chief():
      files.write_text(root / LR_SWEEP_TABLE, lr_sweep_table(sweep))
  figures = plots.comparison_figures(config, root, lr_sweep=sweep) if mesh_lib.is_chief() else []
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
