"""Reward safety (domain checks, binarize, checkify) and grouping by ids (verl's ``index``)."""

from __future__ import annotations

import math

import chex
import jax
from jax.experimental import checkify
import jax.numpy as jnp
import numpy as np
import pytest

from maxrl_jax import estimators

BINARY = [m for m, d in estimators.REWARD_DOMAIN.items() if d == "binary"]
REAL = [m for m, d in estimators.REWARD_DOMAIN.items() if d == "real"]
# Options that make every method valid at N = 4.
OPTIONS = {"maxrl_truncated": {"truncation": 2}, "maxrl_maclaurin": {"truncation": 2},
           "pkpo": {"k": 2}}


def _call(rewards, method, **kwargs):
  logp = None
  if method in estimators.LOGPROB_METHODS:
    logp = -jnp.ones(jnp.shape(jnp.asarray(rewards)))
  return estimators.advantages(rewards, method, logprobs=logp, **OPTIONS.get(method, {}),
                               **kwargs)


# --- Concrete rewards outside the domain ------------------------------------------------------

@pytest.mark.parametrize("method", BINARY)
def test_plus_minus_one_rewards_raise_for_binary_methods(method):
  with pytest.raises(ValueError) as info:
    _call(jnp.asarray([1.0, -1.0, -1.0, -1.0]), method)
  text = str(info.value)
  assert text.startswith(f"rewards: method {method!r} needs rewards in {{0, 1}}")
  assert "REWARD_DOMAIN" in text and "'binary'" in text and "3 of 4" in text
  assert "[-1, -1, -1]" in text and "binarize=threshold" in text
  # The fix the message names: binarize at 0.
  fixed = _call(jnp.asarray([1.0, -1.0, -1.0, -1.0]), method, binarize=0.0)
  np.testing.assert_array_equal(fixed, _call(jnp.asarray([1.0, 0.0, 0.0, 0.0]), method))


def test_the_issue_example_now_raises():
  with pytest.raises(ValueError, match=r"^rewards: method 'maxrl'"):
    estimators.advantages([1, -1, -1, -1], "maxrl")
  np.testing.assert_array_equal(estimators.advantages([1, -1, -1, -1], "maxrl", binarize=0),
                                [3.0, -1.0, -1.0, -1.0])


@pytest.mark.parametrize("method", REAL)
def test_real_methods_accept_any_finite_rewards(method):
  rewards = jnp.asarray([[1.0, -1.0, 0.5, 0.25], [3.0, 0.0, 0.0, -2.0]])
  out = estimators.advantages(rewards, method)
  want = estimators.advantages(rewards, method, check_rewards=False)
  np.testing.assert_array_equal(out, want)
  estimators.advantages(jnp.asarray([2, 0, 0, 5]), method)  # ints are finite


def test_partial_credit_lists_at_most_five_values():
  rewards = [0.5, 0.25, 0.75, 0.1, 0.2, 0.3, 0.4, 1.0]
  with pytest.raises(ValueError) as info:
    estimators.advantages(rewards, "maxrl")
  text = str(info.value)
  assert "7 of 8" in text and "[0.5, 0.25, 0.75, 0.1, 0.2]" in text and "0.3" not in text
  full_credit = estimators.advantages(rewards, "maxrl", binarize=0.99)
  np.testing.assert_allclose(full_credit, [-1.0] * 7 + [7.0])
  estimators.advantages(rewards, "grpo")  # partial credit is fine for a real method


