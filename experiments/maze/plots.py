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

from maxrl_jax.train import files
from maxrl_jax.train import logs

FIG3 = "maze_fig3_neglog_passk_vs_n.png"
FIG17 = "maze_fig17_passk_vs_steps.png"
FIG12 = "maze_fig12_solved_any_vs_steps.png"
FIG_SCARCE = "maze_scarce_passk_vs_steps.png"
FIG3_KS = (1, 128, 1024, 2048)  # the paper's Figure 3 panels (those <= the samples drawn)
FIG17_KS = (1, 32, 128, 256)  # the paper's Figure 17 panels
TABLE = "table.md"

_COLORS = {"maxrl": "#d62728", "grpo": "#1f77b4", "rloo": "#2ca02c", "reinforce": "#9467bd",
           "mean_baseline": "#8c564b"}
_RUN_RE = re.compile(r"^(?P<estimator>.+)_n(?P<n>\d+)$")
_KEY_RE = re.compile(r"^eval/(?P<set>[a-z]+)/pass@(?P<k>\d+)$")


def _color(estimator: str) -> str:
  return _COLORS.get(estimator, "#7f7f7f")


def _read_json(path: str) -> dict | None:
  return files.read_json(path)


def load_sweep(workdir: str) -> dict[str, Any]:
  """Everything the figures need from a sweep workdir.

  Returns:
    ``{"config": dict | None, "sft": summary | None, "runs": {name: {"estimator", "n",
    "summary" (None until complete), "history": [metrics records]}}}``.
  """
  out = {"config": _read_json(os.path.join(workdir, "config.json")),
         "sft": _read_json(os.path.join(workdir, "sft", "summary.json")), "runs": {}}
  rl_root = files.as_path(workdir) / "rl"
  if not rl_root.is_dir():
    return out
  for name in sorted(p.name for p in rl_root.iterdir()):
    m = _RUN_RE.match(name)
    rdir = str(rl_root / name)
    if not m or not (rl_root / name).is_dir():
      continue
    history = []
    if files.exists(os.path.join(rdir, logs.METRICS_FILE)):
      history = logs.read_metrics(rdir)
    summary = _read_json(os.path.join(rdir, "summary.json"))
    out["runs"][name] = {"estimator": m["estimator"], "n": int(m["n"]),
                         "summary": summary if summary and summary.get("complete") else None,
                         "history": history}
  return out


def final_pass_at_k(run: dict, eval_set: str = "test", metric: str = "pass") -> dict[int, float]:
  """``{k: pass@k}`` of a complete run's final evaluation on ``eval_set`` (``metric="best"``:
  the authors' bootstrap best@k; ``"pass@k_ci_low"``-style keys are not included)."""
  if not run.get("summary"):
    return {}
  res = {}
  for key, v in run["summary"].get("eval", {}).items():
    m = _KEY_RE.match(key.replace(f"/{metric}@", "/pass@")) if metric != "pass" else (
        _KEY_RE.match(key))
    if m and m["set"] == eval_set and (metric == "pass" or f"/{metric}@" in key):
      res[int(m["k"])] = float(v)
  return dict(sorted(res.items()))


def final_interval(run: dict, k: int, eval_set: str = "test") -> tuple[float, float] | None:
  """The 95% bootstrap interval over test mazes of a run's final pass@k, if recorded."""
  ev = (run.get("summary") or {}).get("eval", {})
  lo, hi = ev.get(f"eval/{eval_set}/pass@{k}_ci_low"), ev.get(f"eval/{eval_set}/pass@{k}_ci_high")
  return None if lo is None or hi is None else (float(lo), float(hi))


def history_pass_at_k(run: dict, k: int, eval_set: str = "test") -> tuple[np.ndarray, np.ndarray]:
  """``(steps, pass@k)`` of every logged evaluation (SFT point at step 0 included)."""
  key = f"eval/{eval_set}/pass@{k}"
  pts = [(r["step"], float(r[key])) for r in run["history"] if key in r]
  if not pts:
    return np.zeros((0,)), np.zeros((0,))
  steps, vals = zip(*pts)
  return np.asarray(steps), np.asarray(vals)


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


def _sft_pass_at_k(sweep: dict, eval_set: str = "test") -> dict[int, float]:
  sft = sweep.get("sft") or {}
  return final_pass_at_k({"summary": {"eval": sft.get("eval", {})}}, eval_set)


def _estimators(sweep: dict) -> list[str]:
  seen = []
  for run in sweep["runs"].values():
    if run["estimator"] not in seen:
      seen.append(run["estimator"])
  return seen


