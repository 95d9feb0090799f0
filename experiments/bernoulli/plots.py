"""Figures of the toy Bernoulli driver (matplotlib, Agg). Every function returns the PNG path."""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402

from experiments.bernoulli.metrics import metric_names  # noqa: E402
from experiments.common import stats as stats_lib  # noqa: E402
from maxrl_jax.train import files  # noqa: E402

_LABELS = {"mean_log_p": "mean log p (ML objective)", "mean_p": "mean p (RL objective)",
           "frac_p_gt_half": "fraction of prompts with p > 0.5",
           "hardest_decile_log_p": "hardest decile: mean log p"}


def _color(i: int):
  return plt.get_cmap("tab10")(i % 10)


def _names(config):
  return metric_names(config)


def training_curves(config, grid, curves: Mapping[str, np.ndarray], policy: str,
                    path: str) -> str:
  """Every metric against steps: sampled estimators at N = figures.num_rollouts (mean and
  min/max over seeds), exact ML and exact RL (dashed)."""
  names = _names(config)
  n = config.figures.num_rollouts
  steps = np.arange(config.num_steps + 1)
  cols = 4
  rows = math.ceil(len(names) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
  sampled = curves[f"sampled/n{n}"]  # [T, E, S, metrics]
  trunc = curves["exact_truncated"]
  for j, name in enumerate(names):
    ax = axes.flat[j]
    for i, m in enumerate(grid.sampled_estimators):
      mean, low, high = stats_lib.band(sampled[:, i, :, j].T)  # over seeds
      ax.plot(steps, mean, color=_color(i), label=f"{m} (N={n})", lw=1.3)
      ax.fill_between(steps, low, high, color=_color(i), alpha=0.15, lw=0)
    for t, color, label in ((math.inf, "k", "exact ML"), (1.0, "0.5", "exact RL (T=1)")):
      if t in grid.truncations:
        k = grid.truncations.index(t)
        ax.plot(steps, trunc[:, k, j], ls="--", color=color, lw=1.5, label=label)
    ax.set_title(_LABELS.get(name, name), fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  for ax in axes.flat[len(names):]:
    ax.axis("off")
  handles, labels = axes.flat[0].get_legend_handles_labels()
  (axes.flat[len(names)] if len(names) < rows * cols else axes.flat[-1]).legend(
      handles, labels, loc="center", fontsize=8, frameon=False)
  fig.suptitle(f"{policy} policy, {config.num_prompts} prompts, initial p in "
               f"[{config.initial_pass_rate_min:g}, {config.initial_pass_rate_max:g}]")
  fig.tight_layout()
  files.savefig(fig, path, dpi=110)
  plt.close(fig)
  return path


def final_vs_n(config, grid, curves: Mapping[str, np.ndarray], policy: str, path: str) -> str:
  """Final mean log p, hardest-decile log p and pass@1 against N: sampled (solid, markers),
  exact expected gradient of the same estimator (dashed), exact J^(T=N) and ML (black)."""
  names = _names(config)
  shown = [k for k in ("mean_log_p", "hardest_decile_log_p", "mean_p") if k in names]
  ns = np.asarray(grid.ns)
  order = np.argsort(ns)
  fig, axes = plt.subplots(1, len(shown), figsize=(4.6 * len(shown), 3.6), squeeze=False)
  for a, name in enumerate(shown):
    j = names.index(name)
    ax = axes[0, a]
    for i, m in enumerate(grid.sampled_estimators):
      vals = np.array([curves[f"sampled/n{n}"][-1, i, :, j].mean() for n in ns])[order]
      ax.plot(ns[order], vals, "o-", color=_color(i), ms=3, lw=1.2, label=m)
      if m in grid.exact_estimators:
        e = grid.exact_estimators.index(m)
        ex = np.array([curves[f"exact_estimator/n{n}"][-1, e, j] for n in ns])[order]
        ax.plot(ns[order], ex, "--", color=_color(i), lw=1.0)
    ts = [t for t in grid.truncations if t != math.inf]
    if ts:
      idx = [grid.truncations.index(t) for t in sorted(ts)]
      ax.plot(sorted(ts), curves["exact_truncated"][-1, idx, j], "k:", lw=1.5,
              label="exact J^(T), T = N")
    if math.inf in grid.truncations:
      ax.axhline(curves["exact_truncated"][-1, grid.truncations.index(math.inf), j], color="k",
                 lw=1.0, label="exact ML")
    ax.axhline(curves["exact_truncated"][0, 0, j], color="0.6", lw=0.8, label="initial")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rollouts per prompt N (T for J^(T))")
    ax.set_title(f"final {_LABELS.get(name, name)}", fontsize=10)
    ax.grid(alpha=0.3)
  axes[0, -1].legend(fontsize=7, loc="best")
  fig.suptitle(f"{policy} policy after {config.num_steps} steps "
               "(solid: sampled, mean over seeds; dashed: exact expected gradient)", fontsize=10)
  fig.tight_layout()
  files.savefig(fig, path, dpi=110)
  plt.close(fig)
  return path


def weights(config, analysis: Mapping[str, np.ndarray], path: str) -> str:
  """Left: exact weight w(p) (Figure 1 shape). Right: per-prompt logit-gradient against p,
  exact (lines) and sampled (points) (Figure 8 shape)."""
  names = [str(x) for x in analysis["estimators"]]
  wn = config.analysis.weight_num_rollouts
  p = analysis["weight_p"]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
  for i, m in enumerate(names):
    w = analysis["weight_exact"][i]
    ok = w > 0
    ax1.plot(p[ok], w[ok], color=_color(i), lw=1.4, label=f"{m} (N={wn})")
  for k, t in enumerate(analysis["truncations"]):
    if t == math.inf or int(t) in (1, 1024):
      ax1.plot(p, analysis["weight_truncated"][k], color="k",
               ls="-" if t == math.inf else (":" if int(t) == 1 else "--"), lw=1.0, label="ML 1/p" if t == math.inf else f"w_T, T={int(t)}")
  ax1.plot(p, 1 / np.sqrt(p * (1 - p)), color="0.5", ls="-.", lw=1.0,
           label="GRPO population 1/sqrt(p(1-p))")
  ax1.set_xscale("log")
  ax1.set_yscale("log")
  ax1.set_xlabel("pass rate p")
  ax1.set_ylabel("weight w(p):  E[g] = w(p) grad p")
  ax1.grid(alpha=0.3, which="both")
  ax1.legend(fontsize=7)
  pp = analysis["prompt_p"]
  for i, m in enumerate(names):
    ex = np.abs(analysis["prompt_coefficient_exact"][i])
    ax2.plot(pp, ex, color=_color(i), lw=1.2, label=m)
    sm = np.abs(analysis["prompt_coefficient_sampled"][i])
    ok = sm > 0
    ax2.plot(pp[ok], sm[ok], ".", color=_color(i), ms=3)
  ax2.set_xscale("log")
  ax2.set_yscale("log")
  ax2.set_xlabel("pass rate p of the prompt")
  ax2.set_ylabel("|d objective / d logit| per prompt")
  ax2.set_title(f"N={wn}; lines exact, points sampled (mean of {config.analysis.num_repeats} "
                "draws; zeros not shown)", fontsize=9)
  ax2.grid(alpha=0.3, which="both")
  fig.tight_layout()
  files.savefig(fig, path, dpi=110)
  plt.close(fig)
  return path


def variance(config, analysis: Mapping[str, np.ndarray], path: str) -> str:
  """Variance of each sampled estimator against N (exact lines, Monte Carlo points), and the
  squared norm of its mean for reference."""
  names = [str(x) for x in analysis["estimators"]]
  ns = analysis["num_rollouts"]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
  for i, m in enumerate(names):
    # An estimator that is identically zero at some N (maxrl and mean_baseline at N = 1) has no
    # variance and no signal there; those points are left out of the log axes.
    var = analysis["variance_exact"][i]
    ok = var > 1e-20
    ax1.plot(ns[ok], var[ok], "-", color=_color(i), lw=1.3, label=m)
    mc = analysis["variance_sampled"][i]
    ax1.plot(ns[ok], mc[ok], "o", color=_color(i), ms=3)
    snr = analysis["mean_norm_sq_exact"][i][ok] / var[ok]
    ax2.plot(ns[ok], snr, "-o", color=_color(i), ms=3, lw=1.3, label=m)
  for ax in (ax1, ax2):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("rollouts per prompt N")
    ax.grid(alpha=0.3, which="both")
  ax1.set_ylabel("tr Cov[g] at the initial tabular policy")
  ax1.set_title(f"lines exact, points Monte Carlo ({config.analysis.num_repeats} draws)",
                fontsize=9)
  ax2.set_ylabel("|E g|^2 / tr Cov[g]")
  ax2.set_title("signal-to-noise of the mean-objective gradient", fontsize=9)
  ax1.legend(fontsize=7)
  fig.tight_layout()
  files.savefig(fig, path, dpi=110)
  plt.close(fig)
  return path


def draw_all(config, grids: Mapping[str, Any], curves, analysis, fig_dir: str) -> list[str]:
  """Writes every figure into ``fig_dir``; returns the paths (relative to the workdir)."""
  paths = []
  for policy, grid in grids.items():
    paths.append(training_curves(config, grid, curves[policy], policy,
                                 os.path.join(fig_dir, f"bernoulli_training_{policy}.png")))
    paths.append(final_vs_n(config, grid, curves[policy], policy,
                            os.path.join(fig_dir, f"bernoulli_final_vs_n_{policy}.png")))
  paths.append(weights(config, analysis, os.path.join(fig_dir, "bernoulli_weights.png")))
  paths.append(variance(config, analysis, os.path.join(fig_dir, "bernoulli_variance.png")))
  return [os.path.join("figures", os.path.basename(p)) for p in paths]
