"""The ImageNet presets' options (paper text vs the authors' code), config validation,
the validation transform's arithmetic and the initialisations."""

import jax
import numpy as np
import pytest
import tensorflow as tf

from experiments.imagenet import config as config_lib
from experiments.imagenet import data as data_lib
from experiments.imagenet import runs as runs_lib
from experiments.imagenet import steps
from experiments.imagenet import validation
from maxrl_jax.train import logs
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train import stage as stage_lib
from maxrl_jax.train.errors import ConfigError

_IMAGENET_TRAIN = 1_281_167


def test_paper_preset_follows_the_authors_code():
  c = config_lib.get_config("paper")
  assert c.data.eval_transform == "resize256_crop224" and c.model.init == "torchvision"
  assert c.model.dtype == "float32" and c.optim.warmup_epochs == 2.0
  assert c.train.eval_every == 1000 and max(c.eval.ks) == 1024
  assert c.analysis.step == 1500 and c.analysis.num_rollouts == 131_072
  assert c.estimators.maxrl.eps == 1e-6
  assert {(r["objective"], r["num_rollouts"]) for r in c.runs if r["objective"] == "grpo"} == {
      ("grpo", 128), ("grpo", 1024)}
  validation.validate(c, mesh_lib.make_mesh(jax.devices()[:1]))


def test_warmup_length_in_steps():
  c = config_lib.get_config("paper")
  per_epoch, total, warmup = steps.schedule_steps(c, _IMAGENET_TRAIN)
  assert per_epoch == _IMAGENET_TRAIN // 256 == 5004
  assert total == 20 * 5004 and warmup == 2 * 5004  # authors' code: 2 * len(train_loader)
  c.optim.warmup_epochs = 1.0  # the paper's text
  assert steps.schedule_steps(c, _IMAGENET_TRAIN)[2] == 5004
  c.optim.warmup_steps = 7  # explicit steps override epochs
  assert steps.schedule_steps(c, _IMAGENET_TRAIN)[2] == 7


@pytest.mark.parametrize("field,value,match", [
    ("seeds", (), r"config\.seeds: must be a non-empty tuple"),
    ("seeds", (0, -1), r"config\.seeds\[1\]: must be >= 0"),
    ("seeds", (0, 0.5), r"config\.seeds\[1\]: must be an integer"),
    ("seeds", (1, 1), r"config\.seeds: seeds must be distinct"),
    ("sweep_learning_rates", (0.1, 0.0), r"config\.sweep_learning_rates\[1\]"),
    ("sweep_learning_rates", (0.1, 0.1), r"config\.sweep_learning_rates: rates must be distinct"),
    ("eval.ks", (1, 0), r"config\.eval\.ks\[1\]"),
    ("analysis.step", 6, r"config\.analysis\.step"),
    ("analysis.runs", ("nope",), r"config\.analysis\.runs\[0\]"),
    ("data.eval_transform", "crop", r"config\.data\.eval_transform"),
    ("model.init", "xavier", r"config\.model\.init"),
    ("optim.learning_rate", 0.0, r"config\.optim\.learning_rate"),
])
def test_invalid_fields_are_named(field, value, match):
  c = config_lib.get_config("smoke")
  section, _, name = field.rpartition(".")
  (c[section] if section else c)[name] = value
  with pytest.raises(ConfigError, match=match):
    validation.validate(c, mesh_lib.make_mesh(jax.devices()[:1]))


def test_the_old_seed_field_is_refused():
  c = config_lib.get_config("smoke")
  c.seed = 0
  with pytest.raises(ConfigError, match=r"config\.seed: replaced by config\.seeds"):
    validation.validate(c, mesh_lib.make_mesh(jax.devices()[:1]))


