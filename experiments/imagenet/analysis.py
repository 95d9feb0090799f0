"""The numbers of an ImageNet comparison across seeds: the aggregate per run and the
learning-rate sweep (appendix D.2), from the trainings' final evaluations.

:func:`aggregate` and :func:`lr_sweep_summary` only combine the trainings' summary entries (seed
statistics from :mod:`experiments.common.stats`); :func:`load` reads a finished comparison's
``summary.json``. The figures (:mod:`experiments.imagenet.plots`) and the report section
(:mod:`experiments.imagenet.claims`) are made of these.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from experiments.common import stats as stats_lib
from experiments.imagenet import runs as runs_lib
from maxrl_jax.train import files

SUMMARY_FILE = "summary.json"
LR_SWEEP_TABLE = "lr_sweep.md"
SWEEP_METRIC = "eval/pass@1"  # The sweep's choice of the best learning rate (final, validation).


def load(workdir) -> dict[str, Any] | None:
  """The comparison's ``summary.json`` (None until the comparison is complete)."""
  return files.read_json(files.as_path(workdir) / SUMMARY_FILE)


def aggregate(config, entries: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """Per comparison run: its final evaluation over seeds.

  ``{run name: {"objective", "num_rollouts", "learning_rate", "seeds", "dirs",
  "eval/<metric>": {"mean", "min", "max", "std"}, "pass_at_k": {k: {...}}, "diverged_seeds"}}``
  for every ``eval/*`` number of the trainings' entries (``entries``: the summary's ``runs``, by
  directory; a diverged training counts as nan); ``std`` is the sample standard deviation over
  seeds (None with one seed).
  """
  out: dict[str, dict[str, Any]] = {}
  for r in runs_lib.comparison_runs(config):
    trained = [t for t in runs_lib.trained_runs(config) if t["name"] == r["name"]]
    per_seed = [entries[t["dir"]] for t in trained]
    agg: dict[str, Any] = {"objective": r["objective"], "num_rollouts": r["num_rollouts"],
                           "learning_rate": r["learning_rate"],
                           "seeds": [t["seed"] for t in trained],
                           "dirs": [t["dir"] for t in trained]}
    keys = sorted({k for e in per_seed for k, v in e.items()
                   if k.startswith("eval/") and isinstance(v, (int, float))})
    for k in keys:  # A diverged training has no evaluation: nan, never a best value.
      agg[k] = stats_lib.stats([e.get(k, math.nan) for e in per_seed])
    ks = next((e["pass_at_k"] for e in per_seed if e.get("pass_at_k")), {})
    agg["pass_at_k"] = {
        k: stats_lib.stats([e.get("pass_at_k", {}).get(k, math.nan) for e in per_seed])
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
    by_rate = {f"{lr:g}": agg[runs_lib.lr_run_name(r["name"], lr)].get(SWEEP_METRIC)
               for lr in rates}
    finite = {lr: float(v["mean"]) for lr, v in zip(rates, by_rate.values())
              if v is not None and math.isfinite(v["mean"])}
    best = max(finite, key=finite.get) if finite else None
    diverged = [f"{lr:g}" for lr in rates
                if agg[runs_lib.lr_run_name(r["name"], lr)].get("diverged_seeds")]
    out["runs"][str(r["name"])] = {
        "objective": str(r["objective"]), "num_rollouts": int(r.get("num_rollouts", 1)),
        "by_rate": by_rate, "diverged": diverged, "best_learning_rate": best,
        "best": finite.get(best) if best is not None else None,
        "best_run": runs_lib.lr_run_name(r["name"], best) if best is not None else None}
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
