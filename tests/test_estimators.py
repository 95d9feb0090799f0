"""Tests for maxrl_jax.estimators: hand-computed values, closed forms, edge cases, properties."""

import functools
import itertools
import math

import chex
import hypothesis
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maxrl_jax import estimators

METHOD_CASES = [
    ("reinforce", {}),
    ("mean_baseline", {}),
    ("rloo", {}),
    ("grpo", {}),
    ("grpo", {"std": "sample"}),
    ("grpo", {"std": "sample", "eps": 0.0}),
    ("maxrl", {}),
    ("maxrl", {"eps": 1e-6}),
    ("maxrl_keep_cv", {}),
    ("maxrl_no_cv", {}),
    ("maxrl_truncated", {"truncation": 1}),
    ("maxrl_truncated", {"truncation": 2, "control_variate": False}),
    ("maxrl_maclaurin", {"truncation": 1}),
    ("maxrl_maclaurin", {"truncation": 3}),
    ("pkpo", {"k": 1}),
    ("pkpo", {"k": 2}),
    ("pkpo", {"k": 3, "variant": "subset"}),
    ("pkpo", {"k": 2, "variant": "authors"}),
    ("dsgrpo", {}),
    ("dsgrpo", {"std": "sample", "correct_coef": 0.1, "incorrect_coef": 0.0}),
]

# dsgrpo's test log-probabilities: a fixed function of the reward (log pi = -0.5 for a success,
# -2 for a failure), so that coefficient tables (which take one value per reward) match.
LOGP_FAIL, LOGP_SUCCESS = -2.0, -0.5


def _logprobs(rewards):
  r = jnp.asarray(rewards).astype(jnp.float32)
  return LOGP_FAIL + (LOGP_SUCCESS - LOGP_FAIL) * r


def call_advantages(rewards, method, **options):
  """estimators.advantages, with the test log-probabilities for the methods that need them."""
  if method in estimators.LOGPROB_METHODS:
    return estimators.advantages(rewards, method, logprobs=_logprobs(rewards), **options)
  return estimators.advantages(rewards, method, **options)


def table(method, n, **options):
  if method in estimators.LOGPROB_METHODS:
    return estimators.coefficient_table(method, n, logprobs=[LOGP_FAIL, LOGP_SUCCESS], **options)
  return estimators.coefficient_table(method, n, **options)

S = math.sqrt(3.0) / 2.0  # 0.5 / sample std of [1, 0, 0, 1] = 0.5 / sqrt(1/3)
G = 0.5 / (0.5 + 1e-6)  # 0.5 / (population std + eps) of [1, 0, 0, 1]