def test_run_directories_one_seed_keeps_the_run_name_several_add_the_seed():
  c = config_lib.get_config("smoke")
  assert [(t["dir"], t["name"], t["seed"]) for t in runs_lib.trained_runs(c)] == [
      ("cross_entropy", "cross_entropy", 0), ("maxrl_n8", "maxrl_n8", 0)]
  c.seeds = (3, 0)
  assert [t["dir"] for t in runs_lib.trained_runs(c)] == [  # seed by seed, in config order
      "cross_entropy_s3", "maxrl_n8_s3", "cross_entropy_s0", "maxrl_n8_s0"]
  validation.validate(c, mesh_lib.make_mesh(jax.devices()[:1]))
  # A run named like another's directory keeps a directory of its own.
  c.runs = c.runs + [{"name": "maxrl_n8_s0", "objective": "maxrl", "num_rollouts": 8}]
  dirs = [t["dir"] for t in runs_lib.trained_runs(c)]
  assert len(set(dirs)) == len(dirs) == 6


def _old_format_run_config(c, run) -> dict:
  """The run config as written before seeds and sweeps existed (field by field)."""
  d = logs.config_to_dict(c)
  for field in ("runs", "seeds", "sweep_learning_rates"):
    d.pop(field)
  d["seed"] = 0
  d["run"] = {"name": run["name"], "objective": run["objective"],
              "num_rollouts": run["num_rollouts"],
              "options": dict(c.estimators[run["objective"]]) if run["objective"] in
              c.estimators else {}}
  return d


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_seed_zero_run_config_is_unchanged(preset):
  """One seed (0), no sweep: each run's config (hence its training, its resume check and its
  directory) is the one the driver used before seeds existed; a second seed changes only the
  seed and the directory name."""
  c = config_lib.get_config(preset)
  for run, trained in zip(c.runs, runs_lib.trained_runs(c)):
    rc = runs_lib.run_config(c, trained)
    assert trained["dir"] == run["name"]
    assert stage_lib.config_diff(_old_format_run_config(c, run), rc) == []
    assert stage_lib.config_diff(rc, runs_lib.run_config(c, run)) == []  # the old call still works
  single = runs_lib.run_config(c, c.runs[0])
  c.seeds = (0, 1)
  first, second = runs_lib.trained_runs(c)[0], runs_lib.trained_runs(c)[len(c.runs)]
  assert stage_lib.config_diff(runs_lib.run_config(c, first), single) == [
      ("run.name", first["dir"], c.runs[0]["name"])]
  assert [f for f, _, _ in stage_lib.config_diff(single, runs_lib.run_config(c, second))] == [
      "run.name", "seed"]


def test_prng_keys_follow_the_seed():
  c = config_lib.get_config("smoke")
  data = lambda k: np.asarray(jax.random.key_data(k))
  expected = lambda seed, stream: data(jax.random.fold_in(jax.random.key(seed, impl="rbg"),
                                                          stream))
  c.seeds = (0, 5)
  runs = runs_lib.trained_runs(c)
  for stream in range(4):
    np.testing.assert_array_equal(data(steps.prng_key(c, stream)), expected(0, stream))
    np.testing.assert_array_equal(data(steps.prng_key(runs_lib.run_config(c, runs[0]), stream)),
                                  expected(0, stream))
    np.testing.assert_array_equal(data(steps.prng_key(runs_lib.run_config(c, runs[-1]), stream)),
                                  expected(5, stream))


