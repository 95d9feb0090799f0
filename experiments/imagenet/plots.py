"""Figures of an ImageNet-experiment comparison (paper Figure 2 style, pass@k, Figure 8).

* ``imagenet_curves.png``: validation pass@1 and pass@128 (analytic), top-1 accuracy and the
  training pass rate against gradient steps, every run of the comparison in the same axes.
* ``imagenet_pass_at_k.png``: pass@k against k = 1..max(config.eval.ks) (the paper's figure
  shows 1..256, the authors' code goes to 1024) for the final checkpoints.
* ``imagenet_gradnorm.png`` (computed by ``gradnorm.py``): per-image gradient norm against pass
  rate, one panel per objective, each on its own model (Figure 8).

Every figure is written through :func:`maxrl_jax.train.files.savefig` (local or ``gs://``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402

from experiments.imagenet import evaluate  # noqa: E402
from maxrl_jax import metrics as metrics_lib  # noqa: E402
from maxrl_jax.train import files  # noqa: E402
from maxrl_jax.train import logs  # noqa: E402

_DISPLAY = {
    "cross_entropy": "cross-entropy (ML)",
    "maxrl": "MaxRL",
    "mean_baseline": "REINFORCE (mean baseline)",
    "reinforce": "REINFORCE",
    "grpo": "GRPO",
    "rloo": "RLOO",
}


def _save(fig, path, suptitle: str = "") -> str:
  """Writes ``fig`` to ``path`` (any epath), closes it, returns the path as a string."""
  if suptitle:
    fig.suptitle(suptitle)
  fig.tight_layout()
  try:
    return files.savefig(fig, path, dpi=120)
  finally:
    plt.close(fig)


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


def plot_curves(runs: Mapping[str, dict], path, title: str = "") -> str:
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


def plot_pass_at_k(runs: Mapping[str, dict], path, max_k: int = 256, title: str = "") -> str:
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


def plot_gradnorm(panels: Sequence[Mapping[str, Any]], path, title: str = "") -> str:
  """Per-image gradient L2 norm against pass rate (Figure 8), one panel per run.

  ``panels[i] = {"run", "objective", "num_rollouts_trained", "pass_rate", "norms"}``: each run
  analysed on its own model with its own objective. Linear pass-rate axis as in the paper; each
  panel has its own norm axis (REINFORCE's norms are orders of magnitude smaller).
  """
  n = max(1, len(panels))
  fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
  for ax, panel in zip(axes[0], panels):
    ax.scatter(np.asarray(panel["pass_rate"]), np.asarray(panel["norms"]), s=6, alpha=0.6)
    ax.set_xlabel("pass rate pi(y*|x)")
    ax.set_ylabel("per-image gradient L2 norm")
    ax.set_xlim(left=0.0)
    ax.set_ylim(bottom=0.0)
    ax.set_title(f"{run_label(panel['objective'], panel['num_rollouts_trained'])}", fontsize=9)
    ax.grid(alpha=0.3)
  return _save(fig, path, title)


def comparison_figures(config, workdir) -> list[str]:
  """Writes the curves and pass@k figures of a finished comparison into ``workdir/figures``."""
  root = files.as_path(workdir)
  curves, finals = {}, {}
  for r in config.runs:
    run_dir = root / r["name"]
    label = run_label(r["objective"], int(r.get("num_rollouts", 1)))
    curves[r["name"]] = {"label": label, "records": logs.read_metrics(run_dir)}
    final = evaluate.read_final_eval(run_dir)
    if final is not None:
      finals[r["name"]] = {"label": label, "logp_true": final["logp_true"]}
  generated = " (GENERATED pattern_classes data, not ImageNet)" if (
      config.data.dataset == "pattern_classes") else ""
  title = f"{config.model.name} on {config.data.dataset}{generated}"
  fig_dir = root / "figures"
  paths = [plot_curves(curves, fig_dir / "imagenet_curves.png", title)]
  if finals:
    paths.append(plot_pass_at_k(
        finals, fig_dir / "imagenet_pass_at_k.png", max_k=max(int(k) for k in config.eval.ks),
        title="final checkpoints" + (" (generated data)" if generated else "")))
  return paths
