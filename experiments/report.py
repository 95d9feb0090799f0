"""``report.md`` for :mod:`experiments.reproduce`: figures, final numbers, claims and verdicts.

Each section reads only a driver's ``summary.json`` (and, for the ImageNet runs, each run's own
summary), puts the paper's numbers or claims (from the paper) beside this
run's, and states per claim whether this run shows it. The verdicts are computed here from the
metrics; nothing in the report is written by hand. Scale caveats are part of the claim text: a
CPU preset is a small analogue of the paper's experiment, not a reproduction of its numbers.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
from typing import Any, Callable, Mapping, Sequence

from maxrl_jax.train import files
from maxrl_jax.train import logs


def _yes(ok: bool | str | None) -> str:
  """A verdict: yes/no for exact checks; shown/contradicted/inconclusive where the numbers
  carry sampling uncertainty (see :func:`interval_verdict`)."""
  if ok is None:
    return "n/a"
  if isinstance(ok, str):
    return f"**{ok}**"
  return "**yes**" if ok else "**no**"


def interval_verdict(a: tuple[float, float, float], b: tuple[float, float, float]) -> str:
  """Verdict on "a > b" from ``(value, low, high)`` 95% intervals: ``shown`` when a's interval
  lies above b's, ``contradicted`` when it lies below, else ``inconclusive``."""
  if a[1] > b[2]:
    return "shown"
  if a[2] < b[1]:
    return "contradicted"
  return "inconclusive"


def _fmt(x: Any, digits: int = 4) -> str:
  if x is None:
    return "-"
  if isinstance(x, str):
    return x
  x = float(x)
  if math.isnan(x):
    return "nan"
  if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
    return f"{x:.2e}"
  return f"{x:.{digits}g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub-flavoured Markdown table; numbers formatted with :func:`_fmt`."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
  return "\n".join(lines)


def _resolve(path: str, base: str) -> str:
  """``path`` as written by a driver: absolute, relative to the cwd, or relative to ``base``."""
  if os.path.isabs(path) or os.path.exists(path):
    return os.path.abspath(path)
  return os.path.join(base, path)


def _figures(paths: Sequence[str], base: str, report_dir: str) -> str:
  """Markdown images for figure paths relative to ``base`` (or absolute)."""
  out = []
  for p in paths:
    full = _resolve(p, base)
    rel = os.path.relpath(full, report_dir)
    out.append(f"![{os.path.basename(p)}]({rel})")
  return "\n".join(out)


def _claims(rows: Sequence[tuple[str, str, str, bool | None]]) -> str:
  return markdown_table(["claim", "paper / theory", "this run", "shown here?"],
                        [(c, p, t, _yes(ok)) for c, p, t, ok in rows])


# ----------------------------------------------------------------------------- bernoulli