# (method, options, rewards, expected A) -- every value computed by hand from the paper's group estimators.
HAND = [
    # N = 4, K = 2.
    ("reinforce", {}, [1, 0, 0, 1], [1, 0, 0, 1]),
    ("mean_baseline", {}, [1, 0, 0, 1], [0.5, -0.5, -0.5, 0.5]),
    ("rloo", {}, [1, 0, 0, 1], [2 / 3, -2 / 3, -2 / 3, 2 / 3]),
    ("grpo", {"eps": 0.0}, [1, 0, 0, 1], [1, -1, -1, 1]),
    ("grpo", {}, [1, 0, 0, 1], [G, -G, -G, G]),
    ("grpo", {"std": "sample", "eps": 0.0}, [1, 0, 0, 1], [S, -S, -S, S]),
    ("maxrl", {}, [1, 0, 0, 1], [1, -1, -1, 1]),
    ("maxrl", {"eps": 1e-6}, [1, 0, 0, 1], [G, -G, -G, G]),  # (r - m)/(m + eps), m = 0.5
    ("maxrl_keep_cv", {}, [1, 0, 0, 1], [1, -1, -1, 1]),
    ("maxrl_no_cv", {}, [1, 0, 0, 1], [2, 0, 0, 2]),
    # q = C(2,2)/C(4,2) = 1/6: A_success = 4 * (5/6) / 2 = 5/3.
    ("maxrl_truncated", {"truncation": 2}, [1, 0, 0, 1], [2 / 3, -1, -1, 2 / 3]),
    ("maxrl_truncated", {"truncation": 2, "control_variate": False}, [1, 0, 0, 1],
     [5 / 3, 0, 0, 5 / 3]),
    ("maxrl_truncated", {"truncation": 1}, [1, 0, 0, 1], [0, -1, -1, 0]),
    ("maxrl_truncated", {"truncation": 4}, [1, 0, 0, 1], [1, -1, -1, 1]),
    ("maxrl_truncated", {"truncation": 3}, [1, 0, 0, 1], [1, -1, -1, 1]),  # q = 0 for K > N - T
    # N = 3, K = 1.
    ("rloo", {}, [1, 0, 0], [1, -0.5, -0.5]),
    ("mean_baseline", {}, [0, 1, 0], [-1 / 3, 2 / 3, -1 / 3]),
    ("grpo", {"eps": 0.0}, [0, 1, 0], [-1 / math.sqrt(2), math.sqrt(2), -1 / math.sqrt(2)]),
    ("maxrl", {}, [0, 0, 1], [-1, -1, 2]),
    ("maxrl_no_cv", {}, [0, 0, 1], [0, 0, 3]),
    # q = C(2,2)/C(3,2) = 1/3: A_success = 3 * (2/3) / 1 = 2.
    ("maxrl_truncated", {"truncation": 2}, [1, 0, 0], [1, -1, -1]),
    # K = 0 and K = N.
    ("reinforce", {}, [0, 0, 0], [0, 0, 0]),
    ("reinforce", {}, [1, 1, 1], [1, 1, 1]),
    ("mean_baseline", {}, [1, 1, 1], [0, 0, 0]),
    ("rloo", {}, [0, 0, 0], [0, 0, 0]),
    ("rloo", {}, [1, 1, 1], [0, 0, 0]),
    ("grpo", {}, [0, 0, 0], [0, 0, 0]),
    ("grpo", {"eps": 0.0}, [1, 1, 1], [0, 0, 0]),
    ("grpo", {"std": "sample", "eps": 0.0}, [0, 0, 0], [0, 0, 0]),
    ("maxrl", {}, [0, 0, 0], [0, 0, 0]),
    ("maxrl", {"eps": 0.0}, [0, 0, 0], [0, 0, 0]),
    ("maxrl", {}, [1, 1, 1], [0, 0, 0]),
    ("maxrl_keep_cv", {}, [0, 0, 0], [-1, -1, -1]),
    ("maxrl_keep_cv", {}, [1, 1, 1], [0, 0, 0]),
    ("maxrl_no_cv", {}, [0, 0, 0], [0, 0, 0]),
    ("maxrl_no_cv", {}, [1, 1, 1], [1, 1, 1]),
    ("maxrl_truncated", {"truncation": 2}, [0, 0, 0], [-1, -1, -1]),
    ("maxrl_truncated", {"truncation": 2, "control_variate": False}, [0, 0, 0], [0, 0, 0]),
    ("maxrl_truncated", {"truncation": 2}, [1, 1, 1], [0, 0, 0]),
    # N = 1.
    ("reinforce", {}, [1], [1]),
    ("mean_baseline", {}, [1], [0]),
    ("rloo", {}, [1], [1]),
    ("rloo", {}, [0], [0]),
    ("grpo", {"std": "sample"}, [1], [0]),
    ("grpo", {"std": "sample", "eps": 0.0}, [0], [0]),
    ("grpo", {}, [1], [0]),
    ("maxrl", {}, [1], [0]),
    ("maxrl_keep_cv", {}, [0], [-1]),
    ("maxrl_keep_cv", {}, [1], [0]),
    ("maxrl_no_cv", {}, [1], [1]),
    ("maxrl_truncated", {"truncation": 1}, [0], [-1]),
    ("maxrl_truncated", {"truncation": 1, "control_variate": False}, [1], [1]),
    # maxrl_maclaurin: A = 1 for a success, -sum_{j=2}^T C(F-1, j-1)/C(N-1, j-1) for a failure.
    ("maxrl_maclaurin", {"truncation": 2}, [1, 0, 0, 1], [1, -1 / 3, -1 / 3, 1]),  # F = 2
    ("maxrl_maclaurin", {"truncation": 4}, [1, 0, 0, 0], [1, -1, -1, -1]),  # -(2/3 + 1/3 + 0)
    ("maxrl_maclaurin", {"truncation": 3}, [0, 1, 0, 0], [-1, 1, -1, -1]),  # -(2/3 + 1/3)
    ("maxrl_maclaurin", {"truncation": 1}, [1, 0, 0, 1], [1, 0, 0, 1]),  # REINFORCE
    ("maxrl_maclaurin", {"truncation": 3}, [0, 0, 0], [-2, -2, -2]),  # K = 0: -(T - 1)
    ("maxrl_maclaurin", {"truncation": 3}, [1, 1, 1], [1, 1, 1]),
    ("maxrl_maclaurin", {"truncation": 1}, [0], [0]),
    # pkpo, N = 4, K = 2, k = 2: c_2(2) = C(2, 1)/C(3, 1) = 2/3.
    ("pkpo", {"k": 2}, [1, 0, 0, 1], [4 / 3, 0, 0, 4 / 3]),  # k c
    ("pkpo", {"k": 2, "variant": "subset"}, [1, 0, 0, 1], [2, 4 / 3, 4 / 3, 2]),  # k rho(3,2,1)
    ("pkpo", {"k": 2, "variant": "authors"}, [1, 0, 0, 1], [4 / 9, -4 / 9, -4 / 9, 4 / 9]),
    ("pkpo", {"k": 3}, [1, 0, 0, 0], [3, 0, 0, 0]),  # c_3(1) = 1: the lone success
    ("pkpo", {"k": 3, "variant": "subset"}, [1, 0, 0, 0], [3, 2, 2, 2]),  # 3 (1 - C(2,2)/C(3,2))
    ("pkpo", {"k": 3, "variant": "authors"}, [1, 0, 0, 0], [1, -1 / 3, -1 / 3, -1 / 3]),
    ("pkpo", {"k": 1}, [1, 0, 0, 1], [1, 0, 0, 1]),
    ("pkpo", {"k": 2}, [0, 0, 0], [0, 0, 0]),
    ("pkpo", {"k": 2, "variant": "subset"}, [0, 0, 0], [0, 0, 0]),
    ("pkpo", {"k": 2, "variant": "authors"}, [0, 0, 0], [0, 0, 0]),
    ("pkpo", {"k": 2}, [1, 1, 1], [0, 0, 0]),  # no failure among the others
    ("pkpo", {"k": 2, "variant": "subset"}, [1, 1, 1], [2, 2, 2]),
    ("pkpo", {"k": 1}, [1], [1]),
    ("pkpo", {"k": 1, "variant": "authors"}, [1], [1]),
]

G4 = 0.5 / (0.5 + 1e-6)  # grpo, population std, eps 1e-6, of [1, 0, 0, 1]

# dsgrpo with explicit log-probabilities: grpo - 0.05 log pi (success) + 0.05 log pi (failure).
DS_HAND = [
    ({}, [1, 0, 0, 1], [-1, -2, -3, -4], [G4 + 0.05, -G4 - 0.1, -G4 - 0.15, G4 + 0.2]),
    ({"correct_coef": 0.5, "incorrect_coef": 0.0}, [1, 0, 0, 1], [-1, -2, -3, -4],
     [G4 + 0.5, -G4, -G4, G4 + 2.0]),
    ({}, [0, 0, 0], [-1, -2, -4], [-0.05, -0.1, -0.2]),  # K = 0: grpo's 0 plus the smoothing
    ({}, [1, 1], [-1, -3], [0.05, 0.15]),
    ({"eps": 0.0, "std": "sample"}, [1, 0, 0, 1], [0, 0, 0, 0], [S, -S, -S, S]),
]


@pytest.mark.parametrize("method,options,rewards,expected", HAND)
def test_hand_computed(method, options, rewards, expected):
  out = estimators.advantages(jnp.asarray(rewards, jnp.float32), method, **options)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("options,rewards,logprobs,expected", DS_HAND)
def test_dsgrpo_hand_computed(options, rewards, logprobs, expected):
  out = estimators.advantages(jnp.asarray(rewards, jnp.float32), "dsgrpo",
                              logprobs=jnp.asarray(logprobs, jnp.float32), **options)
  np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-6, atol=1e-6)


def test_every_method_has_hand_values():
  assert {case[0] for case in HAND} | {"dsgrpo"} == set(estimators.METHODS)
  assert {case[0] for case in METHOD_CASES} == set(estimators.METHODS)


def test_batched_rows_match_single_rows():
  rewards = jnp.array([[[1, 0, 0, 1], [0, 0, 0, 0]], [[1, 1, 1, 1], [0, 1, 0, 0]]], jnp.float32)
  for method, options in METHOD_CASES:
    batched = call_advantages(rewards, method, **options)
    chex.assert_shape(batched, rewards.shape)
    for idx in np.ndindex(*rewards.shape[:-1]):
      single = call_advantages(rewards[idx], method, **options)
      np.testing.assert_allclose(batched[idx], single, rtol=1e-6, atol=1e-7)


