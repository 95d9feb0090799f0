"""The Bernoulli section of ``report.md``: final numbers and the claims checked on them.

Reads only the driver's ``summary.json`` (:func:`experiments.bernoulli.experiment.run`). The
claims: exact-gradient ``maxrl_keep_cv`` at N follows ``J^(N)`` (paper eq. 10); with exact
gradients a larger T never lowers the final mean log p; the hardest prompts gain more under
MaxRL than under GRPO / RLOO / REINFORCE (the weights of Table 2).
"""

from __future__ import annotations

from typing import Any, Mapping

from experiments import report_format as fmt


def section(summary: Mapping[str, Any], exp_dir: str, report_dir: str) -> str:
  """The report's Bernoulli section: figures, final numbers per policy, the claims checked on
  the summary's ``checks`` (:func:`experiments.bernoulli.analysis.checks`)."""
  out = ["## Toy Bernoulli policy (not in the paper)", ""]
  out.append(
      f"{summary['num_prompts']} prompts, initial pass rates log-uniform in [1e-4, 0.9], "
      f"{summary['num_steps']} steps; every estimator with sampled rollouts, its exact expected "
      "gradient, and the exact gradients of J^(T) and of log p.")
  out += ["", fmt.figures(summary.get("figures", []), exp_dir, report_dir), ""]
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
            fmt.markdown_table(["run", "N", "mean log p", "mean p", "pass@8", "frac p>0.5",
                            "hardest decile log p"], rows), ""]
    diff = checks.get("keep_cv_vs_truncated_max_abs_diff_mean_log_p")
    if diff is not None:
      claims.append((f"{policy}: exact-gradient `maxrl_keep_cv` at N follows J^(N)",
                     "E[g] = grad J^(N) (paper eq. 10)",
                     f"max abs diff of mean log p along training {fmt.fmt(diff)}", diff < 1e-4))
    by_t = checks["exact_truncated_final_mean_log_p_by_T"]
    claims.append((f"{policy}: with exact gradients, larger T never lowers the final mean log p",
                   "J^(T) -> log p as T grows" + (" (issue 3: tabular)" if policy == "tabular"
                                                  else " (no guarantee with shared parameters)"),
                   f"T=1: {fmt.fmt(by_t.get('T1'))}, ML: {fmt.fmt(by_t.get('ml'))}; largest drop "
                   f"{fmt.fmt(checks['exact_truncated_max_decrease_in_T'])}",
                   bool(checks["exact_truncated_monotone_in_T"])))
    gains = checks[n_key]
    ok = gains["maxrl"] > max(gains["grpo"], gains["reinforce"], gains["rloo"])
    claims.append((f"{policy}: the hardest prompts gain more log p under MaxRL than under "
                   f"GRPO/RLOO/REINFORCE (N={n})",
                   "MaxRL weights hard prompts up to N x, GRPO ~1/sqrt(p), RL 1 (Table 2)",
                   ", ".join(f"{k} {fmt.fmt(gains[k], 3)}" for k in
                             ("maxrl", "grpo", "rloo", "reinforce", "exact_ml")), ok))
  out += ["### Claims", "", fmt.claims_table(claims), ""]
  return "\n".join(out)
