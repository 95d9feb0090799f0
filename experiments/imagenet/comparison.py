"""The ImageNet comparison (paper section 6.1): every run of ``config.runs``, then the figures.

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
from maxrl_jax.train.errors import NonFiniteError

SUMMARY_FILE = "summary.json"
DIVERGED_FILE = "diverged.json"
LR_SWEEP_TABLE = "lr_sweep.md"
SWEEP_METRIC = "eval/pass@1"  # The sweep's choice of the best learning rate (final, validation).


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
  run_config = steps.run_config(config, run)
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


def _stats(values: Sequence[float]) -> dict[str, float | None]:
  """Mean, min, max and sample standard deviation (None with one value) over seeds."""
  v = np.asarray(values, np.float64)
  return {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)),
          "std": float(np.std(v, ddof=1)) if len(v) > 1 else None}


def aggregate(config, entries: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """Per comparison run: its final evaluation over seeds.

  ``{run name: {"objective", "num_rollouts", "learning_rate", "seeds", "dirs",
  "eval/<metric>": {"mean", "min", "max", "std"}, "pass_at_k": {k: {...}}, "diverged_seeds"}}``
  for every ``eval/*`` number of the trainings' entries (``entries``: the summary's ``runs``, by
  directory; a diverged training counts as nan); ``std`` is the sample standard deviation over
  seeds (None with one seed).
  """
  out: dict[str, dict[str, Any]] = {}
  for r in steps.comparison_runs(config):
    trained = [t for t in steps.trained_runs(config) if t["name"] == r["name"]]
    per_seed = [entries[t["dir"]] for t in trained]
    agg: dict[str, Any] = {"objective": r["objective"], "num_rollouts": r["num_rollouts"],
                           "learning_rate": r["learning_rate"],
                           "seeds": [t["seed"] for t in trained],
                           "dirs": [t["dir"] for t in trained]}
    keys = sorted({k for e in per_seed for k, v in e.items()
                   if k.startswith("eval/") and isinstance(v, (int, float))})
    for k in keys:  # A diverged training has no evaluation: nan, never a best value.
      agg[k] = _stats([e.get(k, math.nan) for e in per_seed])
    ks = next((e["pass_at_k"] for e in per_seed if e.get("pass_at_k")), {})
    agg["pass_at_k"] = {k: _stats([e.get("pass_at_k", {}).get(k, math.nan) for e in per_seed])
                        for k in ks}
    agg["diverged_seeds"] = [t["seed"] for t, e in zip(trained, per_seed) if e.get("diverged")]
    out[r["name"]] = agg
  return out


def lr_sweep_summary(config, agg: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  """The learning-rate sweep per run of ``config.runs`` (an objective and its N).

  ``{"metric", "learning_rates", "runs": {name: {"objective", "num_rollouts", "by_rate":
  {rate: {"mean", "min", "max", "std"}}, "diverged": [rates with a diverged seed],
  "best_learning_rate", "best", "best_run"}}}``: the best rate has the highest seed-mean final
  validation pass@1 (rates whose value is not finite, e.g. a diverged run, are not candidates;
  ``best_learning_rate`` is None if none is).
  """
  rates = [float(lr) for lr in config.sweep_learning_rates]
  out: dict[str, Any] = {"metric": SWEEP_METRIC, "learning_rates": rates, "runs": {}}
  for r in config.runs:
    by_rate = {f"{lr:g}": agg[steps.lr_run_name(r["name"], lr)].get(SWEEP_METRIC)
               for lr in rates}
    finite = {lr: float(v["mean"]) for lr, v in zip(rates, by_rate.values())
              if v is not None and math.isfinite(v["mean"])}
    best = max(finite, key=finite.get) if finite else None
    diverged = [f"{lr:g}" for lr in rates
                if agg[steps.lr_run_name(r["name"], lr)].get("diverged_seeds")]
    out["runs"][str(r["name"])] = {
        "objective": str(r["objective"]), "num_rollouts": int(r.get("num_rollouts", 1)),
        "by_rate": by_rate, "diverged": diverged, "best_learning_rate": best,
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
      if f"{lr:g}" in r.get("diverged", ()):  # at least one seed diverged
        text = "diverged" if v is None or not math.isfinite(v["mean"]) else text + " (diverged)"
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
