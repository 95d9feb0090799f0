"""The Bernoulli orchestrator: :func:`run` trains the grid (:mod:`experiments.bernoulli.train`),
then writes the estimator analysis, the curves, the figures and ``summary.json``.

Workdir: ``config.json``, ``metrics.jsonl`` + ``tb/`` (seed means of every run, one line per
chunk), ``checkpoints/``, ``curves.npz``, ``analysis.npz``, ``figures/*.png``, ``summary.json``.
"""

from __future__ import annotations

import io
import time

import numpy as np

from experiments.bernoulli import analysis as analysis_lib
from experiments.bernoulli import evaluate
from experiments.bernoulli import plots
from experiments.bernoulli import train
from experiments.bernoulli import validation
from maxrl_jax.train import files
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train import stage as stage_lib

CURVES_FILE = analysis_lib.CURVES_FILE
ANALYSIS_FILE = analysis_lib.ANALYSIS_FILE


def _save_npz(path, arrays) -> None:
  buf = io.BytesIO()
  np.savez_compressed(buf, **arrays)
  files.write_bytes(path, buf.getvalue())


def run(config, workdir: str) -> dict:
  """Runs the whole driver in ``workdir`` (resumable) and returns the summary.

  A workdir whose ``summary.json`` is complete (figures drawn) is returned as is, after checking
  that it was produced by the same config. A preempted run returns ``{"complete": False,
  "preempted": True}``; the same call later resumes it.
  """
  validation.validate(config)
  st = train.stage(config, workdir)
  stage_lib.check_resume_config(st)
  done = stage_lib.read_summary(workdir)
  if done is not None and "figures" in done and done.get("step") == config.num_steps:
    return done
  t0 = time.perf_counter()
  result = train.train(config, workdir)
  if result["result"].preempted:
    return {"complete": False, "preempted": True, "step": result["result"].step}
  analysis = evaluate.analyze(config)
  summary = dict(result["result"].summary)
  summary.update(analysis_lib.summarize(config, result["grids"], result["curves"]))
  if mesh_lib.is_chief():
    root = files.as_path(workdir)
    _save_npz(root / CURVES_FILE, {f"{p}/{k}": v for p, c in result["curves"].items()
                                   for k, v in c.items()})
    _save_npz(root / ANALYSIS_FILE, analysis)
    summary["figures"] = plots.draw_all(config, result["grids"], result["curves"], analysis,
                                        str(root / "figures"))
    summary["wall_time_s"] = time.perf_counter() - t0
    # Key order kept: a rerun returns this file, and the report walks it in order.
    files.write_json(root / stage_lib.SUMMARY_FILE, summary, sort_keys=False)
  return summary
