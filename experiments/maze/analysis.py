"""The numbers of a maze workdir across seeds: what the figures, tables and report are made of.

A sweep's runs are grouped by ``(estimator, N, learning rate)``; the members of a group are its
RL seeds (``sweep.seeds``). Every complete stage left ``eval_counts.json``, the successes ``c``
of each test maze among ``n`` samples, so a group's final pass@k is computed per maze
(``1 - C(n-c, k)/C(n, k)``), averaged over seeds and mazes, and its uncertainty comes from a
two-level bootstrap (:func:`maxrl_jax.metrics.two_level_bootstrap_ci`): mazes are resampled
(the same draw for every run, so comparisons are paired) and, within each group, seeds are
resampled. A claim "A above B" is *shown* when the 95% interval of ``mean(A) - mean(B)`` lies
above 0, *contradicted* when it lies below 0, otherwise *inconclusive*.

Everything here only reads files (the notebook, :mod:`experiments.maze.plots` and
:mod:`experiments.report` share it).
"""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

import numpy as np

from experiments.common import stats as stats_lib
from maxrl_jax import metrics as metrics_lib
from maxrl_jax.train import files
from maxrl_jax.train import logs

KEY_RE = re.compile(r"^eval/(?P<set>[a-z]+)/pass@(?P<k>\d+)$")
COUNTS_FILE = "eval_counts.json"
NUM_RESAMPLES = 2000
# A run has collapsed when every step of its last COLLAPSE_WINDOW logged steps had all rollouts
# failing (the gradient is exactly 0 and stays 0: on-policy RL cannot recover).
COLLAPSE_WINDOW = 10


def _counts(rdir: str) -> dict[str, tuple[int, np.ndarray]] | None:
  raw = files.read_json(os.path.join(rdir, COUNTS_FILE))
  if raw is None:
    return None
  return {k: (int(v["num_samples"]), np.asarray(v["counts"], np.int64)) for k, v in raw.items()}


def _stage(rdir: str) -> dict | None:
  summary = files.read_json(os.path.join(rdir, "summary.json"))
  if not summary:
    return None
  return {"summary": summary if summary.get("complete") else None, "counts": _counts(rdir)}


def _identity(rdir: str, sweep_config: dict | None) -> dict | None:
  """A run's ``{"estimator", "n", "lr", "seed"}`` from its ``config.json`` (never from its
  directory name); ``lr`` is None unless the sweep has several learning rates. None without a
  config (a directory no stage wrote)."""
  cfg = files.read_json(os.path.join(rdir, logs.CONFIG_FILE))
  if not isinstance(cfg, dict) or not isinstance(cfg.get("rl"), dict):
    return None
  rl = cfg["rl"]
  rates = ((sweep_config or cfg).get("sweep") or {}).get("learning_rates") or ()
  return {"estimator": str(rl["estimator"]), "n": int(rl["num_rollouts"]),
          "lr": float(rl["learning_rate"]) if len(rates) > 1 else None,
          "seed": int(rl.get("seed") or 0)}


def load_sweep(workdir: str) -> dict[str, Any]:
  """Everything the figures and the report need from a sweep workdir.

  Each stage's identity (estimator, N, learning rate, seed) is read from its own
  ``config.json`` / ``summary.json``, not parsed from its directory name.

  Returns:
    ``{"config": dict | None, "sft": summary | None, "sft_counts", "sft_repeats": {seed:
    {"summary", "counts"}}, "runs": {name: {"estimator", "n", "lr", "seed", "summary" (None
    until complete), "counts" (None without eval_counts.json), "history": [records]}}}``.
  """
  root = files.as_path(workdir)
  sft = _stage(str(root / "sft")) or {"summary": None, "counts": None}
  out = {"config": files.read_json(root / "config.json"), "sft": sft["summary"],
         "sft_counts": sft["counts"], "sft_repeats": {}, "runs": {}}
  if root.is_dir():
    for p in sorted(root.iterdir(), key=lambda p: p.name):
      if p.name in ("sft", "rl") or not p.is_dir():
        continue
      st = _stage(str(p))
      summary = st["summary"] if st else None
      if summary and str(summary.get("stage", "")).startswith("maze sft"):
        out["sft_repeats"][int(summary.get("seed", 0))] = st  # a repeat of stage 1
  rl_root = root / "rl"
  if not rl_root.is_dir():
    return out
  for name in sorted(p.name for p in rl_root.iterdir()):
    rdir = str(rl_root / name)
    identity = _identity(rdir, out["config"]) if (rl_root / name).is_dir() else None
    if identity is None:
      continue
    history = logs.read_metrics(rdir) if files.exists(
        os.path.join(rdir, logs.METRICS_FILE)) else []
    st = _stage(rdir) or {"summary": None, "counts": None}
    out["runs"][name] = dict(identity, summary=st["summary"], counts=st["counts"],
                             history=history)
  return out