def bernoulli_section(summary: Mapping[str, Any], exp_dir: str, report_dir: str) -> str:
  out = ["## Toy Bernoulli policy (not in the paper)", ""]
  out.append(
      f"{summary['num_prompts']} prompts, initial pass rates log-uniform in [1e-4, 0.9], "
      f"{summary['num_steps']} steps; every estimator with sampled rollouts, its exact expected "
      "gradient, and the exact gradients of J^(T) and of log p.")
  out += ["", _figures(summary.get("figures", []), exp_dir, report_dir), ""]
  claims = []
  for policy, pol in summary["policies"].items():
    checks = pol["checks"]
    n_key = next(k for k in checks if k.startswith("hardest_decile_log_p_gain_at_n"))
    n = int(n_key.rsplit("_n", 1)[1])
    rows = [("initial", "-") + tuple(pol["initial"][m] for m in
                                     ("mean_log_p", "mean_p", "pass@8", "frac_p_gt_half",
                                      "hardest_decile_log_p"))]
    for r in pol["runs"]:
      if r["family"] == "sampled" and r["num_rollouts"] == n and r["estimator"] in (
          "reinforce", "rloo", "grpo", "maxrl"):
        label, nn = f"{r['estimator']} (sampled)", n
      elif r["family"] == "exact_truncated" and r["truncation"] in (1, "inf"):
        label, nn = ("exact RL (T=1)" if r["truncation"] == 1 else "exact ML"), "-"
      else:
        continue
      f = r["final"]
      rows.append((label, nn, f["mean_log_p"], f["mean_p"], f["pass@8"], f["frac_p_gt_half"],
                   f["hardest_decile_log_p"]))
    out += [f"### {policy} policy: final numbers", "",
            markdown_table(["run", "N", "mean log p", "mean p", "pass@8", "frac p>0.5",
                            "hardest decile log p"], rows), ""]
    diff = checks.get("keep_cv_vs_truncated_max_abs_diff_mean_log_p")
    if diff is not None:
      claims.append((f"{policy}: exact-gradient `maxrl_keep_cv` at N follows J^(N)",
                     "E[g] = grad J^(N) (paper eq. 10)",
                     f"max abs diff of mean log p along training {_fmt(diff)}", diff < 1e-4))
    by_t = checks["exact_truncated_final_mean_log_p_by_T"]
    claims.append((f"{policy}: with exact gradients, larger T never lowers the final mean log p",
                   "J^(T) -> log p as T grows" + (" (issue 3: tabular)" if policy == "tabular"
                                                  else " (no guarantee with shared parameters)"),
                   f"T=1: {_fmt(by_t.get('T1'))}, ML: {_fmt(by_t.get('ml'))}; largest drop "
                   f"{_fmt(checks['exact_truncated_max_decrease_in_T'])}",
                   bool(checks["exact_truncated_monotone_in_T"])))
    gains = checks[n_key]
    ok = gains["maxrl"] > max(gains["grpo"], gains["reinforce"], gains["rloo"])
    claims.append((f"{policy}: the hardest prompts gain more log p under MaxRL than under "
                   f"GRPO/RLOO/REINFORCE (N={n})",
                   "MaxRL weights hard prompts up to N x, GRPO ~1/sqrt(p), RL 1 (Table 2)",
                   ", ".join(f"{k} {_fmt(gains[k], 3)}" for k in
                             ("maxrl", "grpo", "rloo", "reinforce", "exact_ml")), ok))
  out += ["### Claims", "", _claims(claims), ""]
  return "\n".join(out)


# ----------------------------------------------------------------------------- imagenet


def _read_json(path: str) -> dict:
  return files.read_json(path) or {}


def imagenet_section(summary: Mapping[str, Any], exp_dir: str, report_dir: str) -> str:
  dataset = summary.get("dataset", "?")
  generated = summary.get("generated_data", False)
  out = ["## ImageNet as binary-reward classification (paper section 6.1)", ""]
  runs = summary["runs"]
  num_classes = None
  for name in runs:
    num_classes = num_classes or _read_json(os.path.join(exp_dir, name, "summary.json")).get(
        "num_classes")
  data_note = (f"the generated `{dataset}` dataset ({num_classes} classes; generated images, "
               "not ImageNet)" if generated else f"`{dataset}` ({num_classes} classes)")
  out.append(f"{summary.get('model', '?')} trained on {data_note}: cross-entropy against "
             "sampled-label objectives with N rollouts per image.")
  out += ["", _figures(summary.get("figures", []), exp_dir, report_dir), ""]
  rows = []
  for name, r in runs.items():
    rows.append((name, r["objective"], r["num_rollouts"], r["step"], r.get("eval/pass@1"),
                 r.get("eval/pass@128"), r.get("eval/top1"), r.get("eval/mean_log_p")))
  out += ["### Final validation numbers", "",
          markdown_table(["run", "objective", "N", "steps", "pass@1", "pass@128", "top-1",
                          "mean log p"], rows), ""]
  claims = []
  maxrl = sorted(((r["num_rollouts"], r) for r in runs.values() if r["objective"] == "maxrl"),
                 key=lambda t: t[0])
  ce = next((r for r in runs.values() if r["objective"] == "cross_entropy"), None)
  if len(maxrl) >= 2:
    vals = [r["eval/pass@1"] for _, r in maxrl]
    ok = all(b >= a for a, b in zip(vals, vals[1:]))
    claims.append(("MaxRL's validation pass@1 grows with the number of rollouts N",
                   "MaxRL 16 < 128 < 1024 (Figure 2)",
                   ", ".join(f"N={n}: {_fmt(r['eval/pass@1'])}" for n, r in maxrl), ok))
  if maxrl and ce is not None:
    n_max, best = maxrl[-1]
    ratio = best["eval/pass@1"] / max(ce["eval/pass@1"], 1e-12)
    claims.append((f"MaxRL with the most rollouts (N={n_max}) comes close to cross-entropy "
                   "(within 20% of its pass@1)",
                   "MaxRL at >= 1024 rollouts close to cross-entropy",
                   f"pass@1 {_fmt(best['eval/pass@1'])} vs {_fmt(ce['eval/pass@1'])} "
                   f"(ratio {_fmt(ratio, 3)})", ratio >= 0.8))
  reinforce = [r for name, r in runs.items()
               if r["objective"] in ("reinforce", "mean_baseline") or name.startswith("reinforce")]
  if reinforce and num_classes:
    threshold = 3.0 / num_classes
    r = reinforce[-1]
    claims.append((f"REINFORCE ({r['objective']}, N={r['num_rollouts']}) stays near its initial "
                   "pass rate 1/C (below 3/C)",
                   "REINFORCE below 0.003 from 1e-3 with 1000 classes (3/C)",
                   f"pass@1 {_fmt(r['eval/pass@1'])}, 3/C = {_fmt(threshold)}",
                   r["eval/pass@1"] < threshold))
  if claims:
    out += ["### Claims", "", _claims(claims), ""]
  return "\n".join(out)


