"""Tests for maxrl_jax.theory: exact enumeration against the paper's group estimators, and Monte Carlo."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maxrl_jax import estimators
from maxrl_jax import theory

P_GRID = np.array([1e-9, 1e-6, 1e-3, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1 - 1e-6])
P_CLOSED = np.concatenate([[0.0], P_GRID, [1.0]])
N_GRID = [1, 2, 3, 8, 64, 4096]


def geometric_weight(p, t):
  """Reference ``w_T(p) = sum_{k=0}^{T-1} (1-p)^k`` by direct summation (no closed form)."""
  p = np.asarray(p, np.float64)
  x = 1.0 - p
  total = np.zeros_like(p)
  term = np.ones_like(p)
  for _ in range(t):
    total += term
    term = term * x
  return total


def spec_claim(method, n, p, options):
  """What the paper's group estimators says each estimator is unbiased for, as a weight on grad p."""
  if method in ("reinforce", "rloo"):
    return np.ones_like(p)
  if method == "mean_baseline":
    return np.full_like(p, (n - 1) / n)
  if method == "maxrl":
    return geometric_weight(p, n - 1)
  if method in ("maxrl_keep_cv", "maxrl_no_cv"):
    return geometric_weight(p, n)
  if method == "maxrl_truncated":
    return geometric_weight(p, options["truncation"])
  raise AssertionError(method)


