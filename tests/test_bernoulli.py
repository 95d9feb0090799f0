"""Tests of the toy Bernoulli policy driver (experiments/bernoulli)."""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.bernoulli import analysis
from experiments.bernoulli import config as config_lib
from experiments.bernoulli import evaluate
from experiments.bernoulli import exact
from experiments.bernoulli import experiment
from experiments.bernoulli import metrics as bernoulli_metrics
from experiments.bernoulli import runs as runs_lib
from experiments.bernoulli import steps as steps_lib
from experiments.bernoulli import train
from experiments.bernoulli import validation
from maxrl_jax import metrics as metrics_lib
from maxrl_jax import theory
from maxrl_jax.train.errors import ConfigError


def _small_config(**overrides):
  c = config_lib.get_config("smoke")
  c.analysis.weight_num_rollouts = 4
  for key, value in overrides.items():
    node = c
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return c


# ------------------------------------------------------------------ sampled vs exact gradients

_TEST_ESTIMATORS = config_lib.DEFAULT_ESTIMATORS


@pytest.mark.parametrize("policy", ["tabular", "logistic"])
def test_sampled_gradient_mean_converges_to_exact_gradient(policy):
  """Mean of R sampled gradients (surrogate -> jax.grad) = exact E[g], within 5 std errors."""
  c = _small_config(num_prompts=10, initial_pass_rate_min=0.03, initial_pass_rate_max=0.9,
                    **{"sampled.num_rollouts": (1, 2, 5), "figures.num_rollouts": 2,
                       "sampled.estimators": _TEST_ESTIMATORS,
                       "exact.estimators": _TEST_ESTIMATORS})
  grid = steps_lib.make_grids(c)[policy]
  params = grid.policy.init()
  logits = grid.policy.logits(params)
  tables = grid.tables()
  repeats = 4000
  rejected_wrong = 0
  for n in grid.ns:
    keys = jax.random.split(jax.random.key(n), repeats)
    # [E, R, M, n] rewards through the driver's own sampler (R plays the role of seeds).
    rewards = grid.sample_rewards(keys, jnp.broadcast_to(logits, (len(_TEST_ESTIMATORS), repeats)
                                                          + logits.shape), n)
    adv = grid.sampled_advantages(rewards)
    grad_fn = jax.grad(grid.sampled_loss)
    grads = jax.jit(jax.vmap(jax.vmap(grad_fn, (None, 0, 0)), (None, 0, 0)))(params, rewards, adv)
    sampled = np.asarray(jax.tree.leaves(grads)[0], np.float64)  # [E, R, P]
    mean = sampled.mean(axis=1)
    se = sampled.std(axis=1, ddof=1) / math.sqrt(repeats)
    for i, m in enumerate(grid.exact_estimators):
      c_exact = exact.expected_logit_coefficient(logits, jax.tree.map(lambda t: t[i],
                                                                      tables[f"n{n}"]))
      g_exact = np.asarray(jax.tree.leaves(jax.grad(grid.exact_loss)(params, c_exact))[0])
      z = np.abs(mean[i] - g_exact) / (se[i] + 1e-7)
      assert np.all(z < 5.0), (policy, m, n, z.max(), mean[i], g_exact)
    # Power check: maxrl (unbiased for J^(N-1)) is distinguishable from grad J^(N) at N = 2.
    if n == 2:
      i = grid.sampled_estimators.index("maxrl")
      c_wrong = exact.truncated_logit_coefficient(logits, float(n))
      g_wrong = np.asarray(jax.tree.leaves(jax.grad(grid.exact_loss)(params, c_wrong))[0])
      rejected_wrong += int(np.any(np.abs(mean[i] - g_wrong) / (se[i] + 1e-7) > 5.0))
  assert rejected_wrong == 1


def test_exact_coefficients_match_theory_float64():
  """The on-device (float32) finite-N weights equal maxrl_jax.theory's float64 ones."""
  p = np.geomspace(1e-4, 0.999, 60)
  logits = jnp.asarray(np.log(p) - np.log1p(-p), jnp.float32)
  p32 = np.asarray(jax.nn.sigmoid(logits), np.float64)
  config = config_lib.get_config("cpu")
  for n in (1, 2, 7, 64, 1024):
    for m in config_lib.DEFAULT_ESTIMATORS:
      opts = runs_lib.estimator_options(config, m, n)  # "N" options resolved per n
      table = exact.estimator_table(m, n, options=opts).device()
      w = np.asarray(exact.weight_from_logit_coefficient(
          logits, exact.expected_logit_coefficient(logits, table)), np.float64)
      ref = theory.expected_weight(m, n, p32, **opts)
      np.testing.assert_allclose(w, ref, rtol=2e-4, atol=1e-6, err_msg=f"{m} N={n}")
  for t in (1, 3, 64, 1024, math.inf):
    w = np.asarray(exact.weight_from_logit_coefficient(
        logits, exact.truncated_logit_coefficient(logits, t)), np.float64)
    np.testing.assert_allclose(w, theory.truncated_weight(p32, t), rtol=2e-5)


