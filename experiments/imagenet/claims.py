"""The ImageNet comparison's report section: final numbers beside the paper's, and the claims.

Reads only a comparison's ``summary.json`` (and each run's own summary for the number of
classes). The paper's numbers are those of section 6.1 (Figures 2 and 9; values marked ``~``
are read off the figures, about +-1-2 points). Used by :mod:`experiments.report` (the
reproduction report) and, for a comparison run on its own, by

  python -m experiments.imagenet.claims runs/imagenet/cpu_long docs/imagenet_cpu_long.md

(``WORKDIR/report.md``, copied with its figures to ``docs/``).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping

from experiments import report_format as fmt
from experiments.common import stats as stats_lib
from maxrl_jax.train import files

# MaxRL with the most rollouts "matches" cross-entropy when its final validation pass@1 is at
# least this fraction of cross-entropy's. The paper's claim (section 6.1, Figure 2) is that
# MaxRL N = 1,024 comes within a few percent of cross-entropy (59.6% vs 60.5% pass@1, 0.985).
IMAGENET_MATCH_BAR = 0.95

# Paper section 6.1 (ResNet-50 on ImageNet, 20 epochs): final validation pass@1, pass@128 and
# top-1 in percent, as printed ("59.6") or read off Figures 2 and 9 ("~48"); None: not given.
PAPER_NUMBERS: dict[str, tuple[str | None, str | None, str | None]] = {
    "cross_entropy": ("60.5", "94.8", "~71"),
    "maxrl_n1024": ("59.6", "93.5", "~70"),
    "maxrl_n128": ("37.6", "54.8", "~42"),
    "maxrl_n16": ("4.0", "7.6", None),
    "grpo_n1024": ("~48", "~63", "~49.5"),
    "grpo_n128": ("~12.5", "~16", "~13.5"),
    "reinforce_n1024": ("~0.1", "11.5", "~0"),
}
_PAPER_KEYS = ("eval/pass@1", "eval/pass@128", "eval/top1")


def _read_json(path: str) -> dict:
  return files.read_json(path) or {}


def imagenet_runs(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
  """The comparison's runs with their seeds grouped: ``{run name: {"objective",
  "num_rollouts", "step", "per_seed": {seed: entry}}}`` in a fixed order
  (``summary["aggregate"]`` names each run's seeds and directories; a summary without it has
  one seed per run)."""
  runs = summary["runs"]
  agg = summary.get("aggregate")
  if agg:
    groups = {name: list(zip(a["seeds"], a["dirs"])) for name, a in agg.items()}
  else:
    groups = {name: [(int(r.get("seed", 0)), name)] for name, r in runs.items()}
  out = {}
  for name, members in groups.items():
    first = runs[members[0][1]]
    out[name] = {"objective": first["objective"], "num_rollouts": first["num_rollouts"],
                 "step": first["step"], "per_seed": {s: runs[d] for s, d in members}}
  # One order however the summary was stored (JSON files sort their keys): cross-entropy,
  # MaxRL, GRPO, the rest; by N within an objective.
  rank = {"cross_entropy": 0, "maxrl": 1, "grpo": 2}
  order = sorted(out, key=lambda n: (rank.get(out[n]["objective"], 3), out[n]["num_rollouts"], n))
  return {n: out[n] for n in order}


def _values(run: Mapping[str, Any], key: str) -> list[float]:
  return [float(v) for v in stats_lib.values(e.get(key) for e in run["per_seed"].values())]


def _seed_mean(run: Mapping[str, Any], key: str) -> float:
  """The mean over seeds (nan if no seed has the value, e.g. every seed diverged)."""
  return stats_lib.mean(_values(run, key))


def _seed_cell(run: Mapping[str, Any], key: str, scale: float = 1.0, digits: int = 4) -> str:
  """``mean`` with one seed, ``mean [min, max]`` over several (values times ``scale``)."""
  values = [scale * v for v in _values(run, key)]
  if not values:
    return "-"
  st = stats_lib.stats(values)
  if len(values) == 1:
    return fmt.fmt(st["mean"], digits)
  return (f"{fmt.fmt(st['mean'], digits)} [{fmt.fmt(st['min'], digits)}, "
          f"{fmt.fmt(st['max'], digits)}]")


def paper_table(runs: Mapping[str, Mapping[str, Any]]) -> str:
  """Markdown: per run with a paper counterpart, the paper's pass@1 / pass@128 / top-1 (%)
  beside this comparison's (%, seed mean [min, max])."""
  rows = []
  for name, r in runs.items():
    paper = PAPER_NUMBERS.get(name)
    if paper is None:
      continue
    row = [name]
    for key, p in zip(_PAPER_KEYS, paper):
      row += [p or "-", _seed_cell(r, key, scale=100.0, digits=3)]
    rows.append(row)
  return fmt.markdown_table(["run", "pass@1 paper", "pass@1 here", "pass@128 paper",
                             "pass@128 here", "top-1 paper", "top-1 here"], rows)


