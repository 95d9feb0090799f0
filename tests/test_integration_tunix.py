"""maxrl_jax.integrations.tunix: the (rewards, num_generations) -> advantages adapter.

The first part needs only JAX (default suite). The tests marked ``tunix`` need google-tunix (the
``tunix`` extra) and are skipped with a reason without it; they call tunix's own registry lookup
and run tunix's GRPO learner for two steps on its toy model with MaxRL advantages (also marked
``slow``): ``pytest -m tunix tests/test_integration_tunix.py`` in an environment with the extra.
"""

import os
import re
import subprocess
import sys
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maxrl_jax import estimators
from maxrl_jax.integrations import tunix as maxrl_tunix

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# tunix's layout: B = 4 prompts times G = 4 rollouts, flat, each prompt's rollouts contiguous;
# float64 NumPy, as tunix's reward manager returns them.
G = 4
REWARDS = np.array([1, 0, 0, 0,  1, 1, 0, 0,  0, 0, 0, 0,  1, 1, 1, 1], dtype=np.float64)
# MaxRL (paper Algorithm 1) by hand: A_i = N r_i / K - 1 for K > 0, 0 for K = 0.
#   K = 1: 4/1 - 1 = 3 for the success, -1 for each failure;
#   K = 2: 4/2 - 1 = 1 for each success, -1 for each failure;
#   K = 0: 0;  K = 4: 4/4 - 1 = 0.
MAXRL_EXPECTED = np.array([3, -1, -1, -1,  1, 1, -1, -1,  0, 0, 0, 0,  0, 0, 0, 0],
                          dtype=np.float32)

# Every method tunix can call, with options that are valid for G = 4.
CASES = [
    ("reinforce", {}), ("mean_baseline", {}), ("rloo", {}), ("grpo", {}),
    ("grpo", {"std": "sample"}), ("maxrl", {}), ("maxrl", {"eps": 1e-6}), ("maxrl_keep_cv", {}),
    ("maxrl_no_cv", {}), ("maxrl_truncated", {"truncation": 2}),
    ("maxrl_maclaurin", {"truncation": 3}), ("pkpo", {"k": 2}),
    ("pkpo", {"k": 3, "variant": "subset"}),
]


def test_maxrl_hand_computed_values():
  adv = maxrl_tunix.tunix_advantages(REWARDS, G, "maxrl")
  assert isinstance(adv, np.ndarray) and adv.shape == (16,) and adv.dtype == np.float32
  np.testing.assert_array_equal(adv, MAXRL_EXPECTED)
  # The registered callable is called by keyword, exactly as tunix's learners call it.
  est = maxrl_tunix.TunixAdvantageEstimator("maxrl")
  np.testing.assert_array_equal(est(rewards=REWARDS, num_generations=G), MAXRL_EXPECTED)


@pytest.mark.parametrize("method,options", CASES)
def test_equals_advantages_flat(method, options):
  rng = np.random.default_rng(0)
  binary = rng.integers(0, 2, size=(24,)).astype(np.float64)
  rewards = binary if estimators.REWARD_DOMAIN[method] == "binary" else rng.normal(size=24)
  for g in (2, 4, 6):
    if options.get("truncation", 0) > g or options.get("k", 0) > g:
      continue
    got = maxrl_tunix.tunix_advantages(rewards, g, method, **options)
    want = np.asarray(estimators.advantages_flat(jnp.asarray(rewards), g, method, **options))
    assert got.shape == rewards.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_grpo_sample_std_matches_tunix_formula():
  # tunix's own "grpo" estimator: (r - mean) / (std(ddof=1) + 1e-6) per group.
  rewards = np.array([1.0, 0.0, 0.0, 0.0, 0.2, 0.9, 0.4, 0.4])
  groups = rewards.reshape(-1, G)
  want = ((groups - groups.mean(-1, keepdims=True))
          / (groups.std(-1, ddof=1, keepdims=True) + 1e-6)).reshape(-1)
  got = maxrl_tunix.tunix_advantages(rewards, G, "grpo", std="sample")
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got[:4], [1.5, -0.5, -0.5, -0.5], rtol=1e-5)
  # The default (population std, the paper's code) differs: [1, 0, 0, 0] -> sqrt(3) = 1.732.
  pop = maxrl_tunix.tunix_advantages(rewards, G, "grpo")
  np.testing.assert_allclose(pop[0], np.sqrt(3.0), rtol=1e-5)


def test_input_layouts():
  want = MAXRL_EXPECTED
  np.testing.assert_array_equal(maxrl_tunix.tunix_advantages(jnp.asarray(REWARDS), G), want)
  np.testing.assert_array_equal(maxrl_tunix.tunix_advantages(REWARDS.tolist(), G), want)
  np.testing.assert_array_equal(maxrl_tunix.tunix_advantages(REWARDS.astype(bool), G), want)
  # [1, B*G], the 2-D layout of tunix's own estimator tests.
  np.testing.assert_array_equal(maxrl_tunix.tunix_advantages(REWARDS[None], G), want[None])