# ----------------------------------------------------------------------------- maze

PAPER_TABLE3 = {"grpo": (43.6, 49.0, 49.6), "rloo": (25.2, 28.7, 29.0),
                "maxrl": (84.4, 92.0, 94.3)}  # pass@1 / pass@128 / pass@256 (%), N = 128


def _maze_final(run: Mapping[str, Any]) -> dict[int, tuple[float, float, float]]:
  """Test-set pass@k of a run's final evaluation: ``{k: (value, ci_low, ci_high)}``.

  Reads the driver's ``eval`` record (keys ``eval/test/pass@k`` and their ``_ci_low`` /
  ``_ci_high`` 95% bootstrap intervals over test mazes; without them the interval is the value).
  """
  ev = run.get("eval", {})
  out = {}
  for key, value in ev.items():
    m = re.fullmatch(r"eval/test/pass@(\d+)", key)
    if m:
      v = float(value)
      out[int(m[1])] = (v, float(ev.get(key + "_ci_low", v)), float(ev.get(key + "_ci_high", v)))
  return out


def _pct(x: tuple[float, float, float]) -> str:
  return f"{100 * x[0]:.1f} [{100 * x[1]:.1f}, {100 * x[2]:.1f}]"


def maze_section(summary: Mapping[str, Any], exp_dir: str, report_dir: str) -> str:
  out = ["## Maze navigation (paper section 6.2)", ""]
  out.append(f"Experiment `{summary.get('experiment')}`, preset `{summary.get('preset')}`: SFT on "
             "BFS paths, then on-policy RL from the same SFT checkpoint for every "
             "(estimator, N); pass@k on held-out test mazes with the unbiased estimator.")
  out += ["", _figures(summary.get("figures", []), exp_dir, report_dir), ""]
  table = summary.get("table")
  if table:
    path = _resolve(table, exp_dir)
    if files.exists(path):
      out += ["### Final test pass@k (Table 3's columns)", "",
              files.as_path(path).read_text().strip(), ""]
  out += ["Paper Table 3 (17x17, N = 128, pass@1 / pass@128 / pass@256 %): " + ", ".join(
      f"{k.upper() if k != 'maxrl' else 'MaxRL'} {a}/{b}/{c}"
      for k, (a, b, c) in PAPER_TABLE3.items()), ""]
  finals = {}
  for name, run in summary.get("runs", {}).items():
    est, n = name.rsplit("_n", 1)
    finals[(est, int(n))] = _maze_final(run)
  sft = _maze_final(summary.get("sft", {}))
  claims = maze_claims(finals, sft)
  if claims:
    out += ["### Claims", "", "Verdicts from 95% bootstrap intervals over test mazes (pass@k in %, "
            "[interval]): *shown* when the intervals separate in the claimed direction, "
            "*contradicted* when they separate the other way, else *inconclusive*.", "",
            _claims(claims), ""]
  return "\n".join(out)