def test_learning_rate_sweep_expands_every_run():
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  c = config_lib.get_config("smoke")
  c.sweep_learning_rates = (0.03, 0.3)
  c.analysis.runs = ("maxrl_n8_lr0.3",)
  validation.validate(c, mesh)
  runs = runs_lib.comparison_runs(c)
  assert [(r["name"], r["base"], r["learning_rate"]) for r in runs] == [
      ("cross_entropy_lr0.03", "cross_entropy", 0.03),
      ("cross_entropy_lr0.3", "cross_entropy", 0.3),
      ("maxrl_n8_lr0.03", "maxrl_n8", 0.03), ("maxrl_n8_lr0.3", "maxrl_n8", 0.3)]
  rcs = [runs_lib.run_config(c, t) for t in runs_lib.trained_runs(c)]
  assert [(rc.run.name, rc.optim.learning_rate) for rc in rcs] == [
      (r["name"], r["learning_rate"]) for r in runs]
  assert all("sweep_learning_rates" not in rc and "seeds" not in rc for rc in rcs)
  c.seeds = (0, 1)
  assert [t["dir"] for t in runs_lib.trained_runs(c)][:2] == [
      "cross_entropy_lr0.03_s0", "cross_entropy_lr0.3_s0"]
  c.analysis.runs = ("maxrl_n8",)  # a name of config.runs, not of the sweep's runs
  with pytest.raises(ConfigError, match=r"config\.analysis\.runs\[0\]"):
    validation.validate(c, mesh)
  c.analysis.runs = ()
  c.sweep_learning_rates = (0.1, 0.1000001)  # two rates, one run name
  with pytest.raises(ConfigError, match=r"config\.sweep_learning_rates: gives repeated run"):
    validation.validate(c, mesh)
  # Without a sweep a run may carry its own learning rate; with one it may not.
  c = config_lib.get_config("smoke")
  c.runs[1]["learning_rate"] = 0.05
  validation.validate(c, mesh)
  assert runs_lib.run_config(c, runs_lib.trained_runs(c)[1]).optim.learning_rate == 0.05
  assert runs_lib.run_config(c, runs_lib.trained_runs(c)[0]).optim.learning_rate == 0.1
  c.runs[1]["learning_rate"] = -1.0
  with pytest.raises(ConfigError, match=r"config\.runs\[1\]\.learning_rate: must be a number"):
    validation.validate(c, mesh)
  c.runs[1]["learning_rate"] = 0.05
  c.sweep_learning_rates = (0.1,)
  with pytest.raises(ConfigError, match=r"config\.runs\[1\]\.learning_rate: .*cannot be"):
    validation.validate(c, mesh)


def test_cpu_long_preset():
  c = config_lib.get_config("cpu_long")
  cpu = config_lib.get_config("cpu")
  validation.validate(c, mesh_lib.make_mesh(jax.devices()[:1]))
  assert c.seeds == (0, 1, 2) and c.optim.num_steps == cpu.optim.num_steps == 1500
  names = [r["name"] for r in c.runs]
  assert names == ["cross_entropy", "maxrl_n16", "maxrl_n128", "maxrl_n1024", "reinforce_n1024",
                   "grpo_n128", "grpo_n1024"]
  # The main job's runs are cpu_long's, with the same settings (its seed 0 trains them alike).
  assert [r for r in c.runs if r["name"] in [r["name"] for r in cpu.runs]] == list(cpu.runs)
  assert {(r["objective"], r["num_rollouts"]) for r in c.runs[-2:]} == {("grpo", 128),
                                                                         ("grpo", 1024)}
  assert "grpo_n1024" in c.analysis.runs and c.analysis.step == cpu.analysis.step == 300
  assert len(runs_lib.trained_runs(c)) == 7 * 3 and runs_lib.trained_runs(c)[-1]["dir"] == "grpo_n1024_s2"
  # Everything else is the cpu comparison's.
  diff = {f for f, _, _ in stage_lib.config_diff(cpu, c)}
  assert diff == {"seeds", "runs", "analysis.runs", "preset"}
  validation.validate_schedule(c, steps.schedule_steps(c, 500 * 24)[1])


@pytest.mark.parametrize("preset,base", [("paper_lr_sweep", "paper"), ("cpu_lr_sweep", "cpu")])
def test_lr_sweep_presets(preset, base):
  c = config_lib.get_config(preset)
  validation.validate(c, mesh_lib.make_mesh(jax.devices()[:1]))
  # Appendix D.2's rates.
  assert c.sweep_learning_rates == (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.7, 1.0)
  assert c.analysis.runs == ()
  names = [r["name"] for r in config_lib.get_config(base).runs]
  assert [r["base"] for r in runs_lib.comparison_runs(c)] == [n for n in names for _ in range(8)]
  diff = {f for f, _, _ in stage_lib.config_diff(config_lib.get_config(base), c)}
  assert diff == {"sweep_learning_rates", "analysis.runs", "preset"}


