"""Tests for maxrl_jax.metrics: unbiased pass@k and analytic pass@k."""

from fractions import Fraction
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from maxrl_jax import metrics


def exact_pass_at_k(n, c, k):
  if n - c < k:
    return 1.0
  return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


def test_pass_at_k_matches_exact_fractions_up_to_n4096():
  rng = np.random.default_rng(0)
  n = rng.integers(1, 4097, size=200)
  c = np.array([rng.integers(0, m + 1) for m in n])
  k = np.array([rng.integers(1, m + 1) for m in n])
  # Hard corners: one success in 4096, one failure in 4096, k = 1 and k = n.
  n = np.concatenate([n, [4096, 4096, 4096, 4096, 2048, 1]])
  c = np.concatenate([c, [1, 4095, 0, 4096, 1, 1]])
  k = np.concatenate([k, [1, 1, 2048, 4096, 2048, 1]])
  got = metrics.pass_at_k(n, c, k)
  want = np.array([exact_pass_at_k(*map(int, v)) for v in zip(n, c, k)])
  assert got.dtype == np.float64
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=0.0)


def test_pass_at_k_special_values():
  assert metrics.pass_at_k(10, 0, 3) == 0.0
  assert metrics.pass_at_k(10, 10, 3) == 1.0
  assert metrics.pass_at_k(10, 8, 3) == 1.0  # n - c < k: every k-subset has a success
  np.testing.assert_allclose(metrics.pass_at_k(4096, np.arange(4097), 1), np.arange(4097) / 4096,
                             rtol=1e-12, atol=1e-15)
  assert not np.signbit(metrics.pass_at_k(10, 0, 3))


def test_pass_at_k_broadcasts():
  ks = np.array([1, 32, 128, 256, 1024, 2048])
  c = np.array([0, 1, 10, 2048])[:, None]
  out = metrics.pass_at_k(2048, c, ks[None, :])
  assert out.shape == (4, 6)
  assert np.all(np.diff(out, axis=1) >= 0)  # pass@k grows with k
  assert np.all(np.diff(out, axis=0) >= 0)  # and with the number of successes


def test_pass_at_k_is_unbiased():
  n, p = 24, 0.07
  c = np.arange(n + 1)
  pmf = stats.binom.pmf(c, n, p)
  for k in (1, 2, 5, 24):
    np.testing.assert_allclose(np.sum(pmf * metrics.pass_at_k(n, c, k)), 1 - (1 - p) ** k,
                               rtol=1e-12)


@pytest.mark.parametrize("n,c,k,field", [(10, 11, 1, "c"), (10, -1, 1, "c"), (10, 2, 0, "k"),
                                         (10, 2, 11, "k"), (10.5, 2, 1, "n"), (10, 2.5, 1, "c")])
def test_pass_at_k_errors(n, c, k, field):
  with pytest.raises(ValueError, match=f"^{field}"):
    metrics.pass_at_k(n, c, k)


def test_pass_at_k_from_p_is_accurate_for_tiny_p():
  p = np.array([0.0, 1e-15, 1e-9, 1e-3, 0.5, 1 - 1e-9, 1.0])
  for k in (1, 2, 128):
    got = metrics.pass_at_k_from_p(p, k)
    # Reference with Python's exact rationals on the float64 inputs.
    want = np.array([float(1 - (1 - Fraction(float(v))) ** k) for v in p])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0.0)
  assert isinstance(metrics.pass_at_k_from_p(p, 2), np.ndarray)


def test_pass_at_k_from_p_and_logp_under_jit():
  p = jnp.array([1e-6, 1e-3, 0.3, 0.999], jnp.float32)
  k = jnp.array([1, 16, 128, 1024], jnp.float32)[:, None]
  from_p = jax.jit(metrics.pass_at_k_from_p)(p, k)
  from_logp = jax.jit(metrics.pass_at_k_from_logp)(jnp.log(p), k)
  assert isinstance(from_p, jax.Array) and from_p.shape == (4, 4)
  want = np.asarray(metrics.pass_at_k_from_p(np.asarray(p, np.float64), np.asarray(k, np.float64)))
  np.testing.assert_allclose(from_p, want, rtol=1e-5)
  np.testing.assert_allclose(from_logp, want, rtol=1e-5)
  grads = jax.grad(lambda lp: jnp.sum(metrics.pass_at_k_from_logp(lp, 8.0)))(jnp.log(p))
  assert np.all(np.isfinite(grads))


def test_pass_at_k_from_logp_near_one():
  # p = 1 - 1e-12: log p ~ -1e-12; log(1-p) must still be ~ log(1e-12).
  log_p = np.log1p(-1e-12)
  np.testing.assert_allclose(1 - metrics.pass_at_k_from_logp(log_p, 1), 1e-12, rtol=1e-4)
  assert metrics.pass_at_k_from_logp(0.0, 5) == 1.0
  assert metrics.pass_at_k_from_logp(-np.inf, 5) == 0.0