def _subset_average(rewards, t, control_variate):
  """Brute-force average of the T-rollout grad J^(T) estimator over all size-T subsets."""
  n = len(rewards)
  a = np.zeros(n)
  subsets = list(itertools.combinations(range(n), t))
  for subset in subsets:
    k_s = sum(rewards[i] for i in subset)
    for i in subset:
      a[i] += (rewards[i] / k_s if k_s else 0.0) - (1.0 / t if control_variate else 0.0)
  return n * a / len(subsets)


@pytest.mark.parametrize("n", [1, 3, 6])
@pytest.mark.parametrize("control_variate", [True, False])
def test_truncated_is_the_subset_average(n, control_variate):
  patterns = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
  for t in range(1, n + 1):
    got = estimators.advantages(jnp.asarray(patterns), "maxrl_truncated", truncation=t,
                                control_variate=control_variate)
    want = np.stack([_subset_average(r, t, control_variate) for r in patterns])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


def test_truncated_endpoints_coincide_with_maxrl_variants():
  rewards = jnp.asarray(np.random.default_rng(0).random((64, 16)) < 0.2, jnp.float32)
  rewards = rewards.at[0].set(0.0).at[1].set(1.0)
  np.testing.assert_allclose(estimators.advantages(rewards, "maxrl_truncated", truncation=16),
                             estimators.advantages(rewards, "maxrl_keep_cv"), atol=1e-6)
  np.testing.assert_allclose(
      estimators.advantages(rewards, "maxrl_truncated", truncation=16, control_variate=False),
      estimators.advantages(rewards, "maxrl_no_cv"), atol=1e-6)
  np.testing.assert_allclose(
      estimators.advantages(rewards, "maxrl_truncated", truncation=1, control_variate=False),
      estimators.advantages(rewards, "reinforce"), atol=1e-6)


@pytest.mark.parametrize("t", [1, 64, 4095, 4096])
def test_truncated_float32_matches_float64_at_n4096(t):
  n = 4096
  table = estimators.coefficient_table("maxrl_truncated", n, truncation=t)
  edges = [0, 1, 2, 3, n - t - 1, n - t, n - t + 1, n - 2, n - 1, n]
  k = np.unique(np.clip(np.concatenate([edges, np.geomspace(1, n, 24).astype(int)]), 0, n))
  # One row per K: the first K rollouts succeed.
  rewards = (np.arange(n)[None, :] < k[:, None]).astype(np.float32)
  got = np.asarray(estimators.advantages(rewards, "maxrl_truncated", truncation=t))
  want = np.where(rewards > 0, table[k, 1][:, None], table[k, 0][:, None])
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("method,options", METHOD_CASES)
def test_coefficient_table_is_the_same_kernel(method, options):
  n = 5
  table_ = table(method, n, **options)
  assert table_.shape == (n + 1, 2) and table_.dtype == np.float64
  for k in range(n + 1):
    rewards = jnp.asarray([1.0] * k + [0.0] * (n - k))
    out = np.asarray(call_advantages(rewards, method, **options))
    if k > 0:
      np.testing.assert_allclose(out[0], table_[k, 1], rtol=1e-6, atol=1e-6)
    if k < n:
      np.testing.assert_allclose(out[-1], table_[k, 0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.int32, jnp.bool_])
@pytest.mark.parametrize("method,options", METHOD_CASES)
def test_dtypes_are_computed_in_float32(method, options, dtype):
  rewards = jnp.array([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]]).astype(dtype)
  out = call_advantages(rewards, method, **options)
  assert out.dtype == jnp.float32
  want = call_advantages(rewards.astype(jnp.float32), method, **options)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(want))


@pytest.mark.parametrize(
    "call,field",
    [
        (lambda r: estimators.advantages(r, "ppo"), "method"),
        (lambda r: estimators.advantages(r, "maxrl", std="sample"), "std"),
        (lambda r: estimators.advantages(r, "reinforce", eps=1e-6), "eps"),
        (lambda r: estimators.advantages(r, "grpo", std="unbiased"), "std"),
        (lambda r: estimators.advantages(r, "grpo", eps=-1.0), "eps"),
        (lambda r: estimators.advantages(r, "grpo", eps=None), "eps"),
        (lambda r: estimators.advantages(r, "maxrl", eps="small"), "eps"),
        (lambda r: estimators.advantages(r, "maxrl_truncated"), "truncation"),
        (lambda r: estimators.advantages(r, "maxrl_truncated", truncation=0), "truncation"),
        (lambda r: estimators.advantages(r, "maxrl_truncated", truncation=5), "truncation"),
        (lambda r: estimators.advantages(r, "maxrl_truncated", truncation=2.0), "truncation"),
        (lambda r: estimators.advantages(r, "maxrl_truncated", truncation=2, control_variate=1),
         "control_variate"),
        (lambda r: estimators.advantages(r[0, 0], "maxrl"), "rewards"),
        (lambda r: estimators.advantages(r[:, :0], "maxrl"), "rewards"),
        (lambda r: estimators.coefficient_table("maxrl", 0), "n"),
    ],
)
def test_errors_name_the_culprit(call, field):
  rewards = jnp.zeros((2, 4))
  with pytest.raises(ValueError, match=f"^{field}"):
    call(rewards)


@pytest.mark.parametrize("method,options", METHOD_CASES)
def test_jit_vmap_and_grad(method, options):
  rewards = jnp.asarray(np.random.default_rng(1).random((3, 5, 8)) < 0.3, jnp.float32)
  eager = call_advantages(rewards, method, **options)
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def jitted(r):
    return call_advantages(r, method, **options)

  np.testing.assert_allclose(jitted(rewards), eager, rtol=1e-6, atol=1e-6)
  flipped = call_advantages(1.0 - rewards, method, **options)
  np.testing.assert_allclose(jitted(1.0 - rewards), flipped, rtol=1e-6, atol=1e-6)  # no retrace
  mapped = jax.vmap(lambda r: call_advantages(r, method, **options))(rewards)
  np.testing.assert_allclose(mapped, eager, rtol=1e-6, atol=1e-6)
  # Gradients w.r.t. the rewards exist and are finite, even at K = 0, K = N.
  edge = rewards.at[0, 0].set(0.0).at[0, 1].set(1.0)
  grads = jax.grad(lambda r: jnp.sum(call_advantages(r, method, **options) ** 2))(edge)
  assert np.all(np.isfinite(grads))