def test_reward_domain_check_and_binarize_pass_through():
  # tunix calls the estimator on concrete rewards, so maxrl's binary-domain check runs there.
  partial = np.array([1.0, 0.3, 0.8, 0.0])
  with pytest.raises(ValueError, match=r"^rewards: method 'maxrl' needs rewards in \{0, 1\}"):
    maxrl_tunix.tunix_advantages(partial, G, "maxrl")
  np.testing.assert_array_equal(maxrl_tunix.tunix_advantages(partial, G, "maxrl", binarize=0.5),
                                [1, -1, 1, -1])


def test_errors_name_the_argument():
  with pytest.raises(ValueError, match=r"^method: 'dsgrpo' needs each rollout's log-prob"):
    maxrl_tunix.TunixAdvantageEstimator("dsgrpo")
  with pytest.raises(ValueError, match=r"^truncation: maxrl_truncated needs"):
    maxrl_tunix.TunixAdvantageEstimator("maxrl_truncated")
  with pytest.raises(ValueError, match=r"^num_generations: must be an int >= 1, got 0"):
    maxrl_tunix.tunix_advantages(REWARDS, 0)
  with pytest.raises(ValueError, match=r"^rewards: .* divisible by num_generations = 5"):
    maxrl_tunix.tunix_advantages(REWARDS, 5)
  with pytest.raises(ValueError, match=r"^k: must satisfy 1 <= k <= N = 4, got 16"):
    maxrl_tunix.tunix_advantages(REWARDS, G, "pkpo")   # default k = 16 > num_generations
  with pytest.raises(ValueError, match=r"^std:"):
    maxrl_tunix.TunixAdvantageEstimator("grpo", std="ddof1")


def test_register_validates_before_importing_tunix():
  with pytest.raises(ValueError, match=r"^maxrl_x: not an estimator"):
    maxrl_tunix.register(maxrl_x={})
  with pytest.raises(ValueError, match=r"^grpo: options must be a dict"):
    maxrl_tunix.register(grpo="sample")
  with pytest.raises(ValueError, match=r"^methods: unknown estimator 'maxrll'"):
    maxrl_tunix.register(methods=["maxrll"])
  with pytest.raises(ValueError, match=r"^pkpo: options given for an estimator not in"):
    maxrl_tunix.register(methods="maxrl", pkpo={"k": 2})
  with pytest.raises(ValueError, match=r"^method: 'dsgrpo' needs"):
    maxrl_tunix.register(dsgrpo={})
  with pytest.raises(ValueError, match=r"^prefix: must be a non-empty str"):
    maxrl_tunix.register(prefix="")


def test_register_without_tunix_says_how_to_install(monkeypatch):
  for name in ("tunix", "tunix.rl", "tunix.rl.function_registry"):
    monkeypatch.setitem(sys.modules, name, None)   # `import tunix...` now raises ImportError
  with pytest.raises(ImportError, match=r"pip install 'maxrl_jax\[tunix\]'"):
    maxrl_tunix.register()


def test_import_does_not_import_tunix_and_extra_is_declared():
  code = ("import sys, maxrl_jax, maxrl_jax.integrations.tunix\n"
          "assert 'tunix' not in sys.modules, 'tunix imported'\n")
  res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert res.returncode == 0, res.stderr[-2000:]
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    extras = tomllib.load(f)["project"]["optional-dependencies"]
  assert extras["tunix"] == [maxrl_tunix.TUNIX_REQUIREMENT]


# --------------------------------------------------------------------------------------------
# With google-tunix installed (the `tunix` extra).


@pytest.fixture(name="function_registry")
def _function_registry():
  try:
    import tunix  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError as err:
    pytest.skip(f"google-tunix is not installed ({err}); pip install 'maxrl_jax[tunix]'")
  from tunix.rl import function_registry  # pylint: disable=import-outside-toplevel
  return function_registry


@pytest.mark.tunix
def test_tunix_registry_lookup(function_registry):
  from tunix.rl.grpo import grpo_learner  # pylint: disable=import-outside-toplevel
  names = maxrl_tunix.register()
  assert names == tuple(f"maxrl_jax/{m}" for m in (
      "reinforce", "mean_baseline", "rloo", "grpo", "maxrl", "maxrl_keep_cv", "maxrl_no_cv",
      "pkpo"))
  est = function_registry.get_advantage_estimator("maxrl_jax/maxrl")
  np.testing.assert_array_equal(est(rewards=REWARDS, num_generations=G), MAXRL_EXPECTED)
  # Idempotent: the same objects stay registered.
  assert maxrl_tunix.register() == names
  assert function_registry.get_advantage_estimator("maxrl_jax/maxrl") is est
  # Options, another prefix; tunix's own "grpo" (sample std) gives the same values.
  assert maxrl_tunix.register(prefix="maxrl_jax_sample", methods="grpo",
                              grpo={"std": "sample"}) == ("maxrl_jax_sample/grpo",)
  rewards = np.random.default_rng(1).normal(size=(4 * G,))
  np.testing.assert_allclose(
      function_registry.get_advantage_estimator("maxrl_jax_sample/grpo")(
          rewards=rewards, num_generations=G),
      function_registry.get_advantage_estimator("grpo")(rewards=rewards, num_generations=G),
      rtol=1e-5, atol=1e-6)
  assert maxrl_tunix.register(methods="maxrl_truncated", maxrl_truncated={"truncation": 2}) == (
      "maxrl_jax/maxrl_truncated",)
  # tunix's GRPO config takes the registered name.
  config = grpo_learner.GRPOConfig(num_generations=G, advantage_estimator="maxrl_jax/maxrl")
  assert config.advantage_estimator == "maxrl_jax/maxrl"