def _cases(n):
  cases = [("reinforce", {}), ("mean_baseline", {}), ("rloo", {}), ("maxrl", {}),
           ("maxrl_keep_cv", {}), ("maxrl_no_cv", {})]
  for t in sorted({1, 2, max(1, n // 3), n - 1 if n > 1 else 1, n}):
    if 1 <= t <= n:
      cases += [("maxrl_truncated", {"truncation": t}),
                ("maxrl_truncated", {"truncation": t, "control_variate": False})]
  return cases


@pytest.mark.parametrize("n", N_GRID)
def test_exact_enumeration_matches_spec(n):
  for method, options in _cases(n):
    got = theory.expected_weight(method, n, P_CLOSED, **options)
    assert got.dtype == np.float64 and got.shape == P_CLOSED.shape
    np.testing.assert_allclose(got, spec_claim(method, n, P_CLOSED, options), rtol=1e-10,
                               atol=1e-12, err_msg=f"{method} {options} N={n}")


def spec_weight_formula(method, n, p, options):
  """The finite-N weight w_N(p) = 1/(p(1-p)) sum_K Bin(K) [K a(1,K)(1-p) - (N-K) a(0,K) p], via math.comb.

  The coefficients come from the float32 JAX kernel on explicit reward vectors, so this checks
  both the cancellation in theory.expected_weight and its float64 evaluation of the kernel.
  """
  out = np.zeros_like(p)
  for k in range(n + 1):
    rewards = jnp.asarray([1.0] * k + [0.0] * (n - k))
    adv = np.asarray(estimators.advantages(rewards, method, **options), np.float64)
    a1 = adv[0] / n if k > 0 else 0.0
    a0 = adv[-1] / n if k < n else 0.0
    pmf = math.comb(n, k) * p**k * (1 - p) ** (n - k)
    out += pmf * (k * a1 * (1 - p) - (n - k) * a0 * p)
  return out / (p * (1 - p))


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_expected_weight_equals_the_spec_formula(n):
  p = np.array([0.01, 0.2, 0.5, 0.8, 0.97])
  methods = _cases(n) + [("grpo", {}), ("grpo", {"std": "sample"}), ("maxrl", {"eps": 1e-6})]
  for method, options in methods:
    np.testing.assert_allclose(theory.expected_weight(method, n, p, **options),
                               spec_weight_formula(method, n, p, options), rtol=2e-6, atol=1e-9,
                               err_msg=f"{method} {options}")


@pytest.mark.parametrize("n", [1, 3, 5])
def test_bernoulli_logit_brute_force(n):
  """E[g]/grad p over all 2^N reward patterns for a Bernoulli-logit policy (score r - p)."""
  p = np.array([0.05, 0.3, 0.5, 0.9])
  patterns = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
  k = patterns.sum(-1)
  prob = p[:, None] ** k * (1 - p[:, None]) ** (n - k)  # [P, 2^N]
  for method, options in _cases(n) + [("grpo", {"std": "sample"})]:
    adv = np.asarray(estimators.advantages(jnp.asarray(patterns), method, **options), np.float64)
    g = ((adv / n)[None] * (patterns[None] - p[:, None, None])).sum(-1)  # [P, 2^N]
    weight = (prob * g).sum(-1) / (p * (1 - p))
    np.testing.assert_allclose(theory.expected_weight(method, n, p, **options), weight,
                               rtol=1e-6, atol=1e-9, err_msg=f"{method} {options}")


def test_grpo_population_limit():
  p = np.array([0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95])
  for std in ("population", "sample"):
    w = theory.expected_weight("grpo", 4096, p, std=std)
    np.testing.assert_allclose(w, theory.population_weight("grpo", p), rtol=3e-3)
  # Finite N: at most sqrt(N)/... bounded, unlike the population weight at the edges.
  w_edge = theory.expected_weight("grpo", 16, np.array([0.0, 1.0]), eps=0.0)
  np.testing.assert_allclose(w_edge, math.sqrt(15.0), rtol=1e-12)  # one success among 16


def test_maxrl_eps_is_a_small_perturbation():
  p = np.array([1e-3, 0.1, 0.5, 0.9])
  exact = theory.expected_weight("maxrl", 64, p)
  with_eps = theory.expected_weight("maxrl", 64, p, eps=1e-6)
  np.testing.assert_allclose(with_eps, exact, rtol=1e-4)
  assert np.all(with_eps < exact)


def test_truncated_weight():
  p = P_CLOSED
  for t in (1, 2, 7, 128, 4096):
    np.testing.assert_allclose(theory.truncated_weight(p, t), geometric_weight(p, t), rtol=1e-12)
  np.testing.assert_allclose(theory.truncated_weight(p[1:], math.inf), 1 / p[1:], rtol=1e-15)
  assert theory.truncated_weight(0.0, 5) == 5.0
  assert theory.truncated_weight(1.0, 5) == 1.0
  for bad in (0, -1, 2.5, None, True):
    with pytest.raises(ValueError, match="^T"):
      theory.truncated_weight(p, bad)
  with pytest.raises(ValueError, match="^p"):
    theory.truncated_weight(1.5, 3)


def test_population_weights():
  p = np.array([1e-3, 0.25, 0.5, 0.999])
  np.testing.assert_array_equal(theory.population_weight("rl", p), 1.0)
  np.testing.assert_allclose(theory.population_weight("grpo", p), 1 / np.sqrt(p * (1 - p)))
  np.testing.assert_allclose(theory.population_weight("ml", p), 1 / p)
  np.testing.assert_allclose(theory.population_weight("maxrl", p, 4), geometric_weight(p, 4))
  np.testing.assert_allclose(theory.population_weight("maxrl", p, math.inf), 1 / p)
  np.testing.assert_allclose(theory.population_weight("maxrl", p, 1), 1.0, rtol=1e-15)  # T = 1: RL
  # GRPO's weight falls then rises again as p -> 1.
  w = theory.population_weight("grpo", np.array([0.1, 0.5, 0.9]))
  assert w[1] < w[0] and w[1] < w[2]
  with pytest.raises(ValueError, match="^name"):
    theory.population_weight("ppo", p)
  with pytest.raises(ValueError, match="^T"):
    theory.population_weight("maxrl", p)
  with pytest.raises(ValueError, match="^T"):
    theory.population_weight("rl", p, 3)


def test_truncated_objective():
  p = np.array([0.0, 1e-6, 1e-3, 0.1, 0.5, 0.9, 1.0])
  np.testing.assert_allclose(theory.truncated_objective(p, 1), p - 1, atol=1e-15)
  direct = -sum((1 - p) ** k / k for k in range(1, 6))
  np.testing.assert_allclose(theory.truncated_objective(p, 5), direct, rtol=1e-14)
  with np.errstate(divide="ignore"):
    np.testing.assert_array_equal(theory.truncated_objective(p, math.inf), np.log(p))
  # Large T converges to log p (the series stops early once the tail is negligible).
  q = p[2:-1]
  np.testing.assert_allclose(theory.truncated_objective(q, 10**9), np.log(q), rtol=1e-13)
  # d J^(T) / dp = w_T(p).
  h = 1e-6
  for t in (1, 3, 100):
    deriv = (theory.truncated_objective(q + h, t) - theory.truncated_objective(q - h, t)) / (2 * h)
    np.testing.assert_allclose(deriv, theory.truncated_weight(q, t), rtol=1e-6)
  # At p = 0 the series is minus the harmonic number.
  np.testing.assert_allclose(theory.truncated_objective(0.0, 10), -sum(1 / k for k in range(1, 11)))


def test_expected_weight_errors():
  with pytest.raises(ValueError, match="^method"):
    theory.expected_weight("ppo", 4, 0.5)
  with pytest.raises(ValueError, match="^n"):
    theory.expected_weight("maxrl", 0, 0.5)
  with pytest.raises(ValueError, match="^truncation"):
    theory.expected_weight("maxrl_truncated", 4, 0.5, truncation=5)
  with pytest.raises(ValueError, match="^p"):
    theory.expected_weight("maxrl", 4, [0.5, -0.1])


def test_expected_weight_is_vectorised_over_p():
  p = np.linspace(0.0, 1.0, 12).reshape(3, 4)
  w = theory.expected_weight("maxrl", 8, p)
  assert w.shape == (3, 4)
  np.testing.assert_allclose(w.ravel(), theory.expected_weight("maxrl", 8, p.ravel()))


# --- Monte Carlo: a 10-class softmax policy ---------------------------------------------------

NUM_CLASSES = 10
MC_GROUPS = 40_000
MC_N = 8
MC_CASES = [
    ("reinforce", {}), ("mean_baseline", {}), ("rloo", {}), ("grpo", {}),
    ("grpo", {"std": "sample"}), ("maxrl", {}), ("maxrl_keep_cv", {}), ("maxrl_no_cv", {}),
    ("maxrl_truncated", {"truncation": 3}), ("maxrl_maclaurin", {"truncation": 3}),
    ("pkpo", {"k": 3}), ("pkpo", {"k": 3, "variant": "subset"}),
]


def _sampled_gradients(method, options, seed):
  """Per-group estimators g (their mean = -grad of the surrogate loss) for a softmax policy.

  Labels are drawn on the host with NumPy (fixed seed: the test is deterministic); the
  advantages, the gradient of the surrogate loss and the per-group estimators run under jit.
  """
  logits = jnp.linspace(-1.0, 1.0, NUM_CLASSES).at[0].set(0.3)  # p = pi(y* = 0) ~ 0.10
  pi = np.asarray(jax.nn.softmax(logits), np.float64)
  z = np.random.default_rng(seed).choice(NUM_CLASSES, size=(MC_GROUPS, MC_N), p=pi / pi.sum())

  def loss(theta, z, adv):
    logp = jax.nn.log_softmax(theta)[z]  # [G, N]
    return estimators.surrogate_loss_from_logprobs(logp, adv)

  @jax.jit
  def run(theta, z):
    adv = estimators.advantages((z == 0).astype(jnp.float32), method, **options)
    mean_grad = -jax.grad(loss)(theta, z, adv)
    # Per-group g = (1/N) sum_i A_i (e_{z_i} - pi), to get standard errors.
    probs = jax.nn.softmax(theta)
    per_group = jnp.einsum("gn,gnc->gc", adv, jax.nn.one_hot(z, NUM_CLASSES) - probs) / MC_N
    return mean_grad, per_group

  mean_grad, per_group = run(logits, jnp.asarray(z, jnp.int32))
  grad_p = pi[0] * (np.eye(NUM_CLASSES)[0] - pi)  # d pi_0 / d theta
  return np.asarray(mean_grad, np.float64), np.asarray(per_group, np.float64), pi[0], grad_p


@pytest.mark.parametrize("case", range(len(MC_CASES)))
def test_monte_carlo_softmax_policy(case):
  method, options = MC_CASES[case]
  mean_grad, per_group, p, grad_p = _sampled_gradients(method, options, seed=case)
  # Same quantity through jax.grad of the float32 surrogate loss (float32 scatter-adds).
  np.testing.assert_allclose(mean_grad, per_group.mean(0), rtol=5e-3, atol=1e-6)
  se = per_group.std(0, ddof=1) / math.sqrt(MC_GROUPS)
  want = theory.expected_weight(method, MC_N, p, **options) * grad_p
  z = np.abs(per_group.mean(0) - want) / se
  assert np.all(z < 5.0), (method, options, z)
  if method == "maxrl":
    # The test has the power to tell w_{N-1} (true) from w_N (the eq. 10 estimator's weight).
    wrong = theory.expected_weight("maxrl_keep_cv", MC_N, p) * grad_p
    assert np.max(np.abs(per_group.mean(0) - wrong) / se) > 5.0


# --- New estimators: exact expectations -------------------------------------------------------

def _pkpo_authors_weight(p, k, n):
  """E[g]/grad p of the authors' PKPO: (1-p)^(k-1) + (k-1) p (1-p)^(k-2)/(N-1)."""
  second = np.ones_like(p) if k == 2 else (1 - p) ** max(k - 2, 0)
  return (1 - p) ** (k - 1) + (k - 1) * p * second / (n - 1)


@pytest.mark.parametrize("n", N_GRID)
def test_pkpo_is_unbiased_for_grad_pass_at_k(n):
  for k in sorted({1, min(2, n), max(1, n // 3), min(16, n), n}):
    want = k * (1 - P_CLOSED) ** (k - 1)  # d pass@k / dp
    for variant in ("loo", "subset"):
      got = theory.expected_weight("pkpo", n, P_CLOSED, k=k, variant=variant)
      np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * k,
                                 err_msg=f"pkpo {variant} k={k} N={n}")
    np.testing.assert_allclose(theory.population_weight("pkpo", P_CLOSED, k=k), want, rtol=1e-14)
    if n > 1:  # the authors' re-centred variant: (1/k) grad pass@k plus a vanishing bias
      got = theory.expected_weight("pkpo", n, P_CLOSED, k=k, variant="authors")
      np.testing.assert_allclose(got, _pkpo_authors_weight(P_CLOSED, k, n), rtol=1e-10,
                                 atol=1e-12, err_msg=f"pkpo authors k={k} N={n}")
      if k >= 2:
        assert np.max(np.abs(got - want / k)) > 1e-3 / n  # biased


@pytest.mark.parametrize("n", N_GRID)
def test_maclaurin_is_unbiased_for_grad_j_t(n):
  for t in sorted({1, min(2, n), max(1, n // 3), n}):
    got = theory.expected_weight("maxrl_maclaurin", n, P_CLOSED, truncation=t)
    np.testing.assert_allclose(got, geometric_weight(P_CLOSED, t), rtol=1e-10, atol=1e-12,
                               err_msg=f"maclaurin T={t} N={n}")


@pytest.mark.parametrize("n", [1, 3, 5])
def test_new_methods_bernoulli_logit_brute_force(n):
  """E[g]/grad p and E[g^2] over all 2^N reward patterns, against theory (score r - p)."""
  p = np.array([0.05, 0.3, 0.5, 0.9])
  patterns = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
  k = patterns.sum(-1)
  prob = p[:, None] ** k * (1 - p[:, None]) ** (n - k)  # [P, 2^N]
  cases = [("maxrl_maclaurin", {"truncation": t}) for t in range(1, n + 1)]
  cases += [("pkpo", {"k": t, "variant": v}) for t in range(1, n + 1)
            for v in ("loo", "subset", "authors")]
  cases += [("dsgrpo", {}), ("dsgrpo", {"std": "sample", "correct_coef": 0.3})]
  cases += _cases(n) + [("grpo", {})]
  for method, options in cases:
    g = []
    for pi in p:
      if method in estimators.LOGPROB_METHODS:  # two-outcome policy: log pi = log p, log(1-p)
        logp = jnp.asarray(np.where(patterns > 0, np.log(pi), np.log1p(-pi)))
        adv = estimators.advantages(jnp.asarray(patterns), method, logprobs=logp, **options)
      else:
        adv = estimators.advantages(jnp.asarray(patterns), method, **options)
      adv = np.asarray(adv, np.float64)
      g.append(((adv / n) * (patterns - pi)).sum(-1))  # [2^N]
    g = np.stack(g)
    mean, second = theory.gradient_moments(method, n, p, **options)
    np.testing.assert_allclose(mean, (prob * g).sum(-1), rtol=1e-5, atol=1e-8,
                               err_msg=f"{method} {options}")
    np.testing.assert_allclose(second, (prob * g * g).sum(-1), rtol=1e-5, atol=1e-8,
                               err_msg=f"{method} {options}")
    np.testing.assert_allclose(theory.expected_weight(method, n, p, **options),
                               (prob * g).sum(-1) / (p * (1 - p)), rtol=1e-5, atol=1e-8,
                               err_msg=f"{method} {options}")


def test_gradient_moments_float64_kernel_matches_exact_sums():
  """Second moment to 1e-10 against an independent float64 sum with math.comb (no JAX)."""
  for n, method, options in [(6, "maxrl_maclaurin", {"truncation": 4}),
                             (6, "maxrl_truncated", {"truncation": 4}),
                             (7, "pkpo", {"k": 3}), (5, "rloo", {})]:
    tab = estimators.coefficient_table(method, n, **options)
    for pi in (0.02, 0.4, 0.95):
      terms = [math.comb(n, k) * pi**k * (1 - pi) ** (n - k)
               * ((k * tab[k, 1] * (1 - pi) - (n - k) * tab[k, 0] * pi) / n) ** m
               for k in range(n + 1) for m in (1, 2)]
      mean, second = sum(terms[0::2]), sum(terms[1::2])
      got_mean, got_second = theory.gradient_moments(method, n, pi, **options)
      np.testing.assert_allclose([got_mean, got_second], [mean, second], rtol=1e-10)
      np.testing.assert_allclose(theory.gradient_variance(method, n, pi, **options),
                                 second - mean**2, rtol=1e-9)


def test_maclaurin_variance_against_truncated():
  """Same mean (w_T), different variance. For the Bernoulli-logit policy (exact second moments):
  maxrl_maclaurin has a much SMALLER variance than maxrl_truncated on hard prompts (small p) and
  on easy ones (p near 1), and a LARGER one in between (roughly 0.1 <= p <= 0.5 for N >= 16).
  Caveat: in this one-parameter model every failure has the same score -p, so an estimator that
  leans on failures (maclaurin puts -(T-1) on each at K = 0) pays no noise for it; with many
  distinct failure outcomes its failure terms carry their own variance."""
  p = np.array([1e-3, 0.01, 0.2, 0.3, 0.5, 0.9, 0.99])
  for n, t in [(16, 16), (128, 16), (128, 128)]:
    mac = theory.gradient_variance("maxrl_maclaurin", n, p, truncation=t)
    trunc = theory.gradient_variance("maxrl_truncated", n, p, truncation=t)
    np.testing.assert_allclose(theory.gradient_moments("maxrl_maclaurin", n, p, truncation=t)[0],
                               theory.gradient_moments("maxrl_truncated", n, p, truncation=t)[0],
                               rtol=1e-9)
    ratio = mac / trunc
    assert np.all(ratio[[0, 5, 6]] < 0.05), (n, t, ratio)  # p = 1e-3, 0.9, 0.99: smaller
    assert np.all(ratio[[2, 3]] > 1.5), (n, t, ratio)  # p = 0.2, 0.3: larger
  # Numbers quoted in the docs (N = 16, T = 16): p = 0.01 -> ratio ~1e-3, p = 0.3 -> ~9.8.
  r = (theory.gradient_variance("maxrl_maclaurin", 16, [0.01, 0.3], truncation=16)
       / theory.gradient_variance("maxrl_truncated", 16, [0.01, 0.3], truncation=16))
  assert r[0] < 2e-3 and 9.0 < r[1] < 10.5


def test_dsgrpo_weight():
  p = np.array([1e-3, 0.1, 0.5, 0.9])
  for n in (1, 4, 16):
    got = theory.expected_weight("dsgrpo", n, p, correct_coef=0.1, incorrect_coef=0.02)
    want = (theory.expected_weight("grpo", n, p) - 0.1 * np.log(p) - 0.02 * np.log1p(-p))
    np.testing.assert_allclose(got, want, rtol=1e-12)
  w = theory.expected_weight("dsgrpo", 16, np.array([0.0, 1.0]))
  assert np.all(np.isinf(w)) and np.all(w > 0)
  np.testing.assert_allclose(theory.expected_weight("dsgrpo", 16, p, correct_coef=0.0,
                                                    incorrect_coef=0.0),
                             theory.expected_weight("grpo", 16, p), rtol=1e-14)
  np.testing.assert_allclose(theory.population_weight("dsgrpo", p),
                             1 / np.sqrt(p * (1 - p)) - 0.05 * np.log(p) - 0.05 * np.log1p(-p))
  with pytest.raises(ValueError, match="^p"):
    theory.gradient_moments("dsgrpo", 4, [0.0, 0.5])
  with pytest.raises(ValueError, match="^k"):
    theory.population_weight("pkpo", p)
  with pytest.raises(ValueError, match="^k"):
    theory.population_weight("rl", p, k=2)


def test_binomial_pmf_without_scipy():
  for n in (0, 1, 7, 60):
    k = np.arange(n + 1)
    for pi in (0.0, 0.3, 1.0):
      want = [math.comb(n, j) * pi**j * (1 - pi) ** (n - j) for j in k]
      np.testing.assert_allclose(theory.binomial_pmf(k, n, pi), want, rtol=1e-12, atol=1e-300)
  import sys  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  code = ("import sys; import maxrl_jax.theory, maxrl_jax.estimators; "
          "bad = [m for m in sys.modules if m.split('.')[0] in ('scipy', 'flax', 'optax')]; "
          "print(bad); assert not bad")
  subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                 env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