def figure_neglog_vs_n(sweep: dict, path: str) -> str | None:
  """Paper Figure 3: ``-log pass@k`` (test) against N, a panel per k, a line per estimator."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  complete = [r for r in sweep["runs"].values() if r["summary"]]
  if not complete:
    return None
  available = sorted(set.intersection(*(set(final_pass_at_k(r)) for r in complete)))
  ks = [k for k in FIG3_KS if k in available]
  if available and available[-1] not in ks and len(ks) < 2:
    ks.append(available[-1])  # CPU presets draw fewer samples than the paper's 2,048
  sft = _sft_pass_at_k(sweep)
  fig, axes = plt.subplots(1, len(ks), figsize=(3.2 * len(ks), 3.2), squeeze=False)
  for ax, k in zip(axes[0], ks):
    for est in _estimators(sweep):
      runs = sorted((r for r in complete if r["estimator"] == est), key=lambda r: r["n"])
      if runs:
        ys = np.array([_neglog(final_pass_at_k(r)[k]) for r in runs])
        ax.plot([r["n"] for r in runs], ys, "o-", color=_color(est), label=est)
        cis = [final_interval(r, k) for r in runs]
        if all(cis):  # 95% bootstrap intervals over test mazes
          lo = np.array([_neglog(c[1]) for c in cis])
          hi = np.array([_neglog(c[0]) for c in cis])
          ax.fill_between([r["n"] for r in runs], lo, hi, color=_color(est), alpha=0.15, lw=0)
    if k in sft:
      ax.axhline(_neglog(sft[k]), color="k", ls="--", lw=1, label="SFT start")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("rollouts per maze N")
    ax.set_title(f"k = {k}")
    ax.grid(alpha=0.3, which="both")
  axes[0][0].set_ylabel("-log pass@k (test mazes)")
  axes[0][-1].legend(fontsize=8)
  fig.suptitle("Maze (paper Figure 3): -log pass@k (unbiased) against N\n"
               "shaded: 95% bootstrap intervals over test mazes; lower is better", fontsize=9)
  fig.tight_layout()
  files.savefig(fig, path, dpi=110)
  plt.close(fig)
  return path


def figure_passk_vs_steps(sweep: dict, path: str) -> str | None:
  """Paper Figure 17: test pass@k against steps; columns N, rows k, a line per estimator."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = list(sweep["runs"].values())
  if not runs:
    return None
  ns = sorted({r["n"] for r in runs})
  # The paper's k (1, 32, 128, 256) among those evaluated at every periodic evaluation.
  during = _tracked_ks(runs, "test")
  ks = [k for k in FIG17_KS if k in during] or (sorted({1, during[-1]}) if during else [1])
  fig, axes = plt.subplots(len(ks), len(ns), figsize=(3.0 * len(ns), 2.6 * len(ks)),
                           squeeze=False, sharey="row")
  for i, k in enumerate(ks):
    for j, n in enumerate(ns):
      ax = axes[i][j]
      for r in sorted((r for r in runs if r["n"] == n), key=lambda r: r["estimator"]):
        steps, vals = history_pass_at_k(r, k)
        if len(steps):
          ax.plot(steps, vals, "o-", ms=3, color=_color(r["estimator"]), label=r["estimator"])
      ax.set_title(f"N = {n}, pass@{k}", fontsize=9)
      ax.grid(alpha=0.3)
      if i == len(ks) - 1:
        ax.set_xlabel("RL step")
    axes[i][0].set_ylabel(f"test pass@{k}")
  axes[0][-1].legend(fontsize=8)
  fig.suptitle("Maze: test pass@k during RL", fontsize=10)
  fig.tight_layout()
  files.savefig(fig, path, dpi=110)
  plt.close(fig)
  return path


