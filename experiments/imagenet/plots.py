"""Figures of an ImageNet-experiment comparison (paper Figure 2 style, pass@k, Figure 8).

* ``imagenet_curves.png``: validation pass@1 and pass@128 (analytic), top-1 accuracy and the
  training pass rate against gradient steps, every run of the comparison in the same axes.
* ``imagenet_pass_at_k.png``: pass@k against k = 1..256 for the final checkpoints.
* ``imagenet_gradnorm.png`` (written by ``gradnorm.py``): per-image gradient norm against pass
  rate, one panel per objective.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402

from maxrl_jax import metrics as metrics_lib  # noqa: E402
from maxrl_jax.train import logs  # noqa: E402

_DISPLAY = {
    "cross_entropy": "cross-entropy (ML)",
    "maxrl": "MaxRL",
    "mean_baseline": "REINFORCE (mean baseline)",
    "reinforce": "REINFORCE",
    "grpo": "GRPO",
    "rloo": "RLOO",
}


def _save(fig, path: str, suptitle: str = "") -> str:
  """Writes ``fig`` to ``path`` (creating its directory), closes it, returns ``path``."""
  if suptitle:
    fig.suptitle(suptitle)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def run_label(objective: str, num_rollouts: int) -> str:
  """Legend label, e.g. ``MaxRL N=128``."""
  name = _DISPLAY.get(objective, objective)
  return name if objective == "cross_entropy" else f"{name} N={num_rollouts}"


def _series(records: Sequence[Mapping], key: str) -> tuple[np.ndarray, np.ndarray]:
  pts = [(r["step"], r[key]) for r in records if key in r and isinstance(r[key], (int, float))]
  if not pts:
    return np.zeros(0), np.zeros(0)
  steps, values = zip(*pts)
  return np.asarray(steps), np.asarray(values, np.float64)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
  if window <= 1 or len(values) < window:
    return values
  kernel = np.ones(window) / window
  head = np.cumsum(values[:window - 1]) / np.arange(1, window)
  return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_curves(runs: Mapping[str, dict], path: str, title: str = "") -> str:
  """Figure-2-style curves. ``runs[name] = {"label", "records"}`` (records from metrics.jsonl)."""
  panels = [("eval/pass@1", "validation pass@1", True),
            ("eval/pass@128", "validation pass@128", False),
            ("eval/top1", "validation top-1 accuracy", False),
            ("train/pass_rate", "training pass rate (smoothed)", True)]
  fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
  for ax, (key, ylabel, logy) in zip(axes, panels):
    for name, run in runs.items():
      steps, values = _series(run["records"], key)
      if not len(steps):
        continue
      if key.startswith("train/"):
        values = _smooth(values, max(1, len(values) // 30))
      marker = "o" if key.startswith("eval/") and len(steps) <= 30 else None
      ax.plot(steps, values, label=run["label"], marker=marker, markersize=3)
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(ylabel)
    if logy:
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  return _save(fig, path, title)


def plot_pass_at_k(runs: Mapping[str, dict], path: str, max_k: int = 256, title: str = "") -> str:
  """pass@k (analytic, mean over validation images) against k for final checkpoints.

  ``runs[name] = {"label", "logp_true"}`` with per-image ``log pi(y*|x)``.
  """
  ks = np.unique(np.round(np.logspace(0, np.log10(max_k), 40)).astype(int))
  fig, ax = plt.subplots(figsize=(5.5, 4.2))
  for name, run in runs.items():
    logp = np.asarray(run["logp_true"], np.float64)
    values = [np.mean(metrics_lib.pass_at_k_from_logp(logp, int(k))) for k in ks]
    ax.plot(ks, values, label=run["label"])
  ax.set_xscale("log", base=2)
  ax.set_xlabel("k")
  ax.set_ylabel("validation pass@k")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title, fontsize=10)
  return _save(fig, path)


def plot_gradnorm(pass_rates: np.ndarray, norms: Mapping[str, np.ndarray], path: str,
                  title: str = "") -> str:
  """Per-image gradient L2 norm against pass rate, one panel per objective (Figure 8).

  Panels share the (log) y axis so the objectives' norms compare directly.
  """
  names = list(norms)
  fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False,
                           sharey=True)
  p = np.asarray(pass_rates)
  for ax, name in zip(axes[0], names):
    ax.scatter(p, np.maximum(np.asarray(norms[name]), 1e-12), s=6, alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("pass rate pi(y*|x)")
    ax.set_ylabel("per-image gradient L2 norm")
    ax.set_title(name, fontsize=9)
    ax.grid(alpha=0.3)
  return _save(fig, path, title)


def comparison_figures(config, workdir: str) -> list[str]:
  """Writes the curves and pass@k figures of a finished comparison into ``workdir/figures``."""
  curves, finals = {}, {}
  for r in config.runs:
    run_dir = os.path.join(workdir, r["name"])
    label = run_label(r["objective"], int(r.get("num_rollouts", 1)))
    curves[r["name"]] = {"label": label, "records": logs.read_metrics(run_dir)}
    final_path = os.path.join(run_dir, "final_eval.npz")
    if os.path.exists(final_path):
      finals[r["name"]] = {"label": label, "logp_true": np.load(final_path)["logp_true"]}
  generated = " (GENERATED pattern_classes data, not ImageNet)" if (
      config.data.dataset == "pattern_classes") else ""
  title = f"{config.model.name} on {config.data.dataset}{generated}"
  fig_dir = os.path.join(workdir, "figures")
  paths = [plot_curves(curves, os.path.join(fig_dir, "imagenet_curves.png"), title)]
  if finals:
    paths.append(plot_pass_at_k(
        finals, os.path.join(fig_dir, "imagenet_pass_at_k.png"),
        title="final checkpoints" + (" (generated data)" if generated else "")))
  return paths
