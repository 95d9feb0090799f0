"""Seeds, validation mazes and learning rates as sweep axes of the maze driver; determinism;
the two-level bootstrap behind the report's verdicts."""

import json
import os

import jax
import numpy as np
import pytest

from experiments.maze import analysis
from experiments.maze import claims as maze_claims
from experiments.maze import config as maze_config
from experiments.maze import data as maze_data
from experiments.maze import plots
from experiments.maze import runs
from experiments.maze import steps
from experiments.maze import experiment
from experiments.maze import validation
from maxrl_jax import metrics
from maxrl_jax.train.errors import ConfigError


# ----------------------------------------------------------------------------- bootstrap


def test_two_level_bootstrap_hand_values():
  a = np.full((3, 5), 0.25)
  assert metrics.two_level_bootstrap_ci(a) == (0.25, 0.25, 0.25)
  # A constant paired shift is known exactly, whatever mazes and seeds are drawn.
  x = np.random.default_rng(0).random((1, 40))
  d, lo, hi = metrics.two_level_bootstrap_ci(x + 0.1, x)
  assert d == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
  # One seed: the item level alone, the same interval as the plain bootstrap within MC error.
  y = np.random.default_rng(1).random(200)
  m1, lo1, hi1 = metrics.two_level_bootstrap_ci(y, num_resamples=4000)
  m2, lo2, hi2 = metrics.bootstrap_ci(y, num_resamples=4000)
  assert m1 == pytest.approx(float(m2))
  assert abs(lo1 - lo2) < 0.01 and abs(hi1 - hi2) < 0.01
  # Seed-to-seed variation widens the interval: seeds offset by +-0.2 on identical items.
  z = np.stack([y - 0.2, y, y + 0.2])
  _, lo3, hi3 = metrics.two_level_bootstrap_ci(z, num_resamples=4000)
  assert hi3 - lo3 > 2 * (hi1 - lo1)
  assert metrics.two_level_bootstrap_ci(z, seed=3) == metrics.two_level_bootstrap_ci(z, seed=3)


@pytest.mark.parametrize("a,b,match", [
    (np.zeros((2, 3)), np.zeros((2, 4)), "same items"),
    (np.array([[np.nan]]), None, "finite"),
    (np.zeros((0, 3)), None, "both axes"),
])
def test_two_level_bootstrap_errors(a, b, match):
  with pytest.raises(ValueError, match=match):
    metrics.two_level_bootstrap_ci(a, b)


def test_two_level_bootstrap_covers_the_truth():
  """Coverage of the paired difference over 200 simulated experiments (nominal 95%)."""
  rng = np.random.default_rng(7)
  hits = 0
  for t in range(200):
    p = rng.beta(0.5, 0.5, size=64)  # maze difficulty, shared
    a = (rng.binomial(16, np.clip(p + 0.05, 0, 1), size=(2, 64)) / 16)
    b = (rng.binomial(16, p, size=(2, 64)) / 16)
    truth = float(np.mean(np.clip(p + 0.05, 0, 1) - p))
    _, lo, hi = metrics.two_level_bootstrap_ci(a, b, num_resamples=400, seed=t)
    hits += lo <= truth <= hi
  assert hits >= 180  # 95% nominal; the binomial 1% quantile of 200 x 0.95 is 183


# ----------------------------------------------------------------------------- config axes


def test_grid_names_and_run_configs():
  cfg = maze_config.get_config("smoke")
  cfg.sweep.seeds = (0, 3)
  cfg.sweep.learning_rates = (1e-3, 3e-4)
  grid = runs.grid_runs(cfg)
  assert [r.name for r in grid[:4]] == ["maxrl_n2_lr0.001_s0", "maxrl_n2_lr0.001_s3",
                                        "maxrl_n2_lr0.0003_s0", "maxrl_n2_lr0.0003_s3"]
  c = runs.rl_config(cfg, grid[3])
  assert (c.rl.seed, c.rl.learning_rate, c.rl.estimator, c.rl.num_rollouts) == (
      3, 3e-4, "maxrl", 2)
  # One seed and no rate axis: the names of a sweep without seeds (old workdirs resume).
  assert [r.name for r in runs.grid_runs(maze_config.get_config("smoke"))][0] == "maxrl_n2"
  validation.validate(cfg)


@pytest.mark.parametrize("field,value,match", [
    ("sweep.seeds", (0, 0), "config.sweep.seeds"),
    ("sweep.seeds", (), "config.sweep.seeds"),
    ("sweep.sft_seeds", (0, 64), "config.sweep.sft_seeds"),
    ("sweep.learning_rates", (1e-3, -1.0), "config.sweep.learning_rates"),
    ("eval.validation_mazes", 4, "config.eval.validation_mazes"),
    ("eval.num_mazes", 0, "config.eval.num_mazes"),
])
def test_axis_errors_name_the_field(field, value, match):
  cfg = maze_config.get_config("smoke")
  section, name = field.split(".")
  cfg[section][name] = value
  with pytest.raises(ConfigError, match=match):
    validation.validate(cfg)