def test_surrogate_loss_value_and_gradient():
  rng = np.random.default_rng(2)
  batch, n, length = 3, 4, 5
  token_logprobs = jnp.asarray(-rng.random((batch, n, length)), jnp.float32)
  mask = jnp.asarray(rng.random((batch, n, length)) < 0.7, jnp.float32)
  rewards = jnp.asarray(rng.random((batch, n)) < 0.5, jnp.float32)
  adv = estimators.advantages(rewards, "maxrl")
  loss = estimators.surrogate_loss(token_logprobs, mask, adv)
  want = -np.mean(np.asarray(adv) * np.sum(np.asarray(token_logprobs * mask), axis=-1))
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  grad_logp, grad_adv = jax.grad(estimators.surrogate_loss, argnums=(0, 2))(
      token_logprobs, mask, adv)
  want_grad = -np.asarray(adv)[..., None] * np.asarray(mask) / (batch * n)
  np.testing.assert_allclose(grad_logp, want_grad, rtol=1e-6)
  np.testing.assert_array_equal(grad_adv, 0.0)  # advantages are under stop_gradient
  flat = estimators.surrogate_loss_from_logprobs(jnp.sum(token_logprobs * mask, -1), adv)
  np.testing.assert_allclose(flat, loss, rtol=1e-6)


def test_surrogate_loss_bfloat16_and_shape_errors():
  logp = -jnp.ones((2, 4, 3), jnp.bfloat16)
  mask = jnp.ones((2, 4, 3), jnp.bfloat16)
  loss = estimators.surrogate_loss(logp, mask, jnp.ones((2, 4), jnp.bfloat16))
  assert loss.dtype == jnp.float32 and float(loss) == 3.0
  with pytest.raises(AssertionError):
    estimators.surrogate_loss(logp, mask, jnp.ones((2, 3)))
  with pytest.raises(AssertionError):
    estimators.surrogate_loss_from_logprobs(jnp.ones((2, 4)), jnp.ones((2, 5)))


# --- Property tests ----------------------------------------------------------------------------

_reward_arrays = hnp.arrays(
    dtype=np.float32,
    # A few fixed shapes (N = 1..6, batched or not) keep the number of XLA compilations small.
    shape=st.sampled_from([(1,), (2,), (5,), (3, 4), (2, 6), (4, 1)]),
    elements=st.sampled_from([0.0, 1.0]),
)

# Methods whose coefficients sum to zero over the group whenever K > 0.
_ZERO_SUM = [("mean_baseline", {}), ("rloo", {}), ("grpo", {}), ("maxrl", {}),
             ("maxrl_keep_cv", {})]


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(rewards=_reward_arrays,
                  case=st.sampled_from(METHOD_CASES + [("trunc", {}), ("mac", {}), ("pk", {})]),
                  t_fraction=st.sampled_from([0.0, 0.5, 1.0]))
def test_property_finite_shape_and_jit(rewards, case, t_fraction):
  method, options = case
  n = rewards.shape[-1]
  if method == "trunc":
    method, options = "maxrl_truncated", {"truncation": 1 + int(t_fraction * (n - 1))}
  if method == "mac":
    method, options = "maxrl_maclaurin", {"truncation": 1 + int(t_fraction * (n - 1))}
  if method == "pk":
    method, options = "pkpo", {"k": 1 + int(t_fraction * (n - 1))}
  if "truncation" in options and options["truncation"] > n:
    options = dict(options, truncation=n)
  if "k" in options and options["k"] > n:
    options = dict(options, k=n)
  out = call_advantages(rewards, method, **options)
  assert out.shape == rewards.shape
  assert np.all(np.isfinite(np.asarray(out)))
  jitted = jax.jit(lambda r: call_advantages(r, method, **options))(rewards)
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(out), rtol=1e-6, atol=1e-6)


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(rewards=_reward_arrays, case=st.sampled_from(_ZERO_SUM))
def test_property_zero_sum_when_some_success(rewards, case):
  method, options = case
  hypothesis.assume(rewards.shape[-1] >= 2)
  out = np.asarray(estimators.advantages(rewards, method, **options), np.float64)
  k = rewards.sum(-1)
  sums = out.sum(-1)
  np.testing.assert_allclose(sums[k > 0], 0.0, atol=1e-5)
  if method in ("maxrl", "mean_baseline", "rloo", "grpo"):
    np.testing.assert_array_equal(out[k == 0], 0.0)


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(rewards=_reward_arrays)
def test_property_maxrl_family_identities(rewards):
  n = rewards.shape[-1]
  k = rewards.sum(-1, keepdims=True)
  no_cv = np.asarray(estimators.advantages(rewards, "maxrl_no_cv"))
  keep_cv = np.asarray(estimators.advantages(rewards, "maxrl_keep_cv"))
  maxrl = np.asarray(estimators.advantages(rewards, "maxrl"))
  np.testing.assert_allclose(keep_cv, no_cv - 1.0, atol=1e-6)
  np.testing.assert_allclose(maxrl, np.where(k > 0, keep_cv, 0.0), atol=1e-6)
  # No control variate: the success coefficients a_i = A_i / N sum to 1 whenever K > 0.
  np.testing.assert_allclose(np.where(k[..., 0] > 0, no_cv.sum(-1) / n, 1.0), 1.0, atol=1e-5)


# --- New estimators against brute force / the authors' definitions ----------------------------

def _maclaurin_loop(rewards, t):
  """The authors' order-T Maclaurin coefficients, term by term: success 1, failure
  -sum_{j=2}^{min(T, N)} C(F-1, j-1)/C(N-1, j-1) (F failures), times N."""
  n = len(rewards)
  f = n - int(sum(rewards))
  fail = -sum(math.comb(f - 1, j - 1) / math.comb(n - 1, j - 1)
              for j in range(2, min(t, n) + 1)) if n >= 2 and f >= 1 else 0.0
  return np.where(np.asarray(rewards) > 0, 1.0, fail)


def _pkpo_subset_brute(rewards, k):
  """N a_i with a_i the average over size-k subsets S of max_{j in S} r_j [i in S]."""
  n = len(rewards)
  a = np.zeros(n)
  subsets = list(itertools.combinations(range(n), k))
  for subset in subsets:
    best = max(rewards[i] for i in subset)
    for i in subset:
      a[i] += best
  return n * a / len(subsets)


