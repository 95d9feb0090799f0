"""The ImageNet presets' options (paper text vs the authors' code), config validation,
the validation transform's arithmetic and the initialisations."""

import jax
import numpy as np
import pytest
import tensorflow as tf

from experiments.imagenet import config as config_lib
from experiments.imagenet import input_pipeline
from experiments.imagenet import steps
from experiments.imagenet import validation
from maxrl_jax.train import mesh as mesh_lib
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
    ("seed", -1, r"config\.seed"),
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
  with pytest.raises(ConfigError, match=r"config\.estimators\.maxrl: eps"):
    validation.validate(c, mesh)


def test_run_config_takes_its_estimators_options():
  c = config_lib.get_config("paper")
  rc = steps.run_config(c, c.runs[-1])
  assert rc.run.objective == "grpo" and rc.run.options.to_dict() == {
      "std": "population", "eps": 1e-6}
  assert steps.run_config(c, c.runs[0]).run.options.to_dict() == {}


def test_eval_geometry_crop_arithmetic():
  geo = lambda h, w, s=224, t="resize256_crop224": tuple(
      int(x) for x in input_pipeline.eval_geometry(h, w, s, t))
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
    out = input_pipeline._eval_transform(image, 224, transform)  # pylint: disable=protected-access
    assert out.shape == (224, 224, 3) and out.dtype == tf.uint8
  # A centre crop of an image already at 256x256 copies its pixels.
  image = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
  out = input_pipeline._eval_transform(tf.constant(image), 224, "resize256_crop224")  # pylint: disable=protected-access
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
