"""Figures of an ImageNet-experiment comparison (paper Figure 2 style, pass@k, Figure 8).

* ``imagenet_curves.png``: validation pass@1 and pass@128 (analytic), top-1 accuracy and the
  training pass rate against gradient steps, every run of the comparison in the same axes.
* ``imagenet_pass_at_k.png``: pass@k against k = 1..max(config.eval.ks) (the paper's figure
  shows 1..256, the authors' code goes to 1024) for the final checkpoints.
* ``imagenet_lr_sweep.png`` (a learning-rate sweep only): final validation pass@1 against the
  learning rate, one line per run (appendix D.2).

With several seeds every curve is the mean over seeds with a min-max band.
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

from experiments.common import stats as stats_lib  # noqa: E402
from experiments.imagenet import evaluate  # noqa: E402
from experiments.imagenet import runs as runs_lib  # noqa: E402
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


def _mean_band(series: Sequence[tuple[np.ndarray, np.ndarray]]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """``(steps, mean, min, max)`` over seeds at the steps every seed logged."""
  common = series[0][0]
  for steps, _ in series[1:]:
    common = np.intersect1d(common, steps)
  vals = np.stack([values[np.searchsorted(steps, common)] for steps, values in series])
  return (common,) + stats_lib.band(vals)


def plot_curves(runs: Mapping[str, dict], path, title: str = "") -> str:
  """Figure-2-style curves. ``runs[name] = {"label", "records"}`` with ``records`` one list of
  metrics.jsonl records per seed: the line is the mean over seeds, the band their min-max."""
  panels = [("eval/pass@1", "validation pass@1", True),
            ("eval/pass@128", "validation pass@128", False),
            ("eval/top1", "validation top-1 accuracy", False),
            ("train/pass_rate", "training pass rate (smoothed)", True)]
  fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
  for ax, (key, ylabel, logy) in zip(axes, panels):
    for run in runs.values():
      series = []
      for records in run["records"]:
        steps, values = _series(records, key)
        if key.startswith("train/"):
          values = _smooth(values, max(1, len(values) // 30))
        series.append((steps, values))
      if not series or any(not len(s) for s, _ in series):
        continue
      steps, mean, lo, hi = _mean_band(series)
      if not len(steps):
        continue
      marker = "o" if key.startswith("eval/") and len(steps) <= 30 else None
      line, = ax.plot(steps, mean, label=run["label"], marker=marker, markersize=3)
      if len(series) > 1:
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(ylabel)
    if logy:
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  return _save(fig, path, title)


def plot_pass_at_k(runs: Mapping[str, dict], path, max_k: int = 256, title: str = "") -> str:
  """pass@k (analytic, mean over validation images) against k for final checkpoints.

  ``runs[name] = {"label", "logp_true"}`` with one array of per-image ``log pi(y*|x)`` per
  seed: the line is the mean over seeds, the band their min-max.
  """
  ks = np.unique(np.round(np.logspace(0, np.log10(max_k), 40)).astype(int))
  fig, ax = plt.subplots(figsize=(5.5, 4.2))
  for run in runs.values():
    curves = np.asarray([[np.mean(metrics_lib.pass_at_k_from_logp(
        np.asarray(logp, np.float64), int(k))) for k in ks] for logp in run["logp_true"]])
    mean, low, high = stats_lib.band(curves)
    line, = ax.plot(ks, mean, label=run["label"])
    if len(curves) > 1:
      ax.fill_between(ks, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
  ax.set_xscale("log", base=2)
  return _finish(fig, ax, path, "k", "validation pass@k", title)


def _finish(fig, ax, path, xlabel: str, ylabel: str, title: str) -> str:
  """Labels, grid, legend and title of a one-axes figure, then saves it."""
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title, fontsize=10)
  return _save(fig, path)


def plot_lr_sweep(sweep: Mapping[str, Any], path, title: str = "") -> str:
  """Final validation pass@1 against the learning rate (log axis), one line per run of the
  sweep (``analysis.lr_sweep_summary``): the seed mean, min-max bars with several seeds, a
  star on the best rate."""
  fig, ax = plt.subplots(figsize=(6, 4.2))
  for r in sweep["runs"].values():
    pts = [(float(lr), v) for lr, v in r["by_rate"].items()
           if v is not None and np.isfinite(v["mean"])]
    if not pts:
      continue
    rates = np.asarray([p[0] for p in pts])
    mean = np.asarray([p[1]["mean"] for p in pts])
    err = np.asarray([[p[1]["mean"] - p[1]["min"] for p in pts],
                      [p[1]["max"] - p[1]["mean"] for p in pts]])
    line = ax.errorbar(rates, mean, yerr=err if err.any() else None, marker="o", markersize=4,
                       capsize=3, label=run_label(r["objective"], r["num_rollouts"]))
    if r["best_learning_rate"] is not None:
      ax.plot([r["best_learning_rate"]], [r["best"]], "*", markersize=12,
              color=line.lines[0].get_color())
  ax.set_xscale("log")
  return _finish(fig, ax, path, "peak learning rate", "final validation pass@1", title)


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


def draw_all(config, workdir, lr_sweep: Mapping[str, Any] | None = None) -> list[str]:
  """Writes the curves and pass@k figures of a finished comparison into ``workdir/figures``
  (with several seeds: seed means with min-max bands), and the learning-rate figure of a sweep
  (``lr_sweep``: ``analysis.lr_sweep_summary``)."""
  root = files.as_path(workdir)
  groups: dict[str, list[dict]] = {}
  for t in runs_lib.trained_runs(config):
    groups.setdefault(t["name"], []).append(t)
  sweep = bool(config.get("sweep_learning_rates", ()))
  curves, finals = {}, {}
  for name, trained in groups.items():
    first = trained[0]
    label = run_label(first["objective"], first["num_rollouts"])
    if sweep:
      label += f" lr={first['learning_rate']:g}"
    curves[name] = {"label": label,
                    "records": [logs.read_metrics(root / t["dir"]) for t in trained]}
    logp = [evaluate.read_final_eval(root / t["dir"]) for t in trained]
    if all(f is not None for f in logp):
      finals[name] = {"label": label, "logp_true": [f["logp_true"] for f in logp]}
  generated = " (GENERATED pattern_classes data, not ImageNet)" if (
      config.data.dataset == "pattern_classes") else ""
  num_seeds = len(runs_lib.seeds(config))
  seeds_note = f"; mean of {num_seeds} seeds, band min-max" if num_seeds > 1 else ""
  title = f"{config.model.name} on {config.data.dataset}{generated}{seeds_note}"
  fig_dir = root / "figures"
  paths = [plot_curves(curves, fig_dir / "imagenet_curves.png", title)]
  if finals:
    paths.append(plot_pass_at_k(
        finals, fig_dir / "imagenet_pass_at_k.png", max_k=max(int(k) for k in config.eval.ks),
        title="final checkpoints" + (" (generated data)" if generated else "") + seeds_note))
  if lr_sweep is not None:
    paths.append(plot_lr_sweep(
        lr_sweep, fig_dir / "imagenet_lr_sweep.png",
        title="learning-rate sweep (appendix D.2)" + (", generated data" if generated else "")
        + (f"\nmean of {num_seeds} seeds, bars min-max" if num_seeds > 1 else "")))
  return paths
