"""Tests for maxrl_jax.estimators: hand-computed values, closed forms, edge cases, properties."""

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
]

S = math.sqrt(3.0) / 2.0  # 0.5 / sample std of [1, 0, 0, 1] = 0.5 / sqrt(1/3)
G = 0.5 / (0.5 + 1e-6)  # 0.5 / (population std + eps) of [1, 0, 0, 1]

# (method, options, rewards, expected A) -- every value computed by hand from SPEC section 3.
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
]


@pytest.mark.parametrize("method,options,rewards,expected", HAND)
def test_hand_computed(method, options, rewards, expected):
  out = estimators.advantages(jnp.asarray(rewards, jnp.float32), method, **options)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-6, atol=1e-6)


def test_every_method_has_hand_values():
  assert {case[0] for case in HAND} == set(estimators.METHODS)


def test_batched_rows_match_single_rows():
  rewards = jnp.array([[[1, 0, 0, 1], [0, 0, 0, 0]], [[1, 1, 1, 1], [0, 1, 0, 0]]], jnp.float32)
  for method, options in METHOD_CASES:
    batched = estimators.advantages(rewards, method, **options)
    chex.assert_shape(batched, rewards.shape)
    for idx in np.ndindex(*rewards.shape[:-1]):
      single = estimators.advantages(rewards[idx], method, **options)
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
  table = estimators.coefficient_table(method, n, **options)
  assert table.shape == (n + 1, 2) and table.dtype == np.float64
  for k in range(n + 1):
    rewards = jnp.asarray([1.0] * k + [0.0] * (n - k))
    out = np.asarray(estimators.advantages(rewards, method, **options))
    if k > 0:
      np.testing.assert_allclose(out[0], table[k, 1], rtol=1e-6, atol=1e-6)
    if k < n:
      np.testing.assert_allclose(out[-1], table[k, 0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.int32, jnp.bool_])
@pytest.mark.parametrize("method,options", METHOD_CASES)
def test_dtypes_are_computed_in_float32(method, options, dtype):
  rewards = jnp.array([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]]).astype(dtype)
  out = estimators.advantages(rewards, method, **options)
  assert out.dtype == jnp.float32
  want = estimators.advantages(rewards.astype(jnp.float32), method, **options)
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
  eager = estimators.advantages(rewards, method, **options)
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def jitted(r):
    return estimators.advantages(r, method, **options)

  np.testing.assert_allclose(jitted(rewards), eager, rtol=1e-6, atol=1e-6)
  flipped = estimators.advantages(1.0 - rewards, method, **options)
  np.testing.assert_allclose(jitted(1.0 - rewards), flipped, rtol=1e-6, atol=1e-6)  # no retrace
  mapped = jax.vmap(lambda r: estimators.advantages(r, method, **options))(rewards)
  np.testing.assert_allclose(mapped, eager, rtol=1e-6, atol=1e-6)
  # Gradients w.r.t. the rewards exist and are finite, even at K = 0, K = N.
  edge = rewards.at[0, 0].set(0.0).at[0, 1].set(1.0)
  grads = jax.grad(lambda r: jnp.sum(estimators.advantages(r, method, **options) ** 2))(edge)
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
@hypothesis.given(rewards=_reward_arrays, case=st.sampled_from(METHOD_CASES + [("trunc", {})]),
                  t_fraction=st.sampled_from([0.0, 0.5, 1.0]))
def test_property_finite_shape_and_jit(rewards, case, t_fraction):
  method, options = case
  n = rewards.shape[-1]
  if method == "trunc":
    method, options = "maxrl_truncated", {"truncation": 1 + int(t_fraction * (n - 1))}
  if "truncation" in options and options["truncation"] > n:
    options = dict(options, truncation=n)
  out = estimators.advantages(rewards, method, **options)
  assert out.shape == rewards.shape
  assert np.all(np.isfinite(np.asarray(out)))
  jitted = jax.jit(lambda r: estimators.advantages(r, method, **options))(rewards)
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
