"""experiments/common: the seed/run grid, seed statistics, the options schema, the driver
interface."""

import math

import ml_collections
import numpy as np
import pytest

from experiments.common import drivers
from experiments.common import grid
from experiments.common import options
from experiments.common import stats
from maxrl_jax.train.errors import ConfigError


def test_run_names_get_suffixes_only_for_axes_with_several_values():
  assert grid.run_name("maxrl_n16") == "maxrl_n16"
  assert grid.run_name("maxrl_n16", seed=2, with_seed=True) == "maxrl_n16_s2"
  assert grid.run_name("ce", seed=1, learning_rate=0.0003, with_seed=True,
                       with_lr=True) == "ce_lr0.0003_s1"
  assert grid.seeds(None) == (0,) and grid.seeds((3, 1)) == (3, 1)
  runs = [{"name": "a"}, {"name": "b"}]
  assert [r["dir"] for r in grid.expand(runs, (0,))] == ["a", "b"]
  out = grid.expand(runs, (0, 5))
  assert [(r["name"], r["seed"], r["dir"]) for r in out] == [
      ("a", 0, "a_s0"), ("b", 0, "b_s0"), ("a", 5, "a_s5"), ("b", 5, "b_s5")]


def test_seed_statistics():
  st = stats.stats([1.0, 2.0, 4.0])
  assert st["mean"] == pytest.approx(7 / 3) and (st["min"], st["max"]) == (1.0, 4.0)
  assert st["std"] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
  assert stats.stats([3.0])["std"] is None and stats.stats([3.0], ddof=0)["std"] == 0.0
  assert math.isnan(stats.stats([1.0, math.nan])["mean"])  # a diverged seed is not hidden
  assert stats.mean([None, 1.0, 3.0]) == 2.0 and math.isnan(stats.mean([None]))
  f32 = np.asarray([0.1, 0.2], np.float32)
  assert stats.stats(f32)["mean"] == float(np.mean(f32))  # the values' own precision
  mean, low, high = stats.band([[1.0, 5.0], [3.0, 1.0]])
  np.testing.assert_array_equal(mean, [2.0, 3.0])
  np.testing.assert_array_equal(low, [1.0, 1.0])
  np.testing.assert_array_equal(high, [3.0, 5.0])


def test_estimator_options_schema_names_the_field():
  opts = ml_collections.ConfigDict({"pkpo": {"k": "N"}, "grpo": {"std": "sample"}})
  assert options.validate(opts, field="config.x") == {"pkpo": {"k": "N"},
                                                       "grpo": {"std": "sample"}}
  assert options.of(opts, "pkpo", 8, field="config.x") == {"k": 8}
  assert options.of(opts, "maxrl", 8, field="config.x") == {}
  with pytest.raises(ConfigError) as err:
    options.validate({"pkpo": {"k": 9}}, 8, field="config.sampled.options")
  assert err.value.field == "config.sampled.options.pkpo.k"
  with pytest.raises(ConfigError) as err:
    options.validate({"nope": {}}, field="config.estimators")
  assert err.value.field == "config.estimators.nope"


def test_drivers_declare_their_experiments_and_presets():
  exps = drivers.experiments()
  assert list(exps) == ["bernoulli", "imagenet", "maze", "maze_scarce"]
  assert exps["maze_scarce"].driver == "maze"
  assert exps["maze_scarce"].config("smoke").preset == "smoke_scarce"
  assert exps["bernoulli"].config("smoke").preset == "smoke"
  with pytest.raises(ValueError, match="not part of the driver interface"):
    exps["maze"].module("train")