def groups(sweep: dict, complete_only: bool = True
           ) -> dict[tuple[str, int, float | None], list[dict]]:
  """Runs (complete ones only by default) grouped by ``(estimator, N, lr)`` (members: the
  seeds), sorted."""
  out: dict[tuple, list] = {}
  for r in sweep["runs"].values():
    if r["summary"] or not complete_only:
      out.setdefault((r["estimator"], r["n"], r["lr"]), []).append(r)
  return {k: sorted(v, key=lambda r: r["seed"]) for k, v in sorted(
      out.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0.0))}


def sft_stages(sweep: dict) -> list[dict]:
  """The SFT stage RL starts from, then its repeats: ``[{"summary", "counts"}, ...]``."""
  first = [{"summary": sweep["sft"], "counts": sweep.get("sft_counts")}] if sweep.get("sft") else []
  return first + [sweep["sft_repeats"][s] for s in sorted(sweep.get("sft_repeats", {}))]


def final_value(stage: dict, k: int, eval_set: str = "test", metric: str = "pass"
                ) -> float | None:
  """A stage's final ``<metric>@k`` on ``eval_set`` (``metric``: "pass" or "best")."""
  ev = (stage.get("summary") or {}).get("eval", {})
  v = ev.get(f"eval/{eval_set}/{metric}@{k}")
  return None if v is None else float(v)


def final_ks(stages: Sequence[dict], eval_set: str = "test") -> list[int]:
  """The ks of the final evaluation common to ``stages``."""
  sets = []
  for st in stages:
    ev = (st.get("summary") or {}).get("eval", {})
    sets.append({int(m["k"]) for m in map(KEY_RE.match, ev) if m and m["set"] == eval_set})
  return sorted(set.intersection(*sets)) if sets else []


def per_maze(stage: dict, k: int, eval_set: str = "test") -> np.ndarray | None:
  """Per-maze pass@k ``[mazes]`` of a stage's final evaluation (None without its counts)."""
  counts = (stage.get("counts") or {}).get(eval_set)
  if counts is None or k > counts[0]:
    return None
  n, c = counts
  return np.asarray(metrics_lib.pass_at_k(n, c, k), np.float64)


def _matrix(stages: Sequence[dict], k: int, eval_set: str) -> np.ndarray | None:
  rows = [per_maze(st, k, eval_set) for st in stages]
  if not rows or any(r is None for r in rows) or len({r.shape for r in rows}) != 1:
    return None
  return np.stack(rows)


def group_stat(stages: Sequence[dict], k: int, eval_set: str = "test") -> dict | None:
  """``{"mean", "low", "high", "seed_min", "seed_max", "seeds"}`` of a group's final pass@k.

  ``low``/``high``: 95% two-level bootstrap interval (mazes, and seeds within the group) when
  every member has its per-maze counts; otherwise the single member's recorded interval (or,
  for several members, the min/max over seeds).
  """
  vals = [final_value(st, k, eval_set) for st in stages]
  if not stages or any(v is None for v in vals):
    return None
  st = stats_lib.stats(vals)
  out = {"mean": st["mean"], "seed_min": st["min"], "seed_max": st["max"], "seeds": len(vals)}
  mat = _matrix(stages, k, eval_set)
  if mat is not None:
    _, lo, hi = metrics_lib.two_level_bootstrap_ci(mat, num_resamples=NUM_RESAMPLES, seed=k)
    out.update(low=float(lo), high=float(hi))
  elif len(stages) == 1:
    ev = stages[0]["summary"].get("eval", {})
    out.update(low=float(ev.get(f"eval/{eval_set}/pass@{k}_ci_low", vals[0])),
               high=float(ev.get(f"eval/{eval_set}/pass@{k}_ci_high", vals[0])))
  else:
    out.update(low=out["seed_min"], high=out["seed_max"])
  return out