def test_exact_variance_matches_monte_carlo():
  """Exact enumeration of Var[c] agrees with sampled advantages (chi-square tolerance)."""
  p = jnp.asarray([0.01, 0.2, 0.6])
  logits = jnp.log(p) - jnp.log1p(-p)
  repeats, n = 20000, 8
  rewards = (jax.random.uniform(jax.random.key(3), (repeats, 3, n)) < p[:, None]).astype(
      jnp.float32)
  for m in ("reinforce", "grpo", "maxrl", "rloo"):
    var = exact.logit_coefficient_variance(logits, exact.estimator_table(m, n).device())
    mc = jnp.var(evaluate.sampled_logit_coefficient(rewards, p, m), axis=0, ddof=1)
    np.testing.assert_allclose(mc, var, rtol=0.1, err_msg=m)


# ------------------------------------------------------------------ exact-gradient training


def test_exact_keep_cv_runs_equal_truncated_objective_runs():
  """Exact-gradient maxrl_keep_cv at N trains exactly like J^(N) (to float tolerance)."""
  ns = (2, 16, 256)
  c = _small_config(num_prompts=32, num_steps=40, chunk_steps=20,
                    **{"sampled.estimators": (), "exact.estimators": ("maxrl_keep_cv", "maxrl"),
                       "sampled.num_rollouts": ns, "figures.num_rollouts": 2,
                       "exact.truncations": ns + (math.inf,)})
  c.tabular.learning_rate = 1.0
  out = train.train(c, None, progress=False)
  for policy, grid in out["grids"].items():
    curves, state = out["curves"][policy], out["state"][policy]
    trunc_params = state["exact_truncated"]["params"]
    for n in ns:
      keep = curves[f"exact_estimator/n{n}"][:, 0]
      ref = curves["exact_truncated"][:, grid.truncations.index(float(n))]
      np.testing.assert_allclose(keep, ref, rtol=2e-4, atol=2e-5, err_msg=f"{policy} N={n}")
      # ... and the two parameter vectors agree, while maxrl (= J^(N-1)) moves differently.
      keep_p = jax.tree.map(lambda x: x[0], state["exact_estimator"][f"n{n}"]["params"])
      ref_p = jax.tree.map(lambda x: x[grid.truncations.index(float(n))], trunc_params)
      logits_keep = np.asarray(grid.policy.logits(keep_p))
      np.testing.assert_allclose(logits_keep, np.asarray(grid.policy.logits(ref_p)),
                                 rtol=2e-4, atol=2e-4)
      if n == 2:  # maxrl at N = 2 follows J^(1) (RL), visibly not J^(2).
        maxrl_final = curves[f"exact_estimator/n{n}"][-1, 1, 0]
        assert abs(maxrl_final - ref[-1, 0]) > 1e-2, (policy, n, maxrl_final, ref[-1, 0])
      # The trajectory exercised the expected_weight path: float64 theory at its pass rates.
      p_final = np.asarray(jax.nn.sigmoid(grid.policy.logits(keep_p)), np.float64)
      np.testing.assert_allclose(theory.expected_weight("maxrl_keep_cv", n, p_final),
                                 theory.truncated_weight(p_final, n), rtol=1e-9)
      table = exact.estimator_table("maxrl_keep_cv", n).device()
      w = exact.weight_from_logit_coefficient(
          jnp.asarray(logits_keep), exact.expected_logit_coefficient(jnp.asarray(logits_keep),
                                                                     table))
      np.testing.assert_allclose(np.asarray(w, np.float64),
                                 theory.expected_weight("maxrl_keep_cv", n, p_final), rtol=2e-4)


def test_larger_truncation_never_lowers_final_mean_log_p_tabular():
  ts = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, math.inf)
  c = _small_config(num_prompts=64, num_steps=100, chunk_steps=50, policies=("tabular",),
                    **{"sampled.estimators": (), "exact.estimators": (),
                       "exact.truncations": ts})
  out = train.train(c, None, progress=False)
  curves = out["curves"]["tabular"]
  final = curves["exact_truncated"][-1, :, 0]  # mean log p, T ascending
  assert np.all(np.diff(final) >= -1e-6), final
  assert final[-1] - final[0] > 1.0  # ML is far ahead of RL on this problem
  # Per prompt too: every prompt's final pass rate is non-decreasing in T.
  logits = np.asarray(out["state"]["tabular"]["exact_truncated"]["params"]["logits"])
  assert np.all(np.diff(logits, axis=0) >= -1e-5)
  summary = analysis.summarize(c, out["grids"], out["curves"])
  assert summary["policies"]["tabular"]["checks"]["exact_truncated_monotone_in_T"]


def test_metrics_match_reference_pass_at_k():
  logits = jnp.asarray([-9.0, -3.0, 0.5, 2.0])
  hard = jnp.asarray([True, False, False, False])
  vec = np.asarray(bernoulli_metrics.policy_metrics(logits, hard, (1, 8, 64)))
  p = np.asarray(jax.nn.sigmoid(logits), np.float64)
  np.testing.assert_allclose(vec[0], np.mean(np.log(p)), rtol=1e-5)
  np.testing.assert_allclose(vec[1], np.mean(p), rtol=1e-5)
  for j, k in enumerate((1, 8, 64)):
    np.testing.assert_allclose(vec[2 + j], np.mean(metrics_lib.pass_at_k_from_p(p, k)), rtol=1e-5)
  np.testing.assert_allclose(vec[5], 0.5)
  np.testing.assert_allclose(vec[6], np.log(p[0]), rtol=1e-5)


