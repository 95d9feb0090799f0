"""Figures and tables of a finished (or partly finished) maze sweep, read from its workdir.

* ``maze_fig3_neglog_passk_vs_n.png`` (paper Figure 3): ``-log pass@k`` on the held-out test
  mazes against the number of training rollouts per maze ``N``, one panel per ``k``, one line
  per estimator; the SFT starting point as a dashed line. Lower is better.
* ``maze_fig17_passk_vs_steps.png`` (paper Figure 17): test pass@k against RL steps, one column
  per ``N`` and one row per ``k`` (k = 1 and the largest k of the periodic evaluations).
* ``table.md`` (paper Table 3's columns): final test pass@k of every run, in percent.
* Data-scarce regime: ``maze_scarce_passk_vs_steps.png``, pass@1 and pass@k on the fixed
  training mazes and on the test mazes against RL steps, one line per estimator.

Everything here only reads files, so the notebook and ``draw_all`` share it.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import numpy as np

from experiments.maze import analysis
from maxrl_jax.train import files

FIG3 = "maze_fig3_neglog_passk_vs_n.png"
FIG17 = "maze_fig17_passk_vs_steps.png"
FIG12 = "maze_fig12_solved_any_vs_steps.png"
FIG_SCARCE = "maze_scarce_passk_vs_steps.png"
FIG3_KS = (1, 128, 1024, 2048)  # the paper's Figure 3 panels (those <= the samples drawn)
FIG17_KS = (1, 32, 128, 256)  # the paper's Figure 17 panels
TABLE = "table.md"

_COLORS = {"maxrl": "#d62728", "grpo": "#1f77b4", "rloo": "#2ca02c", "reinforce": "#9467bd",
           "mean_baseline": "#8c564b"}
_KEY_RE = analysis.KEY_RE
load_sweep = analysis.load_sweep


def _color(estimator: str) -> str:
  return _COLORS.get(estimator, "#7f7f7f")


def final_pass_at_k(run: dict, eval_set: str = "test", metric: str = "pass") -> dict[int, float]:
  """``{k: pass@k}`` of a complete run's (or stage's) final evaluation on ``eval_set``
  (``metric="best"``: the authors' bootstrap best@k)."""
  if not run.get("summary"):
    return {}
  res = {}
  for key, v in run["summary"].get("eval", {}).items():
    m = re.fullmatch(rf"eval/(?P<set>[a-z]+)/{metric}@(?P<k>\d+)", key)
    if m and m["set"] == eval_set:
      res[int(m["k"])] = float(v)
  return dict(sorted(res.items()))


def _tracked_ks(runs: list[dict], eval_set: str) -> list[int]:
  """The ks logged at every periodic evaluation (the most points), smallest first."""
  counts = {}
  for r in runs:
    for rec in r["history"]:
      for m in map(_KEY_RE.match, rec):
        if m and m["set"] == eval_set:
          counts.setdefault(int(m["k"]), set()).add((id(r), rec["step"]))
  if not counts:
    return []
  most = max(len(v) for v in counts.values())
  return sorted(k for k, v in counts.items() if len(v) == most)


def _neglog(p: float) -> float:
  return -math.log(max(p, 1e-9))


def _sft_stat(sweep: dict, k: int, eval_set: str = "test") -> dict | None:
  stages = analysis.sft_stages(sweep)
  return analysis.group_stat(stages, k, eval_set) if stages else None


def _estimators(sweep: dict) -> list[str]:
  return list(dict.fromkeys(r["estimator"] for r in sweep["runs"].values()))


def _seeds_note(sweep: dict) -> str:
  g = analysis.groups(sweep)
  seeds = sorted({len(v) for v in g.values()})
  return f"mean of {seeds[-1]} seeds" if seeds and seeds[-1] > 1 else "one seed"


def figure_neglog_vs_n(sweep: dict, path: str) -> str | None:
  """Paper Figure 3: ``-log pass@k`` (test) against N, a panel per k, a line per estimator
  (the mean over seeds; shaded: the 95% two-level bootstrap interval over mazes and seeds)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  g = analysis.groups(sweep)
  if not g:
    return None
  available = analysis.final_ks([r for rs in g.values() for r in rs])
  if not available:
    return None
  ks = [k for k in FIG3_KS if k in available]
  if available[-1] not in ks and len(ks) < 2:
    ks.append(available[-1])  # CPU presets draw fewer samples than the paper's 2,048
  fig, axes = plt.subplots(1, len(ks), figsize=(3.2 * len(ks), 3.2), squeeze=False)
  for ax, k in zip(axes[0], ks):
    for est in _estimators(sweep):
      keys = sorted((key for key in g if key[0] == est), key=lambda key: key[1])
      stats = [(key[1], analysis.group_stat(g[key], k)) for key in keys]
      stats = [(n, st) for n, st in stats if st]
      if stats:
        ns = [n for n, _ in stats]
        ax.plot(ns, [_neglog(st["mean"]) for _, st in stats], "o-", color=_color(est), label=est)
        ax.fill_between(ns, [_neglog(st["high"]) for _, st in stats],
                        [_neglog(st["low"]) for _, st in stats], color=_color(est), alpha=0.15,
                        lw=0)
    sft = _sft_stat(sweep, k)
    if sft:
      ax.axhline(_neglog(sft["mean"]), color="k", ls="--", lw=1, label="SFT start")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("rollouts per maze N")
    ax.set_title(f"k = {k}")
    ax.grid(alpha=0.3, which="both")
  axes[0][0].set_ylabel("-log pass@k (test mazes)")
  axes[0][-1].legend(fontsize=8)
  fig.suptitle(f"Maze (paper Figure 3): -log pass@k (unbiased) against N, {_seeds_note(sweep)}"
               "\nshaded: 95% bootstrap interval over test mazes and seeds; lower is better",
               fontsize=9)
  fig.tight_layout()
  files.savefig(fig, path, dpi=110)
  plt.close(fig)
  return path


def _plot_group(ax, runs, key, color, label, marker="o-"):
  steps, mean, lo, hi = analysis.group_history(runs, key)
  if len(steps):
    ax.plot(steps, mean, marker, ms=3, color=color, label=label)
    if len(runs) > 1:
      ax.fill_between(steps, lo, hi, color=color, alpha=0.15, lw=0)


def figure_passk_vs_steps(sweep: dict, path: str, eval_set: str = "test") -> str | None:
  """Paper Figure 17: pass@k against steps; columns N, rows k, a line per estimator (mean over
  seeds, band: min-max over seeds)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = list(sweep["runs"].values())
  during = _tracked_ks(runs, eval_set)
  if not runs or not during:
    return None
  ns = sorted({r["n"] for r in runs})
  # The paper's k (1, 32, 128, 256) among those evaluated at every periodic evaluation.
  ks = [k for k in FIG17_KS if k in during]
  if during[-1] not in ks:  # the largest k of the periodic evaluations as well
    ks.append(during[-1])
  fig, axes = plt.subplots(len(ks), len(ns), figsize=(max(6.0, 3.0 * len(ns)), 2.6 * len(ks)),
                           squeeze=False, sharey="row")
  lrs = sorted({r["lr"] for r in runs if r["lr"] is not None})
  styles = dict(zip(lrs, ("o:", "o-", "o--", "s-.", "^:")))
  for i, k in enumerate(ks):
    for j, n in enumerate(ns):
      ax = axes[i][j]
      for (est, gn, lr), members in analysis.groups(sweep, complete_only=False).items():
        if gn == n:
          label = est if lr is None else f"{est} lr={lr:g}"
          _plot_group(ax, members, f"eval/{eval_set}/pass@{k}", _color(est), label,
                      styles.get(lr, "o-"))
      ax.set_title(f"N = {n}, pass@{k}", fontsize=9)
      ax.grid(alpha=0.3)
      if i == len(ks) - 1:
        ax.set_xlabel("RL step")
    axes[i][0].set_ylabel(f"{eval_set} pass@{k}")
  axes[0][-1].legend(fontsize=7)
  note = _seeds_note(sweep)
  fig.suptitle(f"Maze: {eval_set} pass@k during RL ({note}"
               + ("" if note == "one seed" else "; band: min-max over seeds") + ")", fontsize=10)
  fig.tight_layout()
  files.savefig(fig, path, dpi=110)
  plt.close(fig)
  return path


def figure_solved_any_vs_steps(sweep: dict, path: str, window: int = 10) -> str | None:
  """Paper Figure 12 (maze panel): the fraction of training mazes with at least one success
  among their N rollouts, against RL steps (moving average over ``window`` steps, mean over
  seeds)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  groups = {key: rs for key, rs in analysis.groups(sweep, complete_only=False).items()
            if any("train/frac_any_success" in rec for r in rs for rec in r["history"])}
  if not groups:
    return None
  ns = sorted({key[1] for key in groups})
  fig, axes = plt.subplots(1, len(ns), figsize=(max(6.0, 3.0 * len(ns)), 2.8), squeeze=False,
                           sharey=True)
  for ax, n in zip(axes[0], ns):
    for (est, gn, lr), members in groups.items():
      if gn != n:
        continue
      steps, vals, _, _ = analysis.group_history(members, "train/frac_any_success")
      if not len(steps):
        continue
      w = max(1, min(window, len(vals)))
      smooth = np.convolve(vals, np.ones(w) / w, mode="valid")
      ax.plot(steps[w - 1:], smooth, color=_color(est),
              label=est if lr is None else f"{est} lr={lr:g}")
    ax.set_title(f"N = {n}", fontsize=9)
    ax.set_xlabel("RL step")
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("training mazes with >= 1 success")
  axes[0][-1].legend(fontsize=7)
  fig.suptitle("Maze (paper Figure 12): fraction of each batch's mazes solved at least once",
               fontsize=10)
  fig.tight_layout()
  files.savefig(fig, path, dpi=110)
  plt.close(fig)
  return path


def figure_data_scarce(sweep: dict, path: str) -> str | None:
  """pass@1 and pass@k on the fixed training mazes and on the test mazes, against steps (mean
  over seeds, band: min-max over seeds)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = list(sweep["runs"].values())
  during = _tracked_ks(runs, "train") if runs else []
  if not during:
    return None
  kmax = during[-1]
  sets = ("train", "test")
  fig, axes = plt.subplots(2, 2, figsize=(8, 5.6), sharex=True)
  for i, k in enumerate(sorted({1, kmax})):
    for j, eval_set in enumerate(sets):
      ax = axes[i][j]
      for (est, n, _), members in analysis.groups(sweep, complete_only=False).items():
        _plot_group(ax, members, f"eval/{eval_set}/pass@{k}", _color(est), f"{est} (N={n})")
      ax.set_title(f"{eval_set} mazes: pass@{k}", fontsize=9)
      ax.grid(alpha=0.3)
      if i == 1:
        ax.set_xlabel("RL step")
  cfg = sweep.get("config") or {}
  m = (cfg.get("rl") or {}).get("train_set_size", "?")
  axes[0][1].legend(fontsize=8)
  fig.suptitle(f"Maze, data-scarce regime: RL for many epochs on {m} fixed training mazes "
               f"({_seeds_note(sweep)})", fontsize=10)
  fig.tight_layout()
  files.savefig(fig, path, dpi=110)
  plt.close(fig)
  return path


def _cell(st: dict | None, interval: bool) -> str:
  if st is None:
    return ""
  text = f"{100 * st['mean']:.1f}"
  if interval and "low" in st:
    text += f" [{100 * st['low']:.1f}, {100 * st['high']:.1f}]"
  return text


def table_markdown(sweep: dict, eval_set: str = "test", metric: str = "pass") -> str:
  """Final pass@k (percent) of every (estimator, N[, lr]) group: the mean over seeds and, for
  ``metric="pass"``, its 95% two-level bootstrap interval over mazes and seeds, plus the range
  of the seeds' pass@1; ``"best"``: the authors' bootstrap best@k (means only). Table 3's
  columns are pass@1/128/256."""
  g = analysis.groups(sweep)
  stages = [r for rs in g.values() for r in rs] + analysis.sft_stages(sweep)
  ks = analysis.final_ks(stages, eval_set) if g else []
  if not ks:
    return ""
  has_lr = any(key[2] is not None for key in g)
  spread = metric == "pass" and max(len(v) for v in g.values()) > 1
  head = ["estimator", "N"] + (["lr"] if has_lr else []) + ["seeds"] + [
      f"{metric}@{k}" for k in ks] + (["pass@1 range over seeds"] if spread else [])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

  def row(label, n, lr, members):
    cells = [label, n] + ([lr] if has_lr else []) + [str(len(members))]
    for k in ks:
      if metric == "pass":
        cells.append(_cell(analysis.group_stat(members, k, eval_set), True))
      else:
        vals = [analysis.final_value(m, k, eval_set, "best") for m in members]
        cells.append("" if None in vals else f"{100 * np.mean(vals):.1f}")
    if spread:
      st = analysis.group_stat(members, 1, eval_set)
      cells.append("" if st is None or len(members) < 2 else
                   f"{100 * st['seed_min']:.1f}-{100 * st['seed_max']:.1f}")
    lines.append("| " + " | ".join(str(c) for c in cells) + " |")

  sft = analysis.sft_stages(sweep)
  if sft and analysis.final_ks(sft, eval_set):
    row("SFT (start)", "-", "-", sft)
  for (est, n, lr), members in g.items():
    row(est, n, "" if lr is None else f"{lr:g}", members)
  return "\n".join(lines) + "\n"


def draw_all(workdir: str) -> dict[str, Any]:
  """Draws every figure the workdir's runs allow into ``workdir/figures``; writes ``table.md``.

  Returns ``{"figures": [paths], "table": path}``.
  """
  sweep = load_sweep(workdir)
  figdir = os.path.join(workdir, "figures")
  cfg = sweep.get("config") or {}
  experiment = cfg.get("experiment", "sweep")
  sets = [s for s in ("test", "validation")
          if (s == "test" and (cfg.get("eval") or {}).get("num_mazes", 1))
          or (s == "validation" and (cfg.get("eval") or {}).get("validation_mazes", 0))]
  figures = []
  if experiment == "data_scarce":
    figures.append(figure_data_scarce(sweep, os.path.join(figdir, FIG_SCARCE)))
  elif "test" in sets:
    figures.append(figure_neglog_vs_n(sweep, os.path.join(figdir, FIG3)))
  for s in sets:
    name = FIG17 if s == "test" else FIG17.replace(".png", f"_{s}.png")
    figures.append(figure_passk_vs_steps(sweep, os.path.join(figdir, name), s))
  figures.append(figure_solved_any_vs_steps(sweep, os.path.join(figdir, FIG12)))
  parts = []
  for s in sets:
    parts.append(f"{s.capitalize()} mazes:\n\n" + table_markdown(sweep, s))
    if s == "test":
      parts.append("The authors' bootstrap best@k (what their figures plot; lower than the "
                   "unbiased pass@k at large k):\n\n" + table_markdown(sweep, s, "best"))
  if experiment == "data_scarce":
    parts.append("Training mazes:\n\n" + table_markdown(sweep, "train"))
  lr_text, best = analysis.lr_table(sweep, "validation" if "validation" in sets else "test")
  if lr_text:
    parts.append("Final pass@1 (%) per learning rate and the mean over estimators:\n\n" + lr_text
                 + f"\nBest mean: learning rate {best:g}\n")
  collapsed = [name for name, r in sweep["runs"].items() if analysis.collapsed(r)]
  if collapsed:
    parts.append("Collapsed runs (every rollout failing, zero gradient, for the last "
                 f"{analysis.COLLAPSE_WINDOW} logged steps): " + ", ".join(collapsed) + "\n")
  table = os.path.join(workdir, TABLE)
  files.write_text(table, "\n".join(parts))
  return {"figures": [f for f in figures if f], "table": table}
