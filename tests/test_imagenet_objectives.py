"""Label sampler and sampled objectives of the ImageNet experiment (experiments/imagenet)."""

import chex
import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from experiments.imagenet import objectives
from maxrl_jax import theory


def _random_bits_sizes(jaxpr) -> list[int]:
  """Numbers of random words drawn by every random-bits op in a (nested) jaxpr."""
  sizes = []
  for eqn in jaxpr.eqns:
    if "random_bits" in eqn.primitive.name or "threefry" in eqn.primitive.name:
      sizes.append(int(np.prod(eqn.outvars[0].aval.shape)))
    for sub in jax_core.jaxprs_in_params(eqn.params):
      sizes.extend(_random_bits_sizes(sub))
  return sizes


def test_sampler_frequencies_match_softmax_chi_square():
  logits = jnp.array([[2.0, 1.0, 0.0, -1.0, -3.0, 0.5, -np.inf, 1.5],
                      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], jnp.float32)
  n = 200_000
  labels = np.asarray(objectives.sample_labels(jax.random.PRNGKey(0), logits, n))
  assert labels.shape == (2, n) and labels.dtype == np.int32
  probs = np.asarray(jax.nn.softmax(logits.astype(jnp.float64) if jax.config.x64_enabled
                                    else logits), np.float64)
  for row in range(2):
    counts = np.bincount(labels[row], minlength=8)
    support = probs[row] > 0
    assert counts[~support].sum() == 0  # A zero-probability class is never drawn.
    expected = probs[row][support] / probs[row][support].sum() * n
    result = stats.chisquare(counts[support], expected)
    assert result.pvalue > 1e-3, (row, counts, expected)


def test_sampler_draws_b_times_n_random_numbers_not_b_n_c():
  b, n, c = 4, 64, 1000
  logits = jax.random.normal(jax.random.PRNGKey(1), (b, c))
  jaxpr = jax.make_jaxpr(lambda k, l: objectives.sample_labels(k, l, n))(
      jax.random.PRNGKey(0), logits).jaxpr
  sizes = _random_bits_sizes(jaxpr)
  assert sizes, "no random-bits op found"
  assert max(sizes) <= b * n  # One 32-bit word per rollout (Gumbel-max would need b*n*c).


def _linear_problem(num_classes=4, dim=5, batch=6, seed=0):
  rng = np.random.default_rng(seed)
  feats = jnp.asarray(rng.normal(size=(batch, dim)), jnp.float32)
  weights = jnp.asarray(0.5 * rng.normal(size=(dim, num_classes)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, num_classes, size=batch), jnp.int32)
  return feats, weights, labels


@pytest.mark.parametrize("method,options", [("maxrl", {}), ("mean_baseline", {}),
                                            ("grpo", {"std": "population"})])
def test_sampled_gradient_matches_expected_weight_times_grad_p(method, options):
  """E[grad L] = -(1/B) sum_b w(p_b) grad p_b, with w from maxrl_jax.theory."""
  feats, weights, labels = _linear_problem()
  n, num_sets = 4, 40_000

  def pass_rates(w):
    return jax.nn.softmax(feats @ w)[jnp.arange(len(labels)), labels]

  p = np.asarray(pass_rates(weights), np.float64)
  assert 0.02 < p.min() and p.max() < 0.9
  jac = np.asarray(jax.jacobian(pass_rates)(weights), np.float64)  # [B, D, C]
  w = theory.expected_weight(method, n, p, **options)
  exact = -np.einsum("b,bdc->dc", w, jac) / len(labels)

  @jax.jit
  @jax.vmap
  def sampled_grad(key):
    loss_fn = lambda wt: objectives.sampled_loss(
        feats @ wt, labels, key, method=method, num_rollouts=n, options=options)[0]
    return jax.grad(loss_fn)(weights)

  keys = jax.random.split(jax.random.PRNGKey(42), num_sets)
  grads = np.asarray(sampled_grad(keys), np.float64)
  mean = grads.mean(axis=0)
  stderr = grads.std(axis=0) / np.sqrt(num_sets)
  np.testing.assert_array_less(np.abs(mean - exact), 5 * stderr + 1e-6)
  assert np.linalg.norm(mean - exact) < 0.05 * np.linalg.norm(exact)
  # The check discriminates: the plain REINFORCE weighting (w = 1) is far outside the band.
  if method == "maxrl":
    reinforce = -np.einsum("bdc->dc", jac) / len(labels)
    assert np.linalg.norm(mean - reinforce) > 10 * np.linalg.norm(stderr)


def test_class_coefficients_give_the_sampled_surrogate_gradient():
  feats, weights, labels = _linear_problem(num_classes=7, batch=5, seed=3)
  key = jax.random.PRNGKey(7)
  for method, options in (("maxrl", {}), ("grpo", {"std": "population"}),
                          ("mean_baseline", {})):
    direct = jax.grad(lambda w: objectives.sampled_loss(
        feats @ w, labels, key, method=method, num_rollouts=32, options=options)[0])(weights)
    coefs = objectives.class_coefficients(feats @ weights, labels, key, objective=method,
                                          num_rollouts=32, options=options)
    chex.assert_shape(coefs, (5, 7))
    via_counts = jax.grad(lambda w: -jnp.sum(
        coefs * jax.nn.log_softmax(feats @ w)) / len(labels))(weights)
    np.testing.assert_allclose(via_counts, direct, rtol=1e-4, atol=1e-6)


def test_cross_entropy_and_dispatch():
  logits = jnp.zeros((3, 10))
  labels = jnp.array([0, 4, 9])
  loss, aux = objectives.objective_loss(logits, labels, jax.random.PRNGKey(0),
                                        objective="cross_entropy")
  np.testing.assert_allclose(loss, np.log(10.0), rtol=1e-6)
  np.testing.assert_allclose(aux["train/pass_rate"], 0.1, rtol=1e-6)
  _, aux = objectives.objective_loss(logits, labels, jax.random.PRNGKey(0), objective="maxrl",
                                     num_rollouts=1000)
  assert 0.08 < float(aux["train/success_fraction"]) < 0.12
  with pytest.raises(ValueError, match="search_method"):
    objectives.sample_labels(jax.random.PRNGKey(0), logits, 4, search_method="compare_all")


def test_entropy_bonus_any_objective():
  from maxrl_jax import estimators as est  # pylint: disable=g-import-not-at-top
  logits = jax.random.normal(jax.random.key(0), (4, 7))
  labels = jnp.array([0, 1, 2, 3])
  key = jax.random.key(1)
  for objective, n in (("cross_entropy", 1), ("maxrl", 8)):
    base, aux = objectives.objective_loss(logits, labels, key, objective=objective,
                                          num_rollouts=n)
    bonus, _ = objectives.objective_loss(logits, labels, key, objective=objective,
                                         num_rollouts=n, entropy_coef=0.1)
    entropy = float(jnp.mean(est.token_entropy(logits)))
    np.testing.assert_allclose(float(aux["train/entropy"]), entropy, rtol=1e-6)
    np.testing.assert_allclose(float(bonus), float(base) - 0.1 * entropy, rtol=1e-5)
