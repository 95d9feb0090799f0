r"""Figure 1 of the paper and its finite-N companion: gradient weight functions ``w(p)``.

Left panel: population weights (``E[g] = w(p) grad p`` with infinitely many rollouts) of RL
(``1``), GRPO (``1/sqrt(p(1-p))``), MaxRL truncated at ``T = 1, 2, 4, ..., 128``
(``w_T(p) = (1 - (1-p)^T)/p``), maximum likelihood (``1/p``) and Differential Smoothing on
GRPO (Gai et al. 2025, coefficients 0.05: ``1/sqrt(p(1-p)) - 0.05 log p - 0.05 log(1-p)``, its
weight for a policy with one success and one failure outcome), on log-log axes for
``p in [1e-3, 1]``. Right panel: the exact finite-N weights of every estimator in
:mod:`maxrl_jax.estimators` for one group size ``N``, from :func:`maxrl_jax.theory.expected_weight`.

Usage::

  python -m experiments.weight_functions --out=DIR [--n=16]

writes ``DIR/weight_functions.png``.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

from absl import app
from absl import flags
import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from maxrl_jax import theory  # noqa: E402

TRUNCATIONS = (1, 2, 4, 8, 16, 32, 64, 128)


def pass_rate_grid(num: int = 400) -> np.ndarray:
  """Pass rates in ``[1e-3, 1)``, log-spaced, denser towards 1 to show GRPO's rise."""
  low = np.logspace(-3.0, 0.0, num, endpoint=False)
  high = 1.0 - np.logspace(-4.0, -1.0, num // 4)
  return np.unique(np.concatenate([low, high]))


def population_curves(p: np.ndarray) -> dict[str, np.ndarray]:
  """Population weights: ``'RL'``, ``'GRPO'``, ``'MaxRL T=...'`` for each truncation, ``'ML'``."""
  curves = {"RL": theory.population_weight("rl", p), "GRPO": theory.population_weight("grpo", p)}
  for t in TRUNCATIONS:
    curves[f"MaxRL T={t}"] = theory.population_weight("maxrl", p, t)
  curves["ML (T=inf)"] = theory.population_weight("ml", p)
  curves["Diff. Smoothing (GRPO + 0.05, 0.05)"] = theory.population_weight("dsgrpo", p)
  return curves


def finite_n_curves(p: np.ndarray, n: int, truncation: int) -> dict[str, np.ndarray]:
  """Exact ``w_N(p)`` of every estimator for group size ``n`` (labels say what each equals)."""
  specs = [
      ("reinforce (= 1)", "reinforce", {}),
      ("rloo (= 1)", "rloo", {}),
      (f"mean baseline (= {n - 1}/{n})", "mean_baseline", {}),
      ("grpo, population std", "grpo", {}),
      ("grpo, sample std", "grpo", {"std": "sample"}),
      (f"maxrl, Alg. 1 (= w_{n - 1})", "maxrl", {}),
      (f"maxrl keep cv (= w_{n})", "maxrl_keep_cv", {}),
      (f"maxrl no cv (= w_{n})", "maxrl_no_cv", {}),
      (f"maxrl truncated T={truncation} (= w_{truncation})", "maxrl_truncated",
       {"truncation": truncation}),
      ("diff. smoothing (grpo + smoothing)", "dsgrpo", {}),
  ]
  return {label: theory.expected_weight(method, n, p, **opts) for label, method, opts in specs}


def plot_weight_functions(path: str, n: int = 16, truncation: int | None = None) -> str:
  """Draws both panels and saves a PNG at ``path`` (parent folders are created).

  Args:
    path: output file (``.png``).
    n: group size ``N >= 2`` of the finite-N panel.
    truncation: ``T`` of the truncated estimator in the finite-N panel (default ``max(1, N//4)``).

  Returns:
    ``path``.
  """
  if isinstance(n, bool) or not isinstance(n, int) or n < 2:
    raise ValueError(f"n: need an int N >= 2 for the finite-N panel, got {n!r}")
  truncation = max(1, n // 4) if truncation is None else truncation
  if not 1 <= truncation <= n:
    raise ValueError(f"truncation: need 1 <= T <= N = {n}, got {truncation}")
  p = pass_rate_grid()
  fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)

  cmap = plt.get_cmap("viridis")
  for label, w in population_curves(p).items():
    if label.startswith("MaxRL"):
      t = int(label.split("=")[1])
      color = cmap(math.log2(t) / math.log2(TRUNCATIONS[-1]) * 0.85)
      left.loglog(p, w, color=color, lw=1.6, label=label)
    elif label == "RL":
      left.loglog(p, w, color="black", lw=2.2, ls="--", label="RL (= MaxRL T=1)")
    elif label == "GRPO":
      left.loglog(p, w, color="tab:red", lw=2.0, label=label)
    elif label.startswith("Diff."):
      left.loglog(p, w, color="tab:purple", lw=2.0, ls="-.", label=label)
    else:
      left.loglog(p, w, color="tab:orange", lw=2.2, ls=":", label=label)
  left.set_title("Population weights (Figure 1): E[g] = w(p) grad p")

  styles = ["-", "--", "-.", ":"]
  markers = ["o", "s", "^", "v", "D", "x", "+", "*", "P", "h"]
  for i, (label, w) in enumerate(finite_n_curves(p, n, truncation).items()):
    right.loglog(p, w, ls=styles[i % 4], marker=markers[i], markevery=(i * 9, 60), ms=5, lw=1.5,
                 label=label)
  right.loglog(p, theory.population_weight("ml", p), color="gray", lw=1, alpha=0.5,
               label="ML 1/p (reference)")
  right.set_title(f"Exact finite-N weights, N = {n} (enumeration over K ~ Bin(N, p))")

  for ax in (left, right):
    ax.set_xlim(1e-3, 1.0)
    ax.set_xlabel("pass rate p")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7.5, loc="upper right")
  left.set_ylabel("gradient weight w(p)")
  left.set_ylim(0.3, 2e3)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


_OUT = flags.DEFINE_string("out", "figures", "Output folder; the PNG is OUT/weight_functions.png.")
_N = flags.DEFINE_integer("n", 16, "Group size N of the finite-N panel.")
_T = flags.DEFINE_integer("truncation", None, "T of the truncated estimator (default N // 4).")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  path = plot_weight_functions(os.path.join(_OUT.value, "weight_functions.png"), n=_N.value,
                               truncation=_T.value)
  print(path)


if __name__ == "__main__":
  app.run(main)