@pytest.mark.parametrize("method", ["maxrl", "pkpo", "grpo", "rloo"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_raise(method, bad):
  with pytest.raises(ValueError, match=rf"^rewards: method {method!r}.* 1 of 4 .*"):
    _call(np.asarray([1.0, bad, 0.0, 0.0], np.float32), method)
  if estimators.REWARD_DOMAIN[method] == "real":
    with pytest.raises(ValueError, match="finite"):
      _call(np.asarray([1.0, bad, 0.0, 0.0], np.float32), method)


@pytest.mark.parametrize("method", BINARY + REAL)
def test_lists_tuples_bool_int_numpy_rewards_are_fine(method):
  want = _call(jnp.asarray([[1.0, 0.0, 0.0, 1.0]]), method)
  for rewards in ([[1, 0, 0, 1]], ((True, False, False, True),), [[1.0, 0.0, 0.0, 1.0]],
                  np.asarray([[1, 0, 0, 1]], np.int32), jnp.asarray([[1, 0, 0, 1]], jnp.bool_),
                  jnp.asarray([[1, 0, 0, 1]], jnp.bfloat16)):
    np.testing.assert_array_equal(_call(rewards, method), want)


def test_int_rewards_outside_zero_one_raise_for_binary_methods():
  with pytest.raises(ValueError, match=r"e\.g\. \[2\]"):
    estimators.advantages(np.asarray([2, 0, 0, 1]), "maxrl")


def test_factory_and_flat_adapter_check_too():
  fn = estimators.make_advantage_fn("maxrl", group_size=2, flat=True)
  np.testing.assert_array_equal(fn([1, 0, 0, 0]), [1.0, -1.0, 0.0, 0.0])  # a list
  with pytest.raises(ValueError, match="^rewards: method 'maxrl'"):
    fn([1, -1, 0, 0])
  with pytest.raises(ValueError, match="^rewards: method 'maxrl'"):
    estimators.advantages_flat([1, -1, 0, 0], 2, "maxrl")
  np.testing.assert_array_equal(
      estimators.advantages_flat([1, -1, 0, 0], 2, "maxrl", binarize=0.0), [1.0, -1.0, 0.0, 0.0])
  binarized = estimators.make_advantage_fn("maxrl", group_size=2, flat=True, binarize=0.0)
  np.testing.assert_array_equal(binarized([1, -1, 0, 0]), [1.0, -1.0, 0.0, 0.0])
  off = estimators.make_advantage_fn("maxrl", group_size=2, flat=True, check_rewards=False)
  np.testing.assert_allclose(off([-1.0, 0.0, 0.0, 0.0]), [1.0, -1.0, 0.0, 0.0])


def test_binarize_helper():
  out = estimators.binarize([-1.0, 0.0, 0.3, 1.0, math.nan], 0.0)
  assert out.dtype == jnp.float32
  np.testing.assert_array_equal(out, [0.0, 0.0, 1.0, 1.0, 0.0])
  np.testing.assert_array_equal(jax.jit(estimators.binarize, static_argnums=1)(
      jnp.asarray([0.2, 0.7]), 0.5), [0.0, 1.0])
  for bad in (None, "0.5", True, math.nan):
    with pytest.raises(ValueError, match="^binarize"):
      estimators.binarize([1.0], bad)
    if bad is not None:  # None: no binarisation
      with pytest.raises(ValueError, match="^binarize"):
        estimators.make_advantage_fn("maxrl", binarize=bad)
  with pytest.raises(ValueError, match="^check_rewards"):
    estimators.advantages([1, 0], "maxrl", check_rewards="yes")
  with pytest.raises(ValueError, match="^check_rewards"):
    estimators.make_advantage_fn("maxrl", check_rewards=1)


# --- Traced rewards: jit unchanged, checkify opt-in, no retracing ------------------------------

BAD = jnp.asarray([[1.0, -1.0, 0.5, 0.0], [0.0, 0.0, 1.0, math.nan]])
GOOD = jnp.asarray([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]])


def test_jit_is_unchecked_and_unchanged():
  chex.clear_trace_counter()
  fn = estimators.make_advantage_fn("maxrl")
  jitted = jax.jit(chex.assert_max_traces(fn, n=1))
  want = estimators.advantages(BAD, "maxrl", check_rewards=False)
  np.testing.assert_array_equal(jitted(BAD), want)  # no error under jit without the opt-in
  np.testing.assert_array_equal(jitted(GOOD), estimators.advantages(GOOD, "maxrl"))  # no retrace
  jaxpr = str(jax.make_jaxpr(fn)(GOOD))
  assert "check" not in jaxpr  # costs nothing


def test_checkify_opt_in_reports_bad_traced_rewards():
  chex.clear_trace_counter()
  fn = estimators.make_advantage_fn("maxrl", check_rewards=True)
  checked = checkify.checkify(jax.jit(chex.assert_max_traces(fn, n=1)))
  err, out = checked(BAD)
  message = err.get()
  assert message is not None and message.startswith("rewards: method 'maxrl' needs rewards in")
  assert "{0, 1}" in message and "3 of 8" in message and "binarize=threshold" in message
  assert "-1." in message and "0.5" in message
  np.testing.assert_array_equal(out, estimators.advantages(BAD, "maxrl", check_rewards=False))
  err, out = checked(GOOD)  # same shapes: no retrace
  assert err.get() is None
  np.testing.assert_array_equal(out, estimators.advantages(GOOD, "maxrl"))
  # advantages() takes the same opt-in; a real method reports NaN/inf.
  err, _ = checkify.checkify(jax.jit(lambda r: estimators.advantages(
      r, "grpo", check_rewards=True)))(BAD)
  assert "finite" in err.get() and "1 of 8" in err.get()
  # Under vmap each group is checked; a clean batch reports nothing.
  err, _ = checkify.checkify(jax.jit(jax.vmap(fn)))(BAD)
  assert err.get() is not None and "of 4 values are not" in err.get()
  err, _ = checkify.checkify(jax.jit(jax.vmap(fn)))(GOOD)
  assert err.get() is None
  # Staged without checkify.checkify, the opt-in check says so (JAX's own error).
  with pytest.raises(ValueError, match="checkify"):
    jax.jit(fn)(GOOD)


def test_tracers_of_vmap_grad_scan_are_skipped():
  fn = estimators.make_advantage_fn("maxrl")
  want = estimators.advantages(BAD, "maxrl", check_rewards=False)
  np.testing.assert_array_equal(jax.vmap(fn)(BAD), want)
  grads = jax.grad(lambda r: jnp.sum(jnp.nan_to_num(fn(r)) ** 2))(BAD.at[1, 3].set(0.0))
  assert np.all(np.isfinite(np.asarray(grads)))

  def body(carry, r):
    return carry, fn(r)

  _, scanned = jax.lax.scan(body, 0.0, BAD)
  np.testing.assert_array_equal(scanned, want)


# --- Grouping by ids (verl's index / uid) ------------------------------------------------------

# Groups of sizes 1, 2, 4, interleaved: ids and rewards per rollout.
IDS = [2, 0, 1, 2, 2, 1, 2]
REWARDS = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
# Group 0 (N=1, K=1), group 1 (N=2, K=1), group 2 (N=4, K=1); every value by hand.
_SQ3 = math.sqrt(3.0)
IDS_HAND = [
    ("reinforce", {}, REWARDS),
    ("mean_baseline", {}, [0.75, 0.0, 0.5, -0.25, -0.25, -0.5, -0.25]),
    ("rloo", {}, [1.0, 1.0, 1.0, -1 / 3, -1 / 3, -1.0, -1 / 3]),  # N = 1: A = r
    ("grpo", {"eps": 0.0}, [_SQ3, 0.0, 1.0, -1 / _SQ3, -1 / _SQ3, -1.0, -1 / _SQ3]),
    ("grpo", {"eps": 0.0, "std": "sample"},  # std 1/sqrt(2) and 1/2; N = 1: 0
     [1.5, 0.0, math.sqrt(0.5), -0.5, -0.5, -math.sqrt(0.5), -0.5]),
    ("maxrl", {}, [3.0, 0.0, 1.0, -1.0, -1.0, -1.0, -1.0]),
    ("maxrl_keep_cv", {}, [3.0, 0.0, 1.0, -1.0, -1.0, -1.0, -1.0]),
    ("maxrl_no_cv", {}, [4.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0]),
]


@pytest.mark.parametrize("method,options,expected", IDS_HAND)
def test_group_ids_hand_computed_sizes_1_2_4(method, options, expected):
  ids = jnp.asarray(IDS)
  out = estimators.advantages_flat(REWARDS, None, method, group_ids=ids, **options)
  np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
  fn = estimators.make_advantage_fn(method, flat=True, num_groups=3, **options)
  chex.clear_trace_counter()
  jitted = jax.jit(chex.assert_max_traces(fn, n=1))
  np.testing.assert_allclose(jitted(jnp.asarray(REWARDS), None, ids), expected, rtol=1e-6,
                             atol=1e-6)
  flipped = 1.0 - jnp.asarray(REWARDS)
  np.testing.assert_allclose(jitted(flipped, None, ids),
                             estimators.advantages_flat(flipped, None, method, group_ids=ids,
                                                        **options), rtol=1e-6, atol=1e-6)


def test_group_ids_dsgrpo_hand_computed():
  logp = jnp.asarray([-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0])
  out = estimators.advantages_flat(REWARDS, None, "dsgrpo", logprobs=logp, group_ids=IDS,
                                   eps=0.0)
  grpo = np.asarray(IDS_HAND[3][2])
  smooth = np.where(np.asarray(REWARDS) > 0, 0.05, -0.05) * np.asarray(logp) * -1
  np.testing.assert_allclose(out, grpo + smooth, rtol=1e-6, atol=1e-6)


SUPPORTED = [(m, o) for m, o in [
    ("reinforce", {}), ("mean_baseline", {}), ("rloo", {}), ("grpo", {}),
    ("grpo", {"std": "sample"}), ("maxrl", {}), ("maxrl", {"eps": 1e-6}), ("maxrl_keep_cv", {}),
    ("maxrl_no_cv", {}), ("dsgrpo", {})]]


@pytest.mark.parametrize("method,options", SUPPORTED)
@pytest.mark.parametrize("n", [1, 5])
def test_group_ids_equal_contiguous_layout(method, options, n):
  rng = np.random.default_rng(n)
  b = 6
  rewards = jnp.asarray(rng.random(b * n) < 0.4, jnp.float32).at[:n].set(0.0)
  logp = jnp.asarray(-rng.random(b * n) * 3, jnp.float32)
  lp = logp if method in estimators.LOGPROB_METHODS else None
  want = estimators.advantages_flat(rewards, n, method, logprobs=lp, **options)
  ids = jnp.repeat(jnp.arange(b), n)
  got = estimators.advantages_flat(rewards, None, method, logprobs=lp, group_ids=ids, **options)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  # Any order: permuting the rollouts (with their ids) permutes the advantages.
  perm = rng.permutation(b * n)
  shuffled = estimators.advantages_flat(rewards[perm], None, method,
                                        logprobs=None if lp is None else lp[perm],
                                        group_ids=ids[perm], num_groups=b + 2, **options)
  np.testing.assert_allclose(shuffled, np.asarray(want)[perm], rtol=1e-6, atol=1e-6)


def test_group_ids_gradients_are_finite():
  fn = estimators.make_advantage_fn("grpo", flat=True, num_groups=3, std="sample")
  grads = jax.grad(lambda r: jnp.sum(fn(r, None, jnp.asarray(IDS)) ** 2))(jnp.asarray(REWARDS))
  assert np.all(np.isfinite(np.asarray(grads)))


@pytest.mark.parametrize(
    "call,message",
    [(lambda: estimators.advantages_flat(REWARDS, None, "pkpo", group_ids=IDS, k=1),
      r"^group_ids: pkpo depends on a fixed group size"),
     (lambda: estimators.advantages_flat(REWARDS, None, "maxrl_truncated", group_ids=IDS,
                                         truncation=1), r"^group_ids: maxrl_truncated"),
     (lambda: estimators.advantages_flat(REWARDS, None, "maxrl_maclaurin", group_ids=IDS,
                                         truncation=1), r"^group_ids: maxrl_maclaurin"),
     (lambda: estimators.make_advantage_fn("pkpo", flat=True, num_groups=3),
      r"^group_ids: pkpo"),
     (lambda: estimators.advantages_flat(REWARDS, 7, "maxrl", group_ids=IDS),
      r"^group_size: give group_size=None"),
     (lambda: estimators.advantages_flat(REWARDS, 7, "maxrl", num_groups=3), r"^num_groups"),
     (lambda: estimators.advantages_flat(REWARDS, None, "maxrl", group_ids=IDS, num_groups=2),
      r"^group_ids: must lie in 0\.\.num_groups-1 = 1"),
     (lambda: estimators.advantages_flat(REWARDS, None, "maxrl", group_ids=[-1] + IDS[1:]),
      r"^group_ids: must lie"),
     (lambda: estimators.advantages_flat(REWARDS, None, "maxrl",
                                         group_ids=np.asarray(IDS, np.float32)),
      r"^group_ids: need integer ids"),
     (lambda: estimators.advantages_flat(REWARDS, None, "maxrl", group_ids=IDS[:3]),
      r"^group_ids: need integer ids of shape \(7,\)"),
     (lambda: estimators.advantages_flat([REWARDS], None, "maxrl", group_ids=[IDS]),
      r"^rewards: group_ids needs flat rewards"),
     (lambda: estimators.make_advantage_fn("maxrl")(REWARDS, None, IDS),
      r"^group_ids: only for flat rewards"),
     (lambda: estimators.make_advantage_fn("maxrl", num_groups=3), r"^num_groups: only with"),
     (lambda: estimators.make_advantage_fn("maxrl", flat=True, num_groups=3)(REWARDS),
      r"^group_ids: this function was made without group_size"),
     (lambda: jax.jit(lambda r, i: estimators.advantages_flat(r, None, "maxrl", group_ids=i))(
         jnp.asarray(REWARDS), jnp.asarray(IDS)), r"^num_groups: group_ids that are traced"),
     (lambda: estimators.advantages_flat([1.0, -1.0], None, "maxrl", group_ids=[0, 0]),
      r"^rewards: method 'maxrl'")])
def test_group_ids_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()
