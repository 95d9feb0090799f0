"""Tests for maxrl_jax.metrics: pass@k (unbiased, bootstrap best@k, analytic) and bootstrap CIs."""

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


# --- best@k (the authors' bootstrap) ---------------------------------------------------------


def test_best_at_k_hand_values():
  # One success in 2048: best@2048 = 1 - (2047/2048)^2048 ~ 1 - 1/e, the unbiased pass@2048 is 1.
  assert metrics.best_at_k(2048, 1, 2048) == pytest.approx(1 - (2047 / 2048) ** 2048, rel=1e-13)
  assert metrics.best_at_k(2048, 1, 2048) == pytest.approx(0.63221, abs=1e-5)
  assert metrics.pass_at_k(2048, 1, 2048) == 1.0
  for n, c, k in ((4, 1, 2), (5, 2, 3), (7, 6, 7), (3, 1, 10)):
    want = float(1 - (1 - Fraction(c, n)) ** k)
    assert metrics.best_at_k(n, c, k) == pytest.approx(want, rel=1e-14)
  assert metrics.best_at_k(10, 0, 5) == 0.0 and not np.signbit(metrics.best_at_k(10, 0, 5))
  assert metrics.best_at_k(10, 10, 5) == 1.0
  np.testing.assert_allclose(metrics.best_at_k(2048, np.arange(2049), 1), np.arange(2049) / 2048,
                             rtol=1e-13, atol=0)


def _resampled_best(rewards, k, draws, rng):
  """The authors' procedure: k indices with replacement, max reward, averaged over draws."""
  out = []
  for start in range(0, draws, 1000):
    idx = rng.integers(0, len(rewards), size=(min(1000, draws - start), k))
    out.append(rewards[idx].max(axis=1))
  return np.concatenate(out)


@pytest.mark.parametrize("n,c,k", [(16, 3, 4), (64, 1, 64), (128, 5, 32), (2048, 1, 2048),
                                   (10, 9, 2)])
def test_best_at_k_matches_resampling_with_replacement(n, c, k):
  rng = np.random.default_rng(n * 1000 + c)
  rewards = np.zeros(n)
  rewards[rng.choice(n, size=c, replace=False)] = 1.0
  draws = 20_000
  best = _resampled_best(rewards, k, draws, rng)
  want = metrics.best_at_k(n, c, k)
  se = np.sqrt(want * (1 - want) / draws)
  assert abs(best.mean() - want) < 4 * se + 1e-12


def test_best_at_k_vectorised_and_below_unbiased():
  ks = np.array([1, 2, 32, 128, 256, 1024, 2048])
  c = np.arange(0, 2049, 7)[:, None]  # e.g. per-maze success counts
  best = metrics.best_at_k(2048, c, ks[None, :])
  unbiased = metrics.pass_at_k(2048, c, ks[None, :])
  assert best.shape == (c.shape[0], ks.size) and best.dtype == np.float64
  np.testing.assert_allclose(best[:, 0], unbiased[:, 0], rtol=1e-12, atol=0)  # k = 1: both c/n
  assert np.all(best <= unbiased + 1e-15)  # each factor 1 - c/n >= 1 - c/(n - j)
  assert np.all(np.diff(best, axis=1) >= 0) and np.all(np.diff(best, axis=0) >= 0)
  for i, cc in enumerate(c[:, 0]):  # agrees with the analytic pass@k of the rate c/n
    np.testing.assert_allclose(best[i], metrics.pass_at_k_from_p(cc / 2048, ks), rtol=1e-12)


def test_best_at_k_is_biased_low_in_expectation():
  n, p = 24, 0.07
  c = np.arange(n + 1)
  pmf = stats.binom.pmf(c, n, p)
  for k in (2, 8, 24):
    expected_best = np.sum(pmf * metrics.best_at_k(n, c, k))
    truth = 1 - (1 - p) ** k
    assert expected_best < truth - 1e-3  # Jensen: concave in c/n
  assert np.sum(pmf * metrics.best_at_k(n, c, 1)) == pytest.approx(p, rel=1e-12)


@pytest.mark.parametrize("n,c,k,field", [(10, 11, 1, "c"), (10, -1, 1, "c"), (10, 2, 0, "k"),
                                         (0, 0, 1, "n"), (10.5, 2, 1, "n"), (10, 2, 1.5, "k")])
def test_best_at_k_errors(n, c, k, field):
  with pytest.raises(ValueError, match=f"^{field}"):
    metrics.best_at_k(n, c, k)


# --- bootstrap confidence intervals ----------------------------------------------------------


def test_bootstrap_ci_coverage_on_bernoulli_items():
  rng = np.random.default_rng(1)
  p, m, datasets = 0.3, 256, 400
  x = (rng.random((datasets, m)) < p).astype(np.float64)
  mean, low, high = metrics.bootstrap_ci(x, num_resamples=2000, seed=3)
  assert mean.shape == low.shape == high.shape == (datasets,)
  np.testing.assert_allclose(mean, x.mean(-1))
  assert np.all(low <= mean) and np.all(mean <= high)
  coverage = np.mean((low <= p) & (p <= high))
  assert 0.91 <= coverage <= 0.985, coverage
  # Width ~ 2 * 1.96 * sd / sqrt(m).
  np.testing.assert_allclose(np.mean(high - low), 2 * 1.96 * np.sqrt(p * (1 - p) / m), rtol=0.1)


def test_bootstrap_ci_constant_input_is_degenerate():
  mean, low, high = metrics.bootstrap_ci(np.full(37, 0.5), num_resamples=500)
  assert mean == low == high == 0.5
  mean, low, high = metrics.bootstrap_ci(np.full((2, 37), 0.1), num_resamples=500)
  np.testing.assert_allclose(np.stack([low, high]), np.full((2, 2), 0.1), rtol=1e-14)
  mean, low, high = metrics.bootstrap_ci([0.25], num_resamples=50)  # one item
  assert mean == low == high == 0.25


def test_bootstrap_ci_deterministic_and_vectorised():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(3, 4, 50))
  a = metrics.bootstrap_ci(x, num_resamples=999, confidence=0.9, seed=7)
  b = metrics.bootstrap_ci(x, num_resamples=999, confidence=0.9, seed=7)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)
    assert u.shape == (3, 4)
  # Each series alone gives the same interval (the resampling depends only on m, R and seed).
  one = metrics.bootstrap_ci(x[1, 2], num_resamples=999, confidence=0.9, seed=7)
  for u, v in zip(a, one):
    np.testing.assert_allclose(u[1, 2], v, rtol=1e-12)
  other = metrics.bootstrap_ci(x, num_resamples=999, confidence=0.9, seed=8)
  assert not np.array_equal(a[1], other[1])
  # Wider at higher confidence.
  wide = metrics.bootstrap_ci(x, num_resamples=999, confidence=0.99, seed=7)
  assert np.all(wide[1] <= a[1]) and np.all(wide[2] >= a[2])


@pytest.mark.parametrize("kwargs,field", [({"num_resamples": 0}, "num_resamples"),
                                          ({"confidence": 1.0}, "confidence"),
                                          ({"confidence": 0.0}, "confidence")])
def test_bootstrap_ci_errors(kwargs, field):
  with pytest.raises(ValueError, match=f"^{field}"):
    metrics.bootstrap_ci(np.ones(5), **kwargs)
  with pytest.raises(ValueError, match="^per_item_values"):
    metrics.bootstrap_ci(np.array([1.0, np.nan]))
  with pytest.raises(ValueError, match="^per_item_values"):
    metrics.bootstrap_ci(np.zeros((3, 0)))