def maze_claims(finals, sft) -> list[tuple[str, str, str, str]]:
  """The paper's maze claims (section 6.2, Figure 3, Table 3) tested on ``finals``:
  ``{(estimator, N): {k: (value, low, high)}}``; ``sft``: the SFT model's ``{k: ...}``."""
  ns = sorted({n for _, n in finals})
  ks = sorted(set.intersection(*(set(f) for f in finals.values()))) if finals else []
  if not ns or not ks:
    return []
  k_big = ks[-1]
  claims = []
  for k in sorted({1, k_big}):
    for a, b in (("maxrl", "grpo"), ("grpo", "rloo")):
      for n in ns:
        if (a, n) in finals and (b, n) in finals:
          x, y = finals[(a, n)][k], finals[(b, n)][k]
          claims.append((f"{a} above {b} in pass@{k} at N = {n}",
                         "MaxRL > GRPO > RLOO at every N and k (Figure 3)",
                         f"{_pct(x)} vs {_pct(y)}", interval_verdict(x, y)))
  if ("maxrl", ns[0]) in finals and ("maxrl", ns[-1]) in finals and len(ns) > 1:
    for k in sorted({1, k_big}):
      x, y = finals[("maxrl", ns[-1])][k], finals[("maxrl", ns[0])][k]
      claims.append((f"MaxRL improves with N: N = {ns[-1]} above N = {ns[0]} in pass@{k}",
                     "pass@1 84.5 (N = 4) to 95.3 (N = 128)", f"{_pct(x)} vs {_pct(y)}",
                     interval_verdict(x, y)))
  for other, n_other, n_maxrl, paper in (
      ("rloo", ns[-1], ns[0], "RLOO at N = 128 below MaxRL at N = 4, every k"),
      ("grpo", ns[-1], ns[min(1, len(ns) - 1)], "GRPO at N = 128 below MaxRL at N = 16, every k")):
    if (other, n_other) in finals and ("maxrl", n_maxrl) in finals:
      x, y = finals[("maxrl", n_maxrl)][k_big], finals[(other, n_other)][k_big]
      claims.append((f"{other.upper()} at N = {n_other} below MaxRL at N = {n_maxrl} in "
                     f"pass@{k_big}", paper, f"MaxRL {_pct(x)} vs {_pct(y)}",
                     interval_verdict(x, y)))
  if 1 in sft:
    for (est, n), f in sorted(finals.items()):
      claims.append((f"{est} N = {n} above the SFT start in pass@1",
                     "every estimator improves on SFT (1.3%)", f"{_pct(f[1])} vs {_pct(sft[1])}",
                     interval_verdict(f[1], sft[1])))
  return claims



SECTIONS: Mapping[str, Callable[[Mapping[str, Any], str, str], str]] = {
    "bernoulli": bernoulli_section,
    "imagenet": imagenet_section,
    "maze": maze_section,
}


def write_report(workdir: str, preset: str, summaries: Mapping[str, Mapping[str, Any]],
                 timings: Mapping[str, Mapping[str, Any]], path: str) -> str:
  """Writes the report for ``summaries`` (``{experiment: summary}``) to ``path``."""
  report_dir = os.fspath(files.as_path(path).parent)
  now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  lines = [f"# MaxRL didactic experiments: reproduction report (`{preset}` presets)", "",
           f"Written {now} by `python -m experiments.reproduce --preset={preset}`. Every number "
           "and verdict below is computed from the runs in this directory.", ""]
  rows = [(name, "complete" if s.get("complete") else "INCOMPLETE",
           logs.format_duration(timings.get(name, {}).get("seconds", float("nan"))))
          for name, s in summaries.items()]
  lines += [markdown_table(["experiment", "status", "wall time"], rows), ""]
  for name, summary in summaries.items():
    exp_dir = os.path.join(workdir, name)
    if not summary.get("complete"):
      lines += [f"## {name}", "", "Not complete: rerun the same command to finish it.", ""]
      continue
    lines += [SECTIONS[name](summary, exp_dir, report_dir), ""]
  files.write_text(path, "\n".join(lines).rstrip() + "\n")
  return path


def publish(report_path: str, dest: str, name: str) -> str:
  """Copies ``report_path`` and every figure it links into ``dest`` (``dest/figures/``).

  The copy is ``dest/<name>``, with its image links rewritten to the copied figures; used to put
  the latest report beside the README (``--publish=docs``).
  """
  import re  # pylint: disable=g-import-not-at-top
  src_dir = files.as_path(report_path).parent
  text = files.as_path(report_path).read_text()

  def _copy(match):
    alt, rel = match.group(1), match.group(2)
    target = os.path.join("figures", os.path.basename(rel))
    files.write_bytes(files.as_path(dest) / target, (src_dir / rel).read_bytes())
    return f"![{alt}]({target})"

  text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", _copy, text)
  out = os.path.join(dest, name)
  files.write_text(out, text)
  return out