@pytest.mark.tunix
def test_readme_tunix_section_runs(function_registry, capsys):
  text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
  section = text.split("\n## Use with tunix\n", 1)[1].split("\n## ", 1)[0]
  (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
  exec(compile(code, "README.md", "exec"), {})  # pylint: disable=exec-used
  assert "'maxrl_jax/maxrl'" in capsys.readouterr().out
  est = function_registry.get_advantage_estimator("maxrl_jax/maxrl")
  np.testing.assert_array_equal(est(rewards=REWARDS, num_generations=G), MAXRL_EXPECTED)


@pytest.mark.tunix
@pytest.mark.slow   # 12-33 s on 2 CPU cores; `pytest -m tunix` selects it
def test_tunix_grpo_learner_two_steps_with_maxrl(function_registry):
  """tunix's GRPOLearner, its toy transformer and mock vocabulary, 2 steps, MaxRL advantages."""
  del function_registry
  # pylint: disable=import-outside-toplevel
  from flax import nnx
  from grain import python as grain
  import optax
  from tunix.rl import rl_cluster as rl_cluster_lib
  from tunix.rl.grpo import grpo_learner
  from tunix.rl.rollout import base_rollout
  from tunix.tests import test_common as tunix_toys
  # pylint: enable=import-outside-toplevel
  maxrl_tunix.register(methods="maxrl")
  pattern = REWARDS[:8]   # two prompts per step: K = 1 and K = 2 of G = 4
  seen = []

  def reward_fn(prompts, completions, **kwargs):
    del prompts, kwargs
    return [float(pattern[i % 8]) for i in range(len(completions))]

  def record(prompts, completions, advantages, rewards, **kwargs):
    del prompts, completions, kwargs
    seen.append((np.asarray(rewards), np.asarray(advantages)))
    return {}

  vocab = tunix_toys.MockVocab()
  model_config = tunix_toys.ModelConfig(vocab_size=vocab.GetPieceSize())
  actor = tunix_toys.ToyTransformer(config=model_config, rngs=nnx.Rngs(0))
  reference = tunix_toys.ToyTransformer(config=model_config, rngs=nnx.Rngs(0))
  before = jax.tree.map(jnp.copy, nnx.state(actor, nnx.Param))
  mesh = jax.make_mesh((1, 1), ("fsdp", "tp"), devices=jax.devices()[:1],
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)
  roles = (rl_cluster_lib.Role.ACTOR, rl_cluster_lib.Role.REFERENCE, rl_cluster_lib.Role.ROLLOUT)
  cluster = rl_cluster_lib.RLCluster(
      actor=actor, reference=reference, tokenizer=vocab,
      cluster_config=rl_cluster_lib.ClusterConfig(
          role_to_mesh={role: mesh for role in roles}, rollout_engine="vanilla",
          offload_to_cpu=False,
          training_config=rl_cluster_lib.RLTrainingConfig(
              actor_optimizer=optax.sgd(1e-2), eval_every_n_steps=100, max_steps=2),
          rollout_config=base_rollout.RolloutConfig(
              max_tokens_to_generate=8, max_prompt_length=16, kv_cache_size=64)))
  learner = grpo_learner.GRPOLearner(
      rl_cluster=cluster, reward_fns=reward_fn, metric_fns=[record],
      algo_config=grpo_learner.GRPOConfig(num_generations=G, num_iterations=1, beta=0.04,
                                          advantage_estimator="maxrl_jax/maxrl"))
  prompts = ["input string", "hello world", "My name", "hello there"] * 2
  learner.train(grain.MapDataset.source(prompts).batch(2).map(lambda x: {"prompts": x}))

  assert cluster.global_steps == 2
  assert len(seen) == 2
  for rewards, adv in seen:
    np.testing.assert_array_equal(rewards, pattern)
    np.testing.assert_array_equal(adv, MAXRL_EXPECTED[:8])
  # The policy moved (tunix trains a resharded copy of `actor`: read the trainer's model).
  after = nnx.state(cluster.actor_trainer.model, nnx.Param)
  change = max(float(jnp.max(jnp.abs(a - b)))
               for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))
  assert np.isfinite(change) and change > 0