def _by_objective(runs, objective: str) -> list[tuple[int, Mapping[str, Any]]]:
  return sorted(((r["num_rollouts"], r) for r in runs.values() if r["objective"] == objective),
                key=lambda t: t[0])


def _grows_with_n(ordered: list[tuple[int, Mapping[str, Any]]], seeds: list[int]
                  ) -> tuple[str, bool]:
  """Whether validation pass@1 grows with N along ``ordered`` (by N): with several seeds each
  larger N's lowest seed above the smaller N's highest (disjoint seed ranges), with one seed
  the values themselves non-decreasing."""
  vals = [_values(r, "eval/pass@1") for _, r in ordered]
  text = ", ".join(f"N={n}: {fmt.fmt(_seed_mean(r, 'eval/pass@1'))}" for n, r in ordered)
  if len(seeds) > 1:
    ok = all(min(b) > max(a) for a, b in zip(vals, vals[1:]))
    return text + " (seed means; disjoint seed ranges required)", ok
  return text, all(b[0] >= a[0] for a, b in zip(vals, vals[1:]))


def imagenet_claims(runs: Mapping[str, Mapping[str, Any]], num_classes: int | None,
                    seeds: list[int]) -> list[tuple[str, str, str, bool | str]]:
  """The claims of section 6.1 checked on the comparison's seed means."""
  claims = []
  floor = 3.0 / num_classes if num_classes else None  # "left the initial pass rate 1/C"
  maxrl, grpo = _by_objective(runs, "maxrl"), _by_objective(runs, "grpo")
  ce = next((r for r in runs.values() if r["objective"] == "cross_entropy"), None)
  if len(maxrl) >= 2:
    text, ok = _grows_with_n(maxrl, seeds)
    claims.append(("MaxRL's validation pass@1 grows with the number of rollouts N",
                   "MaxRL 16 < 128 < 1024 (Figure 2: 4.0%, 37.6%, 59.6%)", text, ok))
  if maxrl and ce is not None:
    n_max, best = maxrl[-1]
    best_p, ce_p = _seed_mean(best, "eval/pass@1"), _seed_mean(ce, "eval/pass@1")
    ratio = best_p / max(ce_p, 1e-12)
    text = f"pass@1 {fmt.fmt(best_p)} vs {fmt.fmt(ce_p)} (ratio {fmt.fmt(ratio, 3)}"
    if len(seeds) > 1:
      common = sorted(set(best["per_seed"]) & set(ce["per_seed"]))
      per_seed = [best["per_seed"][s]["eval/pass@1"] / max(ce["per_seed"][s]["eval/pass@1"],
                                                          1e-12) for s in common]
      text = (f"seed means: {text}; per-seed ratios {fmt.fmt(min(per_seed), 3)} to "
              f"{fmt.fmt(max(per_seed), 3)}")
    claims.append((f"MaxRL with the most rollouts (N={n_max}) matches cross-entropy: pass@1 at "
                   f"least {IMAGENET_MATCH_BAR:.0%} of cross-entropy's",
                   "MaxRL N = 1,024 within a few percent of cross-entropy (Figure 2: 59.6% vs "
                   "60.5% pass@1, ratio 0.985)", text + ")", ratio >= IMAGENET_MATCH_BAR))
  if grpo and maxrl:
    same = [(n, g, m) for n, g in grpo for nm, m in maxrl if nm == n]
    if same:
      n, g, m = same[-1]
      gp, mp = _seed_mean(g, "eval/pass@1"), _seed_mean(m, "eval/pass@1")
      claims.append((f"GRPO below MaxRL at the same N={n} (validation pass@1)",
                     "GRPO N = 1,024 ~48% against MaxRL's 59.6% (Figure 9)",
                     f"GRPO {fmt.fmt(gp)} vs MaxRL {fmt.fmt(mp)}", gp < mp))
  if grpo and floor:
    n, g = grpo[-1]
    gp = _seed_mean(g, "eval/pass@1")
    claims.append((f"GRPO with the most rollouts (N={n}) learns: pass@1 above 3/C",
                   "GRPO N = 1,024 reaches ~48% from 0.1% (Figure 9)",
                   f"pass@1 {fmt.fmt(gp)}, 3/C = {fmt.fmt(floor)}", gp > floor))
  if len(grpo) >= 2:
    text, ok = _grows_with_n(grpo, seeds)
    if floor and _seed_mean(grpo[-1][1], "eval/pass@1") <= floor:
      # Neither run left the initial pass rate: a difference between them says nothing.
      text, ok = text + "; no GRPO run left 3/C", "inconclusive"
    claims.append(("GRPO's validation pass@1 grows with N", "GRPO 128 < 1024 (~12.5% < ~48%)",
                   text, ok))
  reinforce = [r for name, r in runs.items()
               if r["objective"] in ("reinforce", "mean_baseline") or name.startswith("reinforce")]
  if reinforce and floor:
    r = reinforce[-1]
    value = _seed_mean(r, "eval/pass@1")
    claims.append((f"REINFORCE ({r['objective']}, N={r['num_rollouts']}) stays near its initial "
                   "pass rate 1/C (below 3/C)",
                   "REINFORCE below 0.003 from 1e-3 with 1000 classes (3/C)",
                   f"pass@1 {fmt.fmt(value)}, 3/C = {fmt.fmt(floor)}", value < floor))
  return claims