def _pkpo_authors_loop(rewards, k):
  """The authors' PKPO: c r_i with c = C(N-K, k-1)/C(N-1, k-1), then A_i - mean_{j != i} A_j."""
  n = len(rewards)
  c = math.comb(n - int(sum(rewards)), k - 1) / math.comb(n - 1, k - 1)
  a = c * np.asarray(rewards, np.float64)
  return (a * n - a.sum()) / (n - 1) if n > 1 else a


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_new_estimators_match_their_definitions(n):
  patterns = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
  for t in range(1, n + 1):
    got = estimators.advantages(jnp.asarray(patterns), "maxrl_maclaurin", truncation=t)
    want = np.stack([_maclaurin_loop(r, t) for r in patterns])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
    subset = estimators.advantages(jnp.asarray(patterns), "pkpo", k=t, variant="subset")
    want = np.stack([_pkpo_subset_brute(r, t) for r in patterns])
    np.testing.assert_allclose(np.asarray(subset), want, rtol=1e-6, atol=1e-6)
    authors = estimators.advantages(jnp.asarray(patterns), "pkpo", k=t, variant="authors")
    want = np.stack([_pkpo_authors_loop(r, t) for r in patterns])
    np.testing.assert_allclose(np.asarray(authors), want, rtol=1e-6, atol=1e-6)
    # loo = subset minus the baseline k rho(N-1, K - r_i, k-1) of the other rollouts.
    loo = estimators.advantages(jnp.asarray(patterns), "pkpo", k=t)
    others = patterns.sum(-1, keepdims=True) - patterns
    base = np.vectorize(lambda c: t * (1 - math.comb(n - 1 - int(c), t - 1)
                                       / math.comb(n - 1, t - 1)))(others)
    np.testing.assert_allclose(np.asarray(loo), np.asarray(subset) - base, rtol=1e-6, atol=1e-6)


def test_maclaurin_and_truncated_differ_but_share_endpoints():
  rewards = jnp.asarray(np.random.default_rng(3).random((32, 8)) < 0.3, jnp.float32)
  np.testing.assert_allclose(estimators.advantages(rewards, "maxrl_maclaurin", truncation=1),
                             estimators.advantages(rewards, "reinforce"), atol=1e-6)
  mac = np.asarray(estimators.advantages(rewards, "maxrl_maclaurin", truncation=8))
  trunc = np.asarray(estimators.advantages(rewards, "maxrl_truncated", truncation=8))
  assert not np.allclose(mac, trunc)
  np.testing.assert_allclose(mac[np.asarray(rewards) > 0], 1.0)  # a success always gets 1


NEW_CASES_4096 = [
    ("maxrl_maclaurin", {"truncation": 1}), ("maxrl_maclaurin", {"truncation": 64}),
    ("maxrl_maclaurin", {"truncation": 4095}), ("maxrl_maclaurin", {"truncation": 4096}),
    ("pkpo", {"k": 1}), ("pkpo", {"k": 16}), ("pkpo", {"k": 4096}),
    ("pkpo", {"k": 16, "variant": "subset"}), ("pkpo", {"k": 4096, "variant": "subset"}),
    ("pkpo", {"k": 16, "variant": "authors"}), ("pkpo", {"k": 4096, "variant": "authors"}),
    ("dsgrpo", {}),
]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("method,options", NEW_CASES_4096)
def test_new_methods_finite_and_accurate_at_n4096(method, options, dtype):
  n = 4096
  k = np.arange(n + 1)  # every K in 0..N: row K has the first K rollouts succeed
  rewards = (np.arange(n)[None, :] < k[:, None]).astype(np.float32)
  got = np.asarray(call_advantages(jnp.asarray(rewards, dtype), method, **options))
  assert got.dtype == np.float32 and np.all(np.isfinite(got))
  tab = table(method, n, **options)
  want = np.where(rewards > 0, tab[k, 1][:, None], tab[k, 0][:, None])
  scale = max(1.0, float(np.max(np.abs(tab))))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5 * scale)


# --- Reward domain -----------------------------------------------------------------------------

def test_reward_domain_registry():
  assert set(estimators.REWARD_DOMAIN) == set(estimators.METHODS)
  assert set(estimators.REWARD_DOMAIN.values()) == {"binary", "real"}
  for method in ("maxrl", "maxrl_keep_cv", "maxrl_no_cv", "maxrl_truncated", "maxrl_maclaurin",
                 "pkpo", "dsgrpo"):
    assert estimators.REWARD_DOMAIN[method] == "binary"
  for method in ("reinforce", "mean_baseline", "rloo", "grpo"):
    assert estimators.REWARD_DOMAIN[method] == "real"


def test_maxrl_on_real_rewards_is_the_documented_sign_flip():
  """The module docstring's example: maxrl is for binary rewards; on a group with a negative
  mean its formula (r - m)/m flips every sign, and only the ratio r_i/K counts. Concrete
  rewards like these raise (test_reward_safety.py); check_rewards=False evaluates the formula."""
  with pytest.raises(ValueError, match="^rewards: method 'maxrl'"):
    estimators.advantages(jnp.asarray([-1.0, 0.0, 0.0, 0.0]), "maxrl")
  out = estimators.advantages(jnp.asarray([-1.0, 0.0, 0.0, 0.0]), "maxrl", check_rewards=False)
  np.testing.assert_allclose(out, [3.0, -1.0, -1.0, -1.0], rtol=1e-6)
  out = estimators.advantages(jnp.asarray([2.0, 0.0, 0.0, 0.0]), "maxrl", check_rewards=False)
  np.testing.assert_allclose(out, estimators.advantages(jnp.asarray([1.0, 0, 0, 0]), "maxrl"))
  # The "real" methods keep the natural order on the same group.
  for method in ("mean_baseline", "rloo", "grpo"):
    out = np.asarray(estimators.advantages(jnp.asarray([-1.0, 0.0, 0.0, 0.0]), method))
    assert out[0] < 0 and np.all(out[1:] > 0), method


# --- Errors of the new options and the factory -------------------------------------------------