def test_seed_zero_keeps_the_keys_and_streams():
  cfg = maze_config.get_config("smoke")
  c0 = runs.rl_config(cfg, runs.grid_runs(cfg)[0])
  expected = jax.random.fold_in(jax.random.key(cfg.seed), steps.RL_STREAM)
  assert np.array_equal(jax.random.key_data(steps.rl_key(c0)), jax.random.key_data(expected))
  c1 = runs.rl_config(cfg, runs.grid_runs(cfg)[0]._replace(seed=1))
  assert not np.array_equal(jax.random.key_data(steps.rl_key(c1)),
                            jax.random.key_data(expected))
  task = maze_data.MazeTask.from_config(cfg)
  np.testing.assert_array_equal(task.sft_indices(3, 4), 12 + np.arange(4))
  assert task.sft_indices(0, 4, sft_seed=1)[0] == maze_data.SFT_SEED_STRIDE
  with pytest.raises(ValueError, match="sft_seed"):
    task.sft_indices(0, 4, sft_seed=maze_data.MAX_SFT_SEED + 1)


def test_validation_mazes_follow_the_test_mazes():
  cfg = maze_config.get_config("cpu")
  cfg.maze.num_test, cfg.maze.num_validation = 16, 8
  task = maze_data.MazeTask.from_config(cfg)
  val, test = task.validation_grids(), task.test_grids()
  assert val.shape == (8, 9, 9)
  longer = maze_data.MazeTask.from_config(cfg)
  object.__setattr__(longer, "num_test", 24)
  np.testing.assert_array_equal(longer.test_grids()[16:], val)
  keys = {g.tobytes() for g in test}
  assert not any(g.tobytes() in keys for g in val)
  train = task.train_grids(np.arange(2000))
  assert not {g.tobytes() for g in train} & {g.tobytes() for g in val}


# ----------------------------------------------------------------------------- end to end


def _seeded_smoke():
  cfg = maze_config.get_config("smoke")
  cfg.sft.steps = 30
  cfg.sft.checkpoint_every = 30
  cfg.sweep.estimators = ("maxrl",)
  cfg.sweep.num_rollouts = (2,)
  cfg.sweep.seeds = (0, 1)
  cfg.sweep.sft_seeds = (0, 1)
  return cfg


def _finals(workdir):
  s = analysis.load_sweep(workdir)
  out = {name: (r["summary"]["eval"], r["counts"]["test"][1].tolist())
         for name, r in s["runs"].items()}
  out["sft"] = (s["sft"]["eval"], s["sft_counts"]["test"][1].tolist())
  out["sft_s1"] = s["sft_repeats"][1]["summary"]["eval"]
  return out


def test_seed_axis_sweep_is_deterministic_and_reported(tmp_path):
  """The same sweep twice gives identical numbers (the README's determinism statement); seeds
  and the SFT repeat give different runs; figures, tables and verdicts use the seed axis."""
  cfg = _seeded_smoke()
  first = experiment.run_sweep(cfg, str(tmp_path / "a"))
  second = experiment.run_sweep(_seeded_smoke(), str(tmp_path / "b"))
  assert first["complete"] and second["complete"]
  assert sorted(first["runs"]) == ["maxrl_n2_s0", "maxrl_n2_s1"]
  fa, fb = _finals(str(tmp_path / "a")), _finals(str(tmp_path / "b"))
  assert fa == fb
  assert fa["maxrl_n2_s0"][1] != fa["maxrl_n2_s1"][1] or (
      fa["maxrl_n2_s0"][0] != fa["maxrl_n2_s1"][0])
  sft_a = json.load(open(tmp_path / "a" / "sft" / "summary.json"))
  sft_b = json.load(open(tmp_path / "a" / "sft_s1" / "summary.json"))
  assert sft_a["seed"] == 0 and sft_b["seed"] == 1 and sft_a["eval"] != sft_b["eval"]

  table = open(tmp_path / "a" / "table.md").read()
  assert "| SFT (start) | - | 2 |" in table and "| maxrl | 2 | 2 |" in table
  assert "pass@1 range over seeds" in table
  swept = analysis.load_sweep(str(tmp_path / "a"))
  claims = maze_claims.maze_claims(swept)
  assert claims and all(c[3] in ("shown", "contradicted", "inconclusive") for c in claims)
  assert any("above the SFT start" in c[0] for c in claims)
  text = maze_claims.section(first, str(tmp_path / "a"), str(tmp_path))
  assert "paired two-level bootstrap" in text and "Collapsed runs" in text
  assert os.path.exists(tmp_path / "a" / "figures" / plots.FIG3)
