"""The maze sections of the reproduction report: the paper's maze claims (section 6.2, Figures 3
and 12, Table 3; section 6.3's data-scarce shape) tested on a sweep workdir with the seed axis
and the paired two-level bootstrap of :mod:`experiments.maze.analysis`."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from experiments import report_format as fmt
from experiments.maze import analysis
from maxrl_jax import metrics as metrics_lib
from maxrl_jax.train import files

PAPER_TABLE3 = {"grpo": (43.6, 49.0, 49.6), "rloo": (25.2, 28.7, 29.0),
                "maxrl": (84.4, 92.0, 94.3)}  # pass@1 / pass@128 / pass@256 (%), N = 128


def _pct(st: Mapping[str, float] | None) -> str:
  if not st:
    return "-"
  text = f"{100 * st['mean']:.1f} [{100 * st['low']:.1f}, {100 * st['high']:.1f}]"
  if st.get("seeds", 1) > 1:
    text += f" (seeds {100 * st['seed_min']:.1f}-{100 * st['seed_max']:.1f})"
  return text


def _diff(c: Mapping[str, float] | None) -> str:
  return "-" if not c else (f"diff {100 * c['diff']:+.1f} [{100 * c['low']:+.1f}, "
                            f"{100 * c['high']:+.1f}]")


def _claim(name, paper, a, b, k, eval_set="test", label_a="", label_b=""):
  """One row: "a above b" in pass@k, from the paired two-level bootstrap of the difference."""
  c = analysis.compare(a, b, k, eval_set)
  sa, sb = analysis.group_stat(a, k, eval_set), analysis.group_stat(b, k, eval_set)
  text = f"{label_a}{_pct(sa)} vs {label_b}{_pct(sb)}; {_diff(c)}"
  return (name, paper, text, c["verdict"] if c else "inconclusive (no per-maze counts)")


def _late_solved_any(runs) -> np.ndarray:
  """``[seeds, steps]``: each run's batch fraction of mazes with >= 1 success over its last
  quarter of steps; every run sees the same mazes at a step, so the steps pair the runs."""
  rows = []
  for r in runs:
    _, vals = analysis.history(r, "train/frac_any_success")
    rows.append(vals[len(vals) - max(1, len(vals) // 4):])
  return np.stack(rows)


def maze_claims(sweep: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
  """The paper's maze claims (section 6.2, Figures 3 and 12, Table 3) tested on a sweep
  (:func:`experiments.maze.analysis.load_sweep`): mean over seeds, paired two-level bootstrap
  over test mazes and seeds, verdict shown / contradicted / inconclusive."""
  g = {(e, n): rs for (e, n, lr), rs in analysis.groups(sweep).items()}
  ns = sorted({n for _, n in g})
  ks = analysis.final_ks([r for rs in g.values() for r in rs])
  if not ns or not ks:
    return []
  ks = sorted({1, ks[-1]})
  claims = []
  for k in ks:
    if ("maxrl", ns[0]) in g and ("maxrl", ns[-1]) in g and len(ns) > 1:
      for lo_n, hi_n in zip(ns[:-1], ns[1:]):
        claims.append(_claim(f"MaxRL improves with N: N = {hi_n} above N = {lo_n}, pass@{k}",
                             "yes at every k (Figure 3; pass@1 84.5 at N = 4 to 95.3 at N = 128)",
                             g[("maxrl", hi_n)], g[("maxrl", lo_n)], k))
  for k in ks:
    for a, b in (("maxrl", "grpo"), ("grpo", "rloo")):
      for n in ns:
        if (a, n) in g and (b, n) in g:
          claims.append(_claim(f"{a} above {b} at N = {n}, pass@{k}",
                               "MaxRL > GRPO > RLOO at every N and k (Figure 3)",
                               g[(a, n)], g[(b, n)], k))
  for other, n_other, n_maxrl, paper in (
      ("rloo", ns[-1], ns[0], "RLOO at N = 128 below MaxRL at N = 4, every k (Figure 3)"),
      ("grpo", ns[-1], ns[min(1, len(ns) - 1)],
       "GRPO at N = 128 below MaxRL at N = 16, every k (Figure 3)")):
    if (other, n_other) in g and ("maxrl", n_maxrl) in g:
      for k in ks:
        claims.append(_claim(f"MaxRL at N = {n_maxrl} above {other.upper()} at N = {n_other}, "
                             f"pass@{k}", paper, g[("maxrl", n_maxrl)], g[(other, n_other)], k,
                             label_a="MaxRL ", label_b=f"{other.upper()} "))
  for n in ns:
    for other in ("grpo", "rloo"):
      if ("maxrl", n) in g and (other, n) in g:
        ma, mb = _late_solved_any(g[("maxrl", n)]), _late_solved_any(g[(other, n)])
        if ma.shape[1] == mb.shape[1] and ma.shape[1] > 1:
          d, lo, hi = metrics_lib.two_level_bootstrap_ci(ma, mb, num_resamples=2000)
          verdict = analysis.verdict(lo, hi)
          claims.append((f"Figure 12: MaxRL solves more training mazes at least once than "
                         f"{other.upper()} at N = {n} (last quarter of steps)",
                         "MaxRL's fraction stays higher (Figure 12)",
                         f"{100 * ma.mean():.1f}% vs {100 * mb.mean():.1f}%; diff {100 * d:+.1f} "
                         f"[{100 * lo:+.1f}, {100 * hi:+.1f}]", verdict))
  sft = analysis.sft_stages(sweep)
  if sft and analysis.final_ks(sft):
    for (est, n), rs in g.items():
      claims.append(_claim(f"{est} N = {n} above the SFT start, pass@1",
                           "every estimator improves on SFT (1.3%, Figure 3)", rs, sft, 1,
                           label_b="SFT "))
  return claims


def scarce_claims(sweep: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
  """The data-scarce analogue of the paper's GSM8K result (section 6.3, Figure 5): on held-out
  mazes MaxRL keeps pass@k at the largest k where GRPO and RLOO lose it."""
  g = {e: rs for (e, n, lr), rs in analysis.groups(sweep).items()}
  ks = analysis.final_ks([r for rs in g.values() for r in rs])
  if "maxrl" not in g or not ks:
    return []
  claims = []
  for other in ("grpo", "rloo"):
    if other in g:
      for k in sorted({1, ks[-1]}):
        claims.append(_claim(f"data-scarce: MaxRL above {other.upper()} on test mazes, pass@{k}",
                             "GRPO/RLOO pass@k falls late in training, MaxRL keeps it (Figure 5)",
                             g["maxrl"], g[other], k))
  sft = analysis.sft_stages(sweep)
  if sft and ks:
    k = ks[-1]
    for est, rs in g.items():
      if est == "maxrl":
        claims.append(_claim(f"data-scarce: MaxRL's test pass@{k} at the end above the SFT start",
                             "MaxRL's pass@k keeps improving over training (Figure 5)", rs, sft,
                             k, label_b="SFT "))
      else:
        claims.append(_claim(f"data-scarce: {est.upper()}'s test pass@{k} falls below the SFT "
                             "start", "GRPO/RLOO pass@k falls late in training (Figure 5)",
                             sft, rs, k, label_a="SFT "))
  return claims


_MAZE_VERDICTS = ("Verdicts: the mean over RL seeds (pass@k in %, [95% interval], seed range); "
                  "*shown* when the 95% interval of the difference (a paired two-level "
                  "bootstrap over test mazes and seeds) lies above 0, *contradicted* when it lies "
                  "below 0, else *inconclusive*. No bar is loosened: 0 is the bar.")


def section(summary: Mapping[str, Any], exp_dir: str, report_dir: str) -> str:
  sweep = analysis.load_sweep(exp_dir)
  scarce = summary.get("experiment") == "data_scarce"
  cfg = sweep.get("config") or {}
  seeds = len((cfg.get("sweep") or {}).get("seeds", [0]))
  sft_seeds = len((cfg.get("sweep") or {}).get("sft_seeds", [0]))
  title = ("## Maze, data-scarce regime (the analogue of paper section 6.3's GSM8K result)"
           if scarce else "## Maze navigation (paper section 6.2)")
  out = [title, ""]
  out.append(f"Experiment `{summary.get('experiment')}`, preset `{summary.get('preset')}`: SFT on "
             f"BFS paths ({sft_seeds} SFT seed(s); RL starts from the first), then on-policy RL "
             f"for every (estimator, N) with {seeds} RL seed(s); pass@k on "
             f"{(cfg.get('eval') or {}).get('num_mazes', '?')} held-out test mazes with the "
             "unbiased estimator.")
  out += ["", fmt.figures(summary.get("figures", []), exp_dir, report_dir), ""]
  table = summary.get("table")
  if table:
    path = fmt.resolve(table, exp_dir)
    if files.exists(path):
      out += ["### Final pass@k (mean over seeds [95% interval over mazes and seeds])", "",
              files.as_path(path).read_text().strip(), ""]
  if not scarce:
    out += ["Paper Table 3 (17x17, N = 128, pass@1 / pass@128 / pass@256 %): " + ", ".join(
        f"{k.upper() if k != 'maxrl' else 'MaxRL'} {a}/{b}/{c}"
        for k, (a, b, c) in PAPER_TABLE3.items()), ""]
  claims = scarce_claims(sweep) if scarce else maze_claims(sweep)
  if claims:
    out += ["### Claims", "", _MAZE_VERDICTS, "", fmt.claims_table(claims), ""]
  collapsed = [name for name, r in sweep["runs"].items() if analysis.collapsed(r)]
  out += [f"Collapsed runs (all rollouts failing, zero gradient, for the last "
          f"{analysis.COLLAPSE_WINDOW} logged steps): {', '.join(collapsed) or 'none'}.", ""]
  return "\n".join(out)