def compare(a: Sequence[dict], b: Sequence[dict], k: int, eval_set: str = "test"
            ) -> dict | None:
  """``mean(a) - mean(b)`` of final pass@k with its paired two-level 95% interval and verdict.

  Returns ``{"diff", "low", "high", "verdict"}`` (None when a member lacks per-maze counts or the
  two groups were evaluated on different mazes).
  """
  ma, mb = _matrix(a, k, eval_set), _matrix(b, k, eval_set)
  if ma is None or mb is None or ma.shape[1] != mb.shape[1]:
    return None
  d, lo, hi = metrics_lib.two_level_bootstrap_ci(ma, mb, num_resamples=NUM_RESAMPLES, seed=k)
  return {"diff": float(d), "low": float(lo), "high": float(hi), "verdict": verdict(lo, hi)}


def verdict(low: float, high: float) -> str:
  """"shown" when the 95% interval of a difference lies above 0, "contradicted" below, else
  "inconclusive"."""
  return "shown" if low > 0 else "contradicted" if high < 0 else "inconclusive"


def history(run: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
  """``(steps, values)`` of every record of ``run``'s metrics that has ``key``."""
  pts = [(r["step"], float(r[key])) for r in run["history"] if key in r]
  if not pts:
    return np.zeros((0,)), np.zeros((0,))
  steps, vals = zip(*pts)
  return np.asarray(steps), np.asarray(vals)


def group_history(runs: Sequence[dict], key: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """``(steps, mean, min, max)`` over the runs (seeds) at the steps every run logged."""
  curves = [dict(zip(*history(r, key))) for r in runs]
  common = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
  if not common:
    z = np.zeros((0,))
    return z, z, z, z
  vals = np.asarray([[c[s] for s in common] for c in curves])
  return (np.asarray(common),) + stats_lib.band(vals)


def collapsed(run: dict, window: int = COLLAPSE_WINDOW) -> bool:
  """True when the run's last ``window`` logged steps all had zero gradient (every rollout of
  every maze failed: the policy cannot recover on-policy)."""
  steps, z = history(run, "train/zero_gradient")
  return len(z) >= window and bool(np.all(z[-window:] == 1.0))


def lr_table(sweep: dict, eval_set: str = "validation", k: int = 1) -> tuple[str, float | None]:
  """Markdown table of final ``pass@k`` on ``eval_set`` per (estimator, learning rate) and the
  rate with the best mean over estimators (the cpu_lr preset's choice)."""
  g = groups(sweep)
  lrs = sorted({lr for (_, _, lr) in g if lr is not None})
  ests = list(dict.fromkeys(e for (e, _, _) in g))
  if not lrs:
    return "", None
  lines = ["| learning rate | " + " | ".join(ests) + " | mean |", "|" + "---|" * (len(ests) + 2)]
  best, best_mean = None, -1.0
  for lr in lrs:
    vals = []
    for e in ests:
      stages = [r for (ee, _, ll), rs in g.items() if ee == e and ll == lr for r in rs]
      st = group_stat(stages, k, eval_set) if stages else None
      vals.append(None if st is None else st["mean"])
    ok = [v for v in vals if v is not None]
    mean = float(np.mean(ok)) if len(ok) == len(vals) else None
    if mean is not None and mean > best_mean:
      best, best_mean = lr, mean
    lines.append(f"| {lr:g} | " + " | ".join("" if v is None else f"{100 * v:.1f}" for v in vals)
                 + f" | {'' if mean is None else f'{100 * mean:.1f}'} |")
  return "\n".join(lines) + "\n", best