@pytest.mark.parametrize(
    "call,field",
    [
        (lambda r: estimators.advantages(r, "pkpo"), "k"),  # default k = 16 > N = 4
        (lambda r: estimators.advantages(r, "pkpo", k=5), "k"),
        (lambda r: estimators.advantages(r, "pkpo", k=0), "k"),
        (lambda r: estimators.advantages(r, "pkpo", k=2.0), "k"),
        (lambda r: estimators.advantages(r, "pkpo", k=2, variant="plain"), "variant"),
        (lambda r: estimators.advantages(r, "maxrl_maclaurin"), "truncation"),
        (lambda r: estimators.advantages(r, "maxrl_maclaurin", truncation=5), "truncation"),
        (lambda r: estimators.advantages(r, "dsgrpo"), "logprobs"),
        (lambda r: estimators.advantages(r, "maxrl", logprobs=r), "logprobs"),
        (lambda r: estimators.advantages(r, "dsgrpo", logprobs=r, correct_coef="x"),
         "correct_coef"),
        (lambda r: estimators.advantages(r, "dsgrpo", logprobs=r, incorrect_coef=math.inf),
         "incorrect_coef"),
        (lambda r: estimators.advantages(r, "dsgrpo", logprobs=r, eps=None), "eps"),
        (lambda r: estimators.coefficient_table("dsgrpo", 4), "logprobs"),
        (lambda r: estimators.coefficient_table("dsgrpo", 4, logprobs=[1.0]), "logprobs"),
        (lambda r: estimators.make_advantage_fn("pkpo", group_size=4, k=8), "k"),
        (lambda r: estimators.make_advantage_fn("maxrl", bogus=1), "bogus"),
        (lambda r: estimators.make_advantage_fn("ppo"), "method"),
        (lambda r: estimators.make_advantage_fn("maxrl", flat=True), "group_size"),
        (lambda r: estimators.make_advantage_fn("maxrl", group_size=0), "group_size"),
        (lambda r: estimators.make_advantage_fn("maxrl", group_size=4, flat=1), "flat"),
        (lambda r: estimators.make_advantage_fn("maxrl_truncated", truncation=0), "truncation"),
        (lambda r: estimators.make_advantage_fn("maxrl", group_size=3)(r), "rewards"),
        (lambda r: estimators.make_advantage_fn("maxrl", group_size=3, flat=True)(r), "rewards"),
        (lambda r: estimators.make_advantage_fn("pkpo", k=8)(r), "k"),  # N only known at call
        (lambda r: estimators.advantages_flat(r.reshape(-1), 4, "pkpo", k=6), "k"),
    ],
)
def test_new_errors_name_the_culprit(call, field):
  rewards = jnp.zeros((2, 4))
  with pytest.raises(ValueError, match=f"^{field}"):
    call(rewards)


# --- The factory and the flat layout -----------------------------------------------------------

@pytest.mark.parametrize("method,options", [("maxrl", {}), ("grpo", {"std": "sample"}),
                                            ("pkpo", {"k": 4}), ("dsgrpo", {}),
                                            ("maxrl_maclaurin", {"truncation": 3})])
def test_make_advantage_fn_and_flat_layout(method, options):
  b, g = 6, 8
  rng = np.random.default_rng(4)
  rewards = jnp.asarray(rng.random((2, b * g)) < 0.3, jnp.float32)
  logprobs = jnp.asarray(-rng.random((2, b * g)) * 3, jnp.float32)
  lp = logprobs if method in estimators.LOGPROB_METHODS else None
  lp_grouped = None if lp is None else lp.reshape(2, b, g)
  want = estimators.advantages(rewards.reshape(2, b, g), method, logprobs=lp_grouped, **options)
  want = np.asarray(want).reshape(2, b * g)  # reshape -> advantages -> reshape
  chex.clear_trace_counter()
  flat_fn = estimators.make_advantage_fn(method, group_size=g, flat=True, **options)
  jitted = jax.jit(chex.assert_max_traces(flat_fn, n=1))
  np.testing.assert_allclose(jitted(rewards, lp), want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(jitted(rewards, lp), want, rtol=1e-6, atol=1e-6)  # no retrace
  np.testing.assert_allclose(estimators.advantages_flat(rewards, g, method, logprobs=lp,
                                                        **options), want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(flat_fn(rewards[0], None if lp is None else lp[0]), want[0],
                             rtol=1e-6, atol=1e-6)
  grouped_fn = estimators.make_advantage_fn(method, **options)  # N from the rewards
  out = grouped_fn(rewards.reshape(2, b, g), lp_grouped)
  np.testing.assert_allclose(np.asarray(out).reshape(2, b * g), want, rtol=1e-6, atol=1e-6)
  mapped = jax.vmap(grouped_fn)(rewards.reshape(2, b, g), lp_grouped)
  np.testing.assert_allclose(np.asarray(mapped).reshape(2, b * g), want, rtol=1e-6, atol=1e-6)


# --- Loss aggregations, normalisers, entropy bonus, deprecated keyword -------------------------

def _loss_inputs(seed=5, batch=3, n=4, length=6, vocab=5):
  rng = np.random.default_rng(seed)
  logits = jnp.asarray(rng.normal(size=(batch, n, length, vocab)), jnp.float32)
  tokens = jnp.asarray(rng.integers(0, vocab, size=(batch, n, length)))
  mask = jnp.asarray(rng.random((batch, n, length)) < 0.7, jnp.float32)
  adv = estimators.advantages(jnp.asarray(rng.random((batch, n)) < 0.5, jnp.float32), "maxrl")
  return logits, tokens, mask, adv


def _token_logprobs(logits, tokens):
  return jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None], axis=-1)[..., 0]


def test_token_mean_loss_hand_values():
  logp = jnp.asarray([[[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]]])  # B = 1, N = 2, L = 3
  mask = jnp.asarray([[[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]])  # 5 response tokens
  adv = jnp.asarray([[2.0, -1.0]])
  token = estimators.surrogate_loss(logp, mask, adv, aggregation="token_mean")
  np.testing.assert_allclose(token, -(2.0 * -6.0 + -1.0 * -1.0) / 5.0, rtol=1e-6)  # 11/5
  seq = estimators.surrogate_loss(logp, mask, adv)
  np.testing.assert_allclose(seq, -(2.0 * -6.0 + -1.0 * -1.0) / 2.0, rtol=1e-6)  # 11/2
  np.testing.assert_allclose(
      estimators.surrogate_loss(logp, mask, adv, aggregation="token_mean", num_tokens=11.0),
      1.0, rtol=1e-6)
  np.testing.assert_allclose(estimators.surrogate_loss(logp, mask, adv, num_sequences=11),
                             1.0, rtol=1e-6)
  # No response token at all: 0, not NaN.
  zero = estimators.surrogate_loss(logp, 0 * mask, adv, aggregation="token_mean")
  assert float(zero) == 0.0
  # Entropy bonus: E = sum m H / T.
  ent = jnp.asarray([[[1.0, 1.0, 1.0], [2.0, 2.0, 50.0]]])
  with_bonus = estimators.surrogate_loss(logp, mask, adv, aggregation="token_mean",
                                         token_entropies=ent, entropy_coef=0.1)
  np.testing.assert_allclose(with_bonus, 11 / 5 - 0.1 * 7 / 5, rtol=1e-6)
  with_bonus = estimators.surrogate_loss(logp, mask, adv, token_entropies=ent, entropy_coef=0.1)
  np.testing.assert_allclose(with_bonus, 11 / 2 - 0.1 * 7 / 2, rtol=1e-6)


@pytest.mark.parametrize("aggregation", ["sequence_mean", "token_mean"])
def test_loss_gradients(aggregation):
  logits, tokens, mask, adv = _loss_inputs()
  coef = 0.01

  def loss(lg):
    return estimators.surrogate_loss(
        _token_logprobs(lg, tokens), mask, adv, aggregation=aggregation,
        token_entropies=estimators.token_entropy(lg), entropy_coef=coef)

  def reference(lg):  # the same formula written out directly
    logp = jax.nn.log_softmax(lg)
    tok = jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]
    ent = -jnp.sum(jnp.exp(logp) * logp, -1)
    denom = jnp.sum(mask) if aggregation == "token_mean" else adv.size
    a = jax.lax.stop_gradient(adv)[..., None]
    return (-jnp.sum(a * mask * tok) - coef * jnp.sum(mask * ent)) / denom

  np.testing.assert_allclose(loss(logits), reference(logits), rtol=1e-5)
  np.testing.assert_allclose(jax.grad(loss)(logits), jax.grad(reference)(logits), rtol=1e-4,
                             atol=1e-7)
  # Policy-gradient part only: d L / d log pi(token) = -A m / denominator.
  logp = _token_logprobs(logits, tokens)
  grad_logp = jax.grad(lambda x: estimators.surrogate_loss(x, mask, adv,
                                                           aggregation=aggregation))(logp)
  denom = float(jnp.sum(mask)) if aggregation == "token_mean" else adv.size
  np.testing.assert_allclose(grad_logp, -np.asarray(adv)[..., None] * np.asarray(mask) / denom,
                             rtol=1e-6)


