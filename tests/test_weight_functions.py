"""Tests for the weight-function figure script (experiments/weight_functions.py)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import weight_functions
from maxrl_jax import theory

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_curves_are_the_theory():
  p = weight_functions.pass_rate_grid(40)
  assert p.min() >= 1e-3 and p.max() < 1.0 and np.all(np.diff(p) > 0)
  pop = weight_functions.population_curves(p)
  np.testing.assert_allclose(pop["MaxRL T=1"], pop["RL"], rtol=1e-14)
  np.testing.assert_allclose(pop["MaxRL T=128"], (1 - (1 - p) ** 128) / p, rtol=1e-12)
  assert np.all(pop["ML (T=inf)"] >= pop["MaxRL T=128"])
  finite = weight_functions.finite_n_curves(p, 8, 2)
  assert len(finite) == 10
  np.testing.assert_allclose(finite["diff. smoothing (grpo + smoothing)"],
                             theory.expected_weight("grpo", 8, p) - 0.05 * np.log(p)
                             - 0.05 * np.log1p(-p), rtol=1e-12)
  np.testing.assert_allclose(pop["Diff. Smoothing (GRPO + 0.05, 0.05)"],
                             pop["GRPO"] - 0.05 * np.log(p) - 0.05 * np.log1p(-p), rtol=1e-12)
  np.testing.assert_allclose(finite["maxrl, Alg. 1 (= w_7)"], theory.truncated_weight(p, 7),
                             rtol=1e-12)
  np.testing.assert_allclose(finite["maxrl truncated T=2 (= w_2)"], 2 - p, rtol=1e-12)


def test_plot_writes_png(tmp_path):
  path = weight_functions.plot_weight_functions(str(tmp_path / "sub" / "w.png"), n=8)
  with open(path, "rb") as f:
    assert f.read(8) == _PNG_MAGIC
  assert os.path.getsize(path) > 10_000


@pytest.mark.parametrize("n,t,field", [(1, None, "n"), (8, 9, "truncation"), (8, 0, "truncation")])
def test_plot_errors(tmp_path, n, t, field):
  with pytest.raises(ValueError, match=f"^{field}"):
    weight_functions.plot_weight_functions(str(tmp_path / "w.png"), n=n, truncation=t)


def test_command_line(tmp_path):
  env = dict(os.environ, MPLBACKEND="Agg", JAX_PLATFORMS="cpu")
  out = subprocess.run(
      [sys.executable, "-m", "experiments.weight_functions", f"--out={tmp_path}", "--n=4"],
      cwd=_ROOT, env=env, capture_output=True, text=True, timeout=300, check=True)
  path = tmp_path / "weight_functions.png"
  assert str(path) in out.stdout
  assert path.read_bytes()[:8] == _PNG_MAGIC