def test_bad_run_and_estimator_options_are_named():
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  c = config_lib.get_config("smoke")
  c.runs[1]["num_rollouts"] = 0
  with pytest.raises(ConfigError, match=r"config\.runs\[1\]\.num_rollouts"):
    validation.validate(c, mesh)
  c = config_lib.get_config("smoke")
  c.runs[1]["options"] = {"eps": 1e-6}
  with pytest.raises(ConfigError, match=r"config\.runs\[1\]\.options.*config\.estimators"):
    validation.validate(c, mesh)
  c = config_lib.get_config("smoke")
  c.estimators.maxrl.eps = -1.0
  with pytest.raises(ConfigError, match=r"config\.estimators\.maxrl\.eps: "):
    validation.validate(c, mesh)


def test_run_config_takes_its_estimators_options():
  c = config_lib.get_config("paper")
  rc = runs_lib.run_config(c, c.runs[-1])
  assert rc.run.objective == "grpo" and rc.run.options.to_dict() == {
      "std": "population", "eps": 1e-6}
  assert runs_lib.run_config(c, c.runs[0]).run.options.to_dict() == {}


def test_eval_geometry_crop_arithmetic():
  geo = lambda h, w, s=224, t="resize256_crop224": tuple(
      int(x) for x in data_lib.eval_geometry(h, w, s, t))
  assert geo(256, 256) == (256, 256, 16, 16)  # the authors' 256x256 copy: a centre crop
  assert geo(375, 500) == (256, 341, 16, 58)  # shorter side 256, longer int(256 * 500 / 375)
  assert geo(500, 375) == (341, 256, 58, 16)
  assert geo(333, 500) == (256, 384, 16, 80)
  assert geo(16, 16, 8) == (9, 9, 0, 0)  # round(8 * 256 / 224) = 9; round(0.5) = 0
  assert geo(375, 500, 224, "squash224") == (224, 224, 0, 0)


@pytest.mark.parametrize("transform", ["resize256_crop224", "squash224"])
def test_eval_transform_shapes(transform):
  rng = np.random.default_rng(0)
  for h, w in ((375, 500), (500, 333), (224, 224)):
    image = tf.constant(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    out = data_lib._eval_transform(image, 224, transform)  # pylint: disable=protected-access
    assert out.shape == (224, 224, 3) and out.dtype == tf.uint8
  # A centre crop of an image already at 256x256 copies its pixels.
  image = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
  out = data_lib._eval_transform(tf.constant(image), 224, "resize256_crop224")  # pylint: disable=protected-access
  np.testing.assert_array_equal(out.numpy(), image[16:240, 16:240])


def _initial_pass_rates(init):
  c = config_lib.get_config("smoke")
  c.model.init = init
  c.data.image_size = 8
  num_classes = 50
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  model = steps.build_model(c, num_classes)
  tx, _ = steps.make_optimizer(c, 10, 1)
  state = steps.init_state(c, model, tx, mesh)
  images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
  labels = np.arange(16) % num_classes
  probs = jax.nn.softmax(model.apply(state.variables, images, train=False))
  return np.asarray(probs)[np.arange(16), labels], num_classes, state


def test_torchvision_init_is_random_around_uniform_and_zero_init_exactly_uniform():
  p, c, state = _initial_pass_rates("torchvision")
  assert np.std(p) > 1e-4 and abs(np.mean(p) - 1 / c) < 0.5 / c  # random, around 1/C
  assert not np.allclose(p, 1 / c, rtol=1e-4)
  scales = [x for path, x in jax.tree_util.tree_leaves_with_path(state.params)
            if path[-1].key == "scale"]
  assert all(np.all(np.asarray(s) == 1) for s in scales)  # no zero-init of the last BN scale
  bound = 1 / np.sqrt(state.params["head"]["kernel"].shape[0])
  assert np.abs(np.asarray(state.params["head"]["kernel"])).max() <= bound
  p0, c, _ = _initial_pass_rates("zero_init")
  np.testing.assert_allclose(p0, 1 / c, rtol=1e-6)
