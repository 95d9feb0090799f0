"""The numbers of a Bernoulli workdir: per-run records, the checks behind the claims, scalars.

:func:`summarize` turns the trained curves into the summary's numbers; :func:`load` reads a
finished workdir back (``summary.json``, ``curves.npz``, ``analysis.npz``) for the figures,
the notebook and the report. Seed statistics come from :mod:`experiments.common.stats`.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from experiments.bernoulli.metrics import metric_names
from experiments.bernoulli.runs import run_label, scalar_prefix, truncation_label
from experiments.bernoulli.steps import PolicyGrid
from experiments.common import stats as stats_lib
from maxrl_jax.train import files

SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.npz"
ANALYSIS_FILE = "analysis.npz"


def run_records(config, grid: PolicyGrid, curves: Mapping[str, np.ndarray]) -> list[dict]:
  """Final metrics of every run (sampled: mean and std over seeds)."""
  names = metric_names(config)
  records = []
  for n in grid.ns:
    final = curves.get(f"sampled/n{n}", np.zeros((1, 0)))[-1]  # [E, S, metrics]
    for i, m in enumerate(grid.sampled_estimators):
      seed_stats = [stats_lib.stats(final[i, :, j], ddof=0) for j in range(len(names))]
      records.append({
          "family": "sampled", "estimator": m, "num_rollouts": n,
          "num_seeds": int(final.shape[1]),
          "final": {k: seed_stats[j]["mean"] for j, k in enumerate(names)},
          "final_std": {k: seed_stats[j]["std"] for j, k in enumerate(names)}})
    for i, m in enumerate(grid.exact_estimators):
      final = curves[f"exact_estimator/n{n}"][-1]
      records.append({"family": "exact_estimator", "estimator": m, "num_rollouts": n,
                      "final": {k: float(final[i, j]) for j, k in enumerate(names)}})
  final = curves["exact_truncated"][-1]
  for i, t in enumerate(grid.truncations):
    records.append({"family": "exact_truncated",
                    "objective": "ml" if t == math.inf else "truncated",
                    "truncation": "inf" if t == math.inf else int(t),
                    "final": {k: float(final[i, j]) for j, k in enumerate(names)}})
  return records


def checks(config, grid: PolicyGrid, curves: Mapping[str, np.ndarray],
           initial: np.ndarray) -> dict:
  """Numbers behind the paper's claims, for experiments/reproduce.py."""
  names = metric_names(config)
  log_p, hard = names.index("mean_log_p"), names.index("hardest_decile_log_p")
  trunc = curves["exact_truncated"][-1]
  order = np.argsort(np.asarray(grid.truncations))
  by_t = trunc[order, log_p]
  out = {
      "exact_truncated_final_mean_log_p_by_T": {
          truncation_label(grid.truncations[i]): float(trunc[i, log_p]) for i in order},
      # Largest drop of the final mean log p when T grows (<= 0 means "never lowers").
      "exact_truncated_max_decrease_in_T": float(np.max(np.maximum(by_t[:-1] - by_t[1:], 0.0)))
                                           if len(by_t) > 1 else 0.0,
  }
  out["exact_truncated_monotone_in_T"] = bool(out["exact_truncated_max_decrease_in_T"] <= 1e-5)
  # maxrl_keep_cv at N (exact expected gradient) must equal J^(N).
  if "maxrl_keep_cv" in grid.exact_estimators:
    diffs = []
    j = grid.exact_estimators.index("maxrl_keep_cv")
    for n in grid.ns:
      if float(n) in grid.truncations:
        a = curves[f"exact_estimator/n{n}"][:, j, log_p]
        b = curves["exact_truncated"][:, grid.truncations.index(float(n)), log_p]
        diffs.append(float(np.max(np.abs(a - b))))
    if diffs:
      out["keep_cv_vs_truncated_max_abs_diff_mean_log_p"] = max(diffs)
  n = config.figures.num_rollouts
  gains = {m: float(np.mean(curves[f"sampled/n{n}"][-1, i, :, hard]) - initial[hard])
           for i, m in enumerate(grid.sampled_estimators)}
  for i, t in enumerate(grid.truncations):
    if t == math.inf:
      gains["exact_ml"] = float(trunc[i, hard] - initial[hard])
    if t == 1.0:
      gains["exact_rl"] = float(trunc[i, hard] - initial[hard])
  out[f"hardest_decile_log_p_gain_at_n{n}"] = gains
  return out


def curves_to_scalars(config, grid: PolicyGrid, policy: str, row: Mapping[str, np.ndarray]):
  """Seed-averaged metrics of one step as ``{policy/family/run/metric: value}``."""
  names = metric_names(config)
  out = {}
  for n in grid.ns:
    for i, m in enumerate(grid.sampled_estimators):
      vals = row[f"sampled/n{n}"].mean(axis=1)
      pre = scalar_prefix(policy, "sampled", run_label(m, n))
      out.update({f"{pre}/{k}": vals[i, j] for j, k in enumerate(names)})
    for i, m in enumerate(grid.exact_estimators):
      vals = row[f"exact_estimator/n{n}"]
      pre = scalar_prefix(policy, "exact_estimator", run_label(m, n))
      out.update({f"{pre}/{k}": vals[i, j] for j, k in enumerate(names)})
  vals = row["exact_truncated"]
  for i, t in enumerate(grid.truncations):
    pre = scalar_prefix(policy, "exact_truncated", truncation_label(t))
    out.update({f"{pre}/{k}": vals[i, j] for j, k in enumerate(names)})
  return out


def summarize(config, grids: Mapping[str, PolicyGrid], curves) -> dict:
  """The summary's numbers: per policy the initial metrics, every run's record and the checks."""
  names = metric_names(config)
  out = {"preset": config.preset, "num_prompts": config.num_prompts,
         "num_steps": config.num_steps, "metrics": list(names), "policies": {}}
  for name, g in grids.items():
    initial = g.initial_metrics()
    out["policies"][name] = {
        "initial": {k: float(initial[j]) for j, k in enumerate(names)},
        "runs": run_records(config, g, curves[name]),
        "checks": checks(config, g, curves[name], initial),
    }
  return out


def _npz(path) -> dict[str, np.ndarray] | None:
  if not files.exists(path):
    return None
  import io  # pylint: disable=g-import-not-at-top
  with np.load(io.BytesIO(files.as_path(path).read_bytes()), allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


def load(workdir: str) -> dict:
  """A Bernoulli workdir: ``{"summary": dict | None, "curves": {policy: {group: array}} |
  None, "analysis": {name: array} | None}`` (``curves.npz`` keys ``<policy>/<group>``)."""
  root = files.as_path(workdir)
  flat = _npz(root / CURVES_FILE)
  curves = None
  if flat is not None:
    curves = {}
    for key, arr in flat.items():
      policy, group = key.split("/", 1)
      curves.setdefault(policy, {})[group] = arr
  return {"summary": files.read_json(root / SUMMARY_FILE), "curves": curves,
          "analysis": _npz(root / ANALYSIS_FILE)}