@pytest.mark.parametrize("aggregation", ["sequence_mean", "token_mean"])
def test_micro_batches_sum_to_the_full_loss(aggregation):
  logits, tokens, mask, adv = _loss_inputs(batch=4)
  ent = estimators.token_entropy(logits)
  logp = _token_logprobs(logits, tokens)
  kwargs = dict(aggregation=aggregation, entropy_coef=0.02)
  full = estimators.surrogate_loss(logp, mask, adv, token_entropies=ent, **kwargs)
  if aggregation == "token_mean":
    norm = {"num_tokens": jnp.sum(mask)}
  else:
    norm = {"num_sequences": adv.size}
  parts = [estimators.surrogate_loss(logp[i:i + 1], mask[i:i + 1], adv[i:i + 1],
                                     token_entropies=ent[i:i + 1], **kwargs, **norm)
           for i in range(4)]
  np.testing.assert_allclose(sum(parts), full, rtol=1e-5)
  grads = [jax.grad(lambda lp, i=i: estimators.surrogate_loss(
      lp, mask[i:i + 1], adv[i:i + 1], **kwargs | {"entropy_coef": 0.0}, **norm))(logp[i:i + 1])
           for i in range(4)]
  full_grad = jax.grad(lambda lp: estimators.surrogate_loss(lp, mask, adv, aggregation=aggregation))(
      logp)
  np.testing.assert_allclose(jnp.concatenate(grads), full_grad, rtol=1e-6)
  if aggregation == "token_mean":  # own-count normalisation is not the same thing
    own = sum(estimators.surrogate_loss(logp[i:i + 1], mask[i:i + 1], adv[i:i + 1],
                                        aggregation="token_mean") for i in range(4)) / 4
    plain = estimators.surrogate_loss(logp, mask, adv, aggregation="token_mean")
    assert abs(float(own) - float(plain)) > 1e-4


def test_token_entropy():
  rng = np.random.default_rng(6)
  logits = rng.normal(size=(2, 3, 7)).astype(np.float32)
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  want = -(probs * np.log(probs)).sum(-1)
  got = estimators.token_entropy(jnp.asarray(logits))
  assert got.shape == (2, 3) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(estimators.token_entropy(jnp.zeros((4, 8))), math.log(8), rtol=1e-6)
  # Masked vocabulary (-inf logits): the entropy of the rest, finite gradient.
  masked = jnp.asarray([[0.0, 0.0, -jnp.inf, -jnp.inf]])
  np.testing.assert_allclose(estimators.token_entropy(masked), [math.log(2)], rtol=1e-6)
  grad = jax.grad(lambda x: estimators.token_entropy(x).sum())(masked)
  assert np.all(np.isfinite(np.asarray(grad)))
  assert estimators.token_entropy(jnp.zeros((3, 5), jnp.bfloat16)).dtype == jnp.float32


def test_deprecated_advantages_keyword():
  logp = -jnp.ones((2, 4, 3))
  mask = jnp.ones((2, 4, 3))
  adv = jnp.arange(8.0).reshape(2, 4)
  want = estimators.surrogate_loss(logp, mask, adv)
  assert float(estimators.surrogate_loss(logp, mask, adv=adv)) == float(want)
  with pytest.warns(DeprecationWarning, match="advantages_"):
    old = estimators.surrogate_loss(logp, mask, advantages_=adv)
  assert float(old) == float(want)
  seq = jnp.sum(logp, -1)
  with pytest.warns(DeprecationWarning, match="advantages_"):
    old = estimators.surrogate_loss_from_logprobs(seq, advantages_=adv)
  np.testing.assert_allclose(old, estimators.surrogate_loss_from_logprobs(seq, adv))
  with pytest.raises(TypeError, match="both"):
    estimators.surrogate_loss(logp, mask, adv, advantages_=adv)
  with pytest.raises(TypeError, match="unexpected keyword"):
    estimators.surrogate_loss(logp, mask, adv, advantage=adv)
  with pytest.raises(TypeError, match="missing"):
    estimators.surrogate_loss(logp, mask)


@pytest.mark.parametrize(
    "kwargs,field",
    [({"aggregation": "token-mean"}, "aggregation"),
     ({"num_tokens": 3}, "num_tokens"),
     ({"aggregation": "token_mean", "num_sequences": 3}, "num_sequences"),
     ({"entropy_coef": 0.1}, "entropy_coef"),
     ({"entropy_coef": "big", "token_entropies": jnp.ones((2, 4, 3))}, "entropy_coef")])
def test_loss_option_errors(kwargs, field):
  with pytest.raises(ValueError, match=f"^{field}"):
    estimators.surrogate_loss(-jnp.ones((2, 4, 3)), jnp.ones((2, 4, 3)), jnp.ones((2, 4)),
                              **kwargs)


# --- microbatch_token_mean (verl's token-mean with gradient accumulation) ----------------------