# ------------------------------------------------------------------ driver


def test_config_errors_name_the_field():
  bad = [("chunk_steps", 7, "config.chunk_steps"),
         ("sampled.estimators", ("reinforce", "nope"), "config.sampled.estimators"),
         ("tabular.optimizer", "not_an_optimizer", "config.tabular.optimizer"),
         ("figures.num_rollouts", 3, "config.figures.num_rollouts"),
         ("exact.truncations", (0,), "config.exact.truncations")]
  for key, value, field in bad:
    c = _small_config(**{key: value})
    with pytest.raises(ConfigError) as err:
      validation.validate(c)
    assert err.value.field == field, (key, err.value)
  for preset in ("smoke", "cpu", "paper"):
    validation.validate(config_lib.get_config(preset))


def test_smoke_preset_end_to_end(tmp_path):
  c = config_lib.get_config("smoke")
  workdir = str(tmp_path / "run")
  summary = experiment.run(c, workdir)
  for name in ("config.json", "metrics.jsonl", "summary.json", "curves.npz", "analysis.npz"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, "checkpoints"))
  assert os.listdir(os.path.join(workdir, "tb"))
  assert len(summary["figures"]) == 6
  for rel in summary["figures"]:
    path = os.path.join(workdir, rel)
    assert os.path.getsize(path) > 10_000, rel
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(l) for l in f]
  assert [l["step"] for l in lines] == [10, 20]
  assert "tabular/exact/ml/mean_log_p" in lines[-1]
  assert "logistic/sampled/maxrl_n4/hardest_decile_log_p" in lines[-1]
  # Every run is in the summary with finite final numbers; ML beats RL on the tabular problem.
  tab = summary["policies"]["tabular"]
  n_runs = len(c.sampled.num_rollouts) * (len(c.sampled.estimators) + len(c.exact.estimators))
  assert len(tab["runs"]) == n_runs + len(c.exact.truncations)
  assert all(np.isfinite(v) for r in tab["runs"] for v in r["final"].values())
  by_t = tab["checks"]["exact_truncated_final_mean_log_p_by_T"]
  assert by_t["ml"] > by_t["T1"]
  # A second call finds the complete summary and returns it without training.
  again = experiment.run(c, workdir)
  assert again == json.load(open(os.path.join(workdir, "summary.json")))
  # The workdir reads back: summary, every curve, the estimator analysis.
  loaded = analysis.load(workdir)
  assert loaded["summary"] == again
  assert set(loaded["curves"]) == set(c.policies)
  assert loaded["curves"]["tabular"]["exact_truncated"].shape == (
      c.num_steps + 1, len(c.exact.truncations), len(bernoulli_metrics.metric_names(c)))
  assert set(loaded["analysis"]) >= {"weight_exact", "variance_exact", "estimators"}


def test_chunk_function_compiles_once():
  c = _small_config(num_prompts=8, num_steps=30, chunk_steps=10, policies=("tabular",),
                    **{"sampled.num_rollouts": (2,), "figures.num_rollouts": 2,
                       "sampled.estimators": ("maxrl", "grpo"), "exact.estimators": ("maxrl",),
                       "exact.truncations": (1, math.inf)})
  pg = steps_lib.make_grids(c)["tabular"]
  chunk = pg.make_chunk_fn()
  state = pg.init_state()
  for start in (0, 10, 20):
    state, mets = chunk(state, jnp.asarray(start, jnp.int32))
  assert chunk._cache_size() == 1  # pylint: disable=protected-access
  assert mets["sampled/n2"].shape == (10, 2, c.sampled.num_seeds,
                                      len(bernoulli_metrics.metric_names(c)))


def test_resume_from_checkpoint_is_exact(tmp_path):
  """A run killed after its step-10 checkpoint resumes there and ends bit-identically."""
  import shutil  # pylint: disable=g-import-not-at-top
  c = _small_config(num_prompts=8, num_steps=20, chunk_steps=10, checkpoint_every=10,
                    policies=("tabular",),
                    **{"sampled.num_rollouts": (2, 4), "figures.num_rollouts": 2,
                       "sampled.estimators": ("maxrl", "grpo"), "exact.estimators": ("maxrl",),
                       "exact.truncations": (1, math.inf)})
  reference = train.train(c, None, progress=False)["curves"]["tabular"]
  workdir = str(tmp_path / "run")
  train.train(c, workdir, progress=False)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "20"))
  os.remove(os.path.join(workdir, "summary.json"))
  resumed = train.train(c, workdir, progress=False)["curves"]["tabular"]
  for key, value in reference.items():
    np.testing.assert_array_equal(resumed[key], value, err_msg=key)
  steps = [json.loads(l)["step"] for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert steps == [10, 20, 20]  # the resumed run logged step 20 again