def section(summary: Mapping[str, Any], exp_dir: str, report_dir: str) -> str:
  """The report section of one comparison (``exp_dir`` holds its runs)."""
  dataset = summary.get("dataset", "?")
  generated = summary.get("generated_data", False)
  out = ["## ImageNet as binary-reward classification (paper section 6.1)", ""]
  num_classes = summary.get("num_classes")
  for name in summary["runs"]:
    num_classes = num_classes or _read_json(os.path.join(exp_dir, name, "summary.json")).get(
        "num_classes")
  runs = imagenet_runs(summary)
  seeds = sorted({s for r in runs.values() for s in r["per_seed"]})
  data_note = (f"the generated `{dataset}` dataset ({num_classes} classes; generated images, "
               "not ImageNet)" if generated else f"`{dataset}` ({num_classes} classes)")
  out.append(f"{summary.get('model', '?')} trained on {data_note}: cross-entropy against "
             "sampled-label objectives with N rollouts per image.")
  if len(seeds) > 1:
    out.append(f"Every run trained with {len(seeds)} seeds ({', '.join(map(str, seeds))}): "
               "numbers are seed means [min, max], curves seed means with min-max bands.")
  out += ["", fmt.figures(summary.get("figures", []), exp_dir, report_dir), ""]
  rows = []
  for name, r in runs.items():
    rows.append((name, r["objective"], r["num_rollouts"], r["step"], len(r["per_seed"]))
                + tuple(_seed_cell(r, k) for k in ("eval/pass@1", "eval/pass@128", "eval/top1",
                                                    "eval/mean_log_p")))
  out += ["### Final validation numbers", "",
          fmt.markdown_table(["run", "objective", "N", "steps", "seeds", "pass@1", "pass@128",
                              "top-1", "mean log p"], rows), ""]
  if any(name in PAPER_NUMBERS for name in runs):
    scale = ("ResNet-50 on ImageNet, ~1e5 steps" + (" against this run's generated data: the "
             "direction is comparable, the numbers are not" if generated else ""))
    out += ["### Beside the paper (%)", "",
            f"Paper: section 6.1, Figures 2 and 9 (`~`: read off the figures; {scale}).", "",
            paper_table(runs), ""]
  claims = imagenet_claims(runs, num_classes, seeds)
  if claims:
    out += ["### Claims", "", f"The match bar is {IMAGENET_MATCH_BAR:.0%} of cross-entropy's "
            "final validation pass@1" + (", from seed means" if len(seeds) > 1 else "") + ".",
            "", fmt.claims_table(claims), ""]
  return "\n".join(out)


def write_markdown(workdir: str, path: str) -> str:
  """Writes the section of the comparison in ``workdir`` (its ``summary.json``) to ``path``,
  headed by the command that makes it; figure links are relative to ``path``'s directory."""
  summary = _read_json(os.path.join(workdir, "summary.json"))
  if not summary.get("complete"):
    raise ValueError(f"{workdir}: no complete comparison summary (rerun the comparison)")
  report_dir = os.path.dirname(os.path.abspath(path))
  preset = summary.get("preset") or "?"
  head = [f"# The ImageNet-style comparison `{preset}`", "",
          f"    python -m experiments.imagenet.main "
          f"--config=experiments/imagenet/config.py:{preset} --workdir={workdir}", "",
          "Everything below is computed from that workdir by `experiments/imagenet/claims.py` "
          "(the reproduction report's ImageNet section).", ""]
  text = "\n".join(head + [section(summary, workdir, report_dir)])
  files.write_text(path, text.rstrip() + "\n")
  return path


def main(argv: list[str]) -> str:
  """``WORKDIR OUT.md``: writes ``WORKDIR/report.md`` and copies it with its figures beside
  ``OUT.md`` (figures in ``figures/<OUT stem>_<name>``)."""
  if len(argv) != 2:
    raise SystemExit("usage: python -m experiments.imagenet.claims WORKDIR OUT.md")
  workdir, out = argv
  local = write_markdown(workdir, os.path.join(workdir, "report.md"))
  stem = os.path.splitext(os.path.basename(out))[0]
  return fmt.publish(local, os.path.dirname(out) or ".", os.path.basename(out), prefix=stem + "_")


if __name__ == "__main__":
  print(main(sys.argv[1:]))