# B = 2 prompts x N = 2 rollouts x L = 3 tokens; response lengths 3, 2, 1, 3.
MB_LOGP = [[[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]], [[-1.0, -7.0, -7.0], [-2.0, -2.0, -2.0]]]
MB_MASK = [[[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]]
MB_ADV = [[2.0, -1.0], [1.0, 0.5]]
MB_ENT = [[[1.0, 1.0, 1.0], [2.0, 2.0, 50.0]], [[3.0, 9.0, 9.0], [1.0, 2.0, 3.0]]]


def test_microbatch_token_mean_hand_values():
  logp, mask, adv, ent = (jnp.asarray(x) for x in (MB_LOGP, MB_MASK, MB_ADV, MB_ENT))
  loss = functools.partial(estimators.surrogate_loss, logp, mask, adv,
                           aggregation="microbatch_token_mean")
  # S = 2: micro-batch 1 = prompt 0: -(2 (-6) + (-1)(-1))/5 = 11/5; micro-batch 2 = prompt 1:
  # -(1 (-1) + 0.5 (-6))/4 = 1. Mean: 1.6 (the global token-mean is 15/9 = 1.667).
  np.testing.assert_allclose(loss(microbatch_size=2), 1.6, rtol=1e-6)
  np.testing.assert_allclose(
      estimators.surrogate_loss(logp, mask, adv, aggregation="token_mean"), 15 / 9, rtol=1e-6)
  # S = 1: per-sequence token-means 4, -0.5, 1, 1.
  np.testing.assert_allclose(loss(microbatch_size=1), 5.5 / 4, rtol=1e-6)
  # Entropy bonus, aggregated the same way: (7/5 + 9/4)/2 = 1.825.
  np.testing.assert_allclose(loss(microbatch_size=2, token_entropies=ent, entropy_coef=0.1),
                             1.6 - 0.1825, rtol=1e-6)
  # An explicit divisor (the whole batch's micro-batch count when this is a chunk).
  np.testing.assert_allclose(loss(microbatch_size=2, num_microbatches=8), 3.2 / 8, rtol=1e-6)
  # A micro-batch without response tokens contributes 0, not NaN.
  empty = mask.at[1].set(0.0)
  np.testing.assert_allclose(
      estimators.surrogate_loss(logp, empty, adv, aggregation="microbatch_token_mean",
                                microbatch_size=2), 1.1, rtol=1e-6)


def test_microbatch_token_mean_with_one_microbatch_is_token_mean():
  logits, tokens, mask, adv = _loss_inputs(batch=3, n=4)
  logp = _token_logprobs(logits, tokens)
  ent = estimators.token_entropy(logits)
  kwargs = dict(token_entropies=ent, entropy_coef=0.03)
  whole = estimators.surrogate_loss(logp, mask, adv, aggregation="microbatch_token_mean",
                                    microbatch_size=adv.size, **kwargs)
  token = estimators.surrogate_loss(logp, mask, adv, aggregation="token_mean", **kwargs)
  np.testing.assert_allclose(whole, token, rtol=1e-6)
  several = estimators.surrogate_loss(logp, mask, adv, aggregation="microbatch_token_mean",
                                      microbatch_size=4, **kwargs)
  assert abs(float(several) - float(token)) > 1e-4  # unequal micro-batch token counts


def test_microbatch_token_mean_chunks_sum_to_the_whole():
  logits, tokens, mask, adv = _loss_inputs(seed=8, batch=4, n=4)  # 16 sequences
  logp = _token_logprobs(logits, tokens)
  ent = estimators.token_entropy(logits)
  kwargs = dict(aggregation="microbatch_token_mean", microbatch_size=4, entropy_coef=0.02)

  def loss(lp, sl, **extra):
    return estimators.surrogate_loss(lp, mask[sl], adv[sl], token_entropies=ent[sl], **kwargs,
                                     **extra)

  full = loss(logp, slice(None))
  chunks = [slice(0, 2), slice(2, 4)]  # 8 sequences = 2 whole micro-batches each
  parts = [loss(logp[c], c, num_microbatches=4) for c in chunks]
  np.testing.assert_allclose(sum(parts), full, rtol=1e-6)
  full_grad = jax.grad(lambda lp: loss(lp, slice(None)))(logp)
  grads = [jax.grad(lambda lp, c=c: loss(lp, c, num_microbatches=4))(logp[c]) for c in chunks]
  np.testing.assert_allclose(jnp.concatenate(grads), full_grad, rtol=1e-6, atol=1e-9)


def test_microbatch_token_mean_jit_and_gradient():
  logits, tokens, mask, adv = _loss_inputs(seed=9, batch=2, n=4)  # 8 sequences
  logp = _token_logprobs(logits, tokens)

  def loss(lp, divisor=None):
    return estimators.surrogate_loss(lp, mask, adv, aggregation="microbatch_token_mean",
                                     microbatch_size=2, num_microbatches=divisor)

  eager = loss(logp)
  np.testing.assert_allclose(jax.jit(loss)(logp), eager, rtol=1e-6)
  np.testing.assert_allclose(jax.jit(loss)(logp, jnp.asarray(8.0)), eager / 2, rtol=1e-6)
  # d L / d log pi(token) = -A m / (tokens of its micro-batch * number of micro-batches).
  m = np.asarray(mask).reshape(4, 2, -1)
  tokens_per_mb = np.maximum(m.sum(axis=(1, 2)), 1)
  want = -np.asarray(adv).reshape(4, 2, 1) * m / (tokens_per_mb[:, None, None] * 4)
  np.testing.assert_allclose(jax.grad(loss)(logp), want.reshape(logp.shape), rtol=1e-5,
                             atol=1e-9)
  grad_adv = jax.grad(lambda a: estimators.surrogate_loss(
      logp, mask, a, aggregation="microbatch_token_mean", microbatch_size=2))(adv)
  np.testing.assert_array_equal(grad_adv, 0.0)


@pytest.mark.parametrize(
    "kwargs,field",
    [({"aggregation": "microbatch_token_mean"}, "microbatch_size"),
     ({"aggregation": "microbatch_token_mean", "microbatch_size": 3}, "microbatch_size"),
     ({"aggregation": "microbatch_token_mean", "microbatch_size": 0}, "microbatch_size"),
     ({"aggregation": "microbatch_token_mean", "microbatch_size": True}, "microbatch_size"),
     ({"aggregation": "microbatch_token_mean", "microbatch_size": 2.0}, "microbatch_size"),
     ({"aggregation": "microbatch_token_mean", "microbatch_size": 2, "num_tokens": 3},
      "num_tokens"),
     ({"aggregation": "microbatch_token_mean", "microbatch_size": 2, "num_sequences": 3},
      "num_sequences"),
     ({"aggregation": "token_mean", "microbatch_size": 2}, "microbatch_size"),
     ({"num_microbatches": 2}, "num_microbatches"),
     ({"aggregation": "microbatch_token_mean", "microbatch_size": 2, "num_microbatches": "x"},
      "num_microbatches")])
def test_microbatch_token_mean_errors(kwargs, field):
  with pytest.raises(ValueError, match=f"^{field}"):
    estimators.surrogate_loss(-jnp.ones((2, 4, 3)), jnp.ones((2, 4, 3)), jnp.ones((2, 4)),
                              **kwargs)