def figure_solved_any_vs_steps(sweep: dict, path: str, window: int = 10) -> str | None:
  """Paper Figure 12 (maze panel): the fraction of training mazes with at least one success
  among their N rollouts, against RL steps (moving average over ``window`` steps)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = [r for r in sweep["runs"].values()
          if any("train/frac_any_success" in rec for rec in r["history"])]
  if not runs:
    return None
  ns = sorted({r["n"] for r in runs})
  fig, axes = plt.subplots(1, len(ns), figsize=(3.0 * len(ns), 2.8), squeeze=False,
                           sharey=True)
  for ax, n in zip(axes[0], ns):
    for r in sorted((r for r in runs if r["n"] == n), key=lambda r: r["estimator"]):
      pts = [(rec["step"], rec["train/frac_any_success"]) for rec in r["history"]
             if "train/frac_any_success" in rec]
      steps, vals = map(np.asarray, zip(*pts))
      w = max(1, min(window, len(vals)))
      smooth = np.convolve(vals, np.ones(w) / w, mode="valid")
      ax.plot(steps[w - 1:], smooth, color=_color(r["estimator"]), label=r["estimator"])
    ax.set_title(f"N = {n}", fontsize=9)
    ax.set_xlabel("RL step")
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("training mazes with >= 1 success")
  axes[0][-1].legend(fontsize=8)
  fig.suptitle("Maze (paper Figure 12): fraction of each batch's mazes solved at least once",
               fontsize=10)
  fig.tight_layout()
  files.savefig(fig, path, dpi=110)
  plt.close(fig)
  return path


def figure_data_scarce(sweep: dict, path: str) -> str | None:
  """pass@1 and pass@k on the fixed training mazes and on the test mazes, against steps."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = list(sweep["runs"].values())
  if not runs:
    return None
  during = _tracked_ks(runs, "train")
  if not during:
    return None
  kmax = during[-1]
  sets = ("train", "test")
  fig, axes = plt.subplots(2, 2, figsize=(8, 5.6), sharex=True)
  for i, k in enumerate(sorted({1, kmax})):
    for j, eval_set in enumerate(sets):
      ax = axes[i][j]
      for r in sorted(runs, key=lambda r: (r["estimator"], r["n"])):
        steps, vals = history_pass_at_k(r, k, eval_set)
        if len(steps):
          ax.plot(steps, vals, "o-", ms=3, color=_color(r["estimator"]),
                  label=f"{r['estimator']} (N={r['n']})")
      ax.set_title(f"{eval_set} mazes: pass@{k}", fontsize=9)
      ax.grid(alpha=0.3)
      if i == 1:
        ax.set_xlabel("RL step")
  cfg = sweep.get("config") or {}
  m = (cfg.get("rl") or {}).get("train_set_size", "?")
  axes[0][1].legend(fontsize=8)
  fig.suptitle(f"Maze, data-scarce regime: RL for many epochs on {m} fixed training mazes",
               fontsize=10)
  fig.tight_layout()
  files.savefig(fig, path, dpi=110)
  plt.close(fig)
  return path


def table_markdown(sweep: dict, eval_set: str = "test", metric: str = "pass") -> str:
  """Final pass@k (percent) of every complete run; Table 3's columns are pass@1/128/256.

  ``metric="pass"``: the unbiased estimator, with pass@1's 95% bootstrap interval over test
  mazes; ``"best"``: the authors' bootstrap best@k.
  """
  complete = sorted((r for r in sweep["runs"].values() if r["summary"]),
                    key=lambda r: (r["estimator"], r["n"]))
  ks = sorted(set().union(*(final_pass_at_k(r, eval_set, metric) for r in complete))
              ) if complete else []
  ci = metric == "pass" and any(final_interval(r, 1, eval_set) for r in complete)
  head = ("| estimator | N | " + " | ".join(f"{metric}@{k}" for k in ks)
          + (" | pass@1 95% CI |" if ci else " |"))
  lines = [head, "|" + "---|" * (2 + len(ks) + ci)]
  sft = final_pass_at_k({"summary": {"eval": (sweep.get("sft") or {}).get("eval", {})}},
                        eval_set, metric)
  if sft:
    lines.append("| SFT (start) | - | " + " | ".join(
        f"{100 * sft[k]:.1f}" if k in sft else "" for k in ks) + (" | |" if ci else " |"))
  for r in complete:
    vals = final_pass_at_k(r, eval_set, metric)
    row = f"| {r['estimator']} | {r['n']} | " + " | ".join(
        f"{100 * vals[k]:.1f}" if k in vals else "" for k in ks) + " |"
    if ci:
      c = final_interval(r, 1, eval_set)
      row += f" {100 * c[0]:.1f}-{100 * c[1]:.1f} |" if c else " |"
    lines.append(row)
  return "\n".join(lines) + "\n"


def draw_all(workdir: str) -> dict[str, Any]:
  """Draws every figure the workdir's runs allow into ``workdir/figures``; writes ``table.md``.

  Returns ``{"figures": [paths], "table": path}``.
  """
  sweep = load_sweep(workdir)
  figdir = os.path.join(workdir, "figures")
  experiment = (sweep.get("config") or {}).get("experiment", "sweep")
  figures = []
  if experiment == "data_scarce":
    figures.append(figure_data_scarce(sweep, os.path.join(figdir, FIG_SCARCE)))
  else:
    figures.append(figure_neglog_vs_n(sweep, os.path.join(figdir, FIG3)))
  figures.append(figure_passk_vs_steps(sweep, os.path.join(figdir, FIG17)))
  figures.append(figure_solved_any_vs_steps(sweep, os.path.join(figdir, FIG12)))
  text = (table_markdown(sweep) + "\nThe authors' bootstrap best@k (what their figures plot; "
          "lower than the unbiased pass@k at large k):\n\n" + table_markdown(sweep, metric="best"))
  if experiment == "data_scarce":
    text = "Test mazes:\n\n" + text + "\nTraining mazes:\n\n" + table_markdown(sweep, "train")
  table = os.path.join(workdir, TABLE)
  files.write_text(table, text)
  return {"figures": [f for f in figures if f], "table": table}
