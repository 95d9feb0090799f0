"""Configurations of the ImageNet binary-reward classification experiment (SPEC section 4.2).

Presets (``--config=experiments/imagenet/config.py:<preset>``):

* ``paper``: the paper's setup on tfds ``imagenet2012`` (manual download, see BUILD_NOTES):
  ResNet-50, 224x224, batch 256, 20 epochs, SGD momentum 0.9 (no Nesterov), lr 0.1, weight
  decay 1e-4, cosine schedule with one epoch of linear warmup; runs: cross-entropy, MaxRL
  N = 16 / 128 / 1024, REINFORCE (mean baseline) N = 1024, GRPO N = 128 / 1024.
* ``cpu``: the same comparison (without GRPO) on the GENERATED ``pattern_classes`` dataset
  (not ImageNet) with a small ResNet, sized to run in about 10 minutes on 2 CPU cores.
* ``smoke``: seconds; used by the tests.

A configuration is one *comparison*: shared data/model/optimiser settings and a list of
``runs``, each ``{name, objective, num_rollouts, options}`` with ``objective`` either
``"cross_entropy"`` or a method of :data:`maxrl_jax.estimators.METHODS` (options are that
method's keyword options, e.g. ``{"std": "population"}`` for grpo).
"""

from __future__ import annotations

import ml_collections


def _run(name: str, objective: str, num_rollouts: int = 1, **options) -> dict:
  return {"name": name, "objective": objective, "num_rollouts": num_rollouts,
          "options": dict(options)}


def _base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.dataset = "imagenet2012"  # or "pattern_classes" (generated), "sklearn_digits" (real).
  c.data.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.data.manual_dir = ml_collections.FieldReference(None, field_type=str)
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.augment = True  # imagenet2012 only: random-resized-crop (0.08, 1) + flip.
  c.data.in_memory = False  # Load whole splits onto the devices (small datasets only).
  c.data.shuffle_buffer = 16_384
  c.data.num_eval_examples = 0  # 0: the whole eval split.
  c.data.num_train_examples = 0  # 0: from the tfds metadata (set only where it is missing).
  # Normalisation on device of the uint8 pixels (ImageNet statistics; [0, 255] scale).
  c.data.mean_rgb = (0.485 * 255, 0.456 * 255, 0.406 * 255)
  c.data.std_rgb = (0.229 * 255, 0.224 * 255, 0.225 * 255)
  # Parameters of the generated dataset (maxrl_jax.datasets.pattern_classes.make_config).
  c.data.pattern = ml_collections.ConfigDict(dict(
      num_classes=1000, image_size=16, grid=4, train_per_class=40, validation_per_class=8,
      jitter=2, contrast=0.3, brightness=0.1, noise=0.15, seed=0))

  c.model = ml_collections.ConfigDict()
  c.model.name = "resnet50"
  c.model.width = 64
  c.model.stem = "imagenet"
  c.model.dtype = "bfloat16"

  c.optim = ml_collections.ConfigDict()
  c.optim.batch_size = 256
  c.optim.num_epochs = 20.0
  c.optim.num_steps = 0  # > 0 overrides num_epochs.
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9
  c.optim.nesterov = False
  c.optim.weight_decay = 1e-4
  c.optim.warmup_epochs = 1.0
  c.optim.warmup_steps = -1  # >= 0 overrides warmup_epochs.

  c.train = ml_collections.ConfigDict()
  c.train.chunk_steps = 50
  # lax.scan over each chunk (one dispatch per chunk). XLA:CPU runs a ResNet step inside a
  # scan ~20x slower than the same step dispatched alone, so the CPU presets turn it off.
  c.train.scan = True
  c.train.eval_every = 2500
  c.train.checkpoint_every = 2500
  c.train.log_every = 50
  c.train.eval_batch_size = 1000
  c.train.max_to_keep = 2
  c.train.async_checkpointing = True
  c.train.prng_impl = "rbg"  # jax.random.key impl ("threefry2x32" also works; slower compiles).
  c.train.search_method = "sort"  # jnp.searchsorted method of the label sampler.
  c.train.prefetch_chunks = 2

  c.eval = ml_collections.ConfigDict()
  c.eval.ks = (1, 2, 4, 8, 16, 32, 64, 128, 256)

  c.gradnorm = ml_collections.ConfigDict()
  c.gradnorm.run = "cross_entropy"  # Run whose final checkpoint run() analyses ("" = none).
  c.gradnorm.batch_size = 8  # Images per vmapped per-example-gradient call.
  c.gradnorm.num_images = 1000
  c.gradnorm.num_rollouts = 131_072
  c.gradnorm.objectives = ("cross_entropy", "maxrl", "grpo", "mean_baseline")

  c.runs = [
      _run("cross_entropy", "cross_entropy"),
      _run("maxrl_n16", "maxrl", 16),
      _run("maxrl_n128", "maxrl", 128),
      _run("maxrl_n1024", "maxrl", 1024),
      _run("reinforce_n1024", "mean_baseline", 1024),
      _run("grpo_n128", "grpo", 128, std="population"),
      _run("grpo_n1024", "grpo", 1024, std="population"),
  ]
  return c


def _paper() -> ml_collections.ConfigDict:
  return _base()


def _cpu() -> ml_collections.ConfigDict:
  c = _base()
  c.data.dataset = "pattern_classes"
  c.data.in_memory = True
  c.data.augment = False
  c.data.pattern.num_classes = 500
  c.data.pattern.image_size = 16
  c.data.pattern.train_per_class = 24
  c.data.pattern.validation_per_class = 4
  c.data.image_size = 16
  c.data.mean_rgb = (127.5, 127.5, 127.5)
  c.data.std_rgb = (64.0, 64.0, 64.0)
  c.model.name = "resnet8"
  c.model.width = 16
  c.model.stem = "small"
  c.model.dtype = "float32"
  c.optim.batch_size = 128
  c.optim.num_steps = 600
  c.optim.warmup_steps = 30
  c.train.chunk_steps = 50
  c.train.eval_every = 100
  c.train.checkpoint_every = 300
  c.train.log_every = 10
  c.train.search_method = "scan"
  c.train.scan = False
  c.gradnorm.num_images = 256
  c.gradnorm.num_rollouts = 16_384
  c.runs = [
      _run("cross_entropy", "cross_entropy"),
      _run("maxrl_n16", "maxrl", 16),
      _run("maxrl_n128", "maxrl", 128),
      _run("maxrl_n1024", "maxrl", 1024),
      _run("reinforce_n1024", "mean_baseline", 1024),
  ]
  return c


def _smoke() -> ml_collections.ConfigDict:
  c = _cpu()
  c.data.pattern.num_classes = 20
  c.data.pattern.image_size = 8
  c.data.pattern.grid = 2
  c.data.pattern.train_per_class = 8
  c.data.pattern.validation_per_class = 2
  c.data.image_size = 8
  c.model.width = 4
  c.optim.batch_size = 16
  c.optim.num_steps = 12
  c.optim.warmup_steps = 2
  c.train.chunk_steps = 4
  c.train.eval_every = 4
  c.train.checkpoint_every = 8
  c.train.log_every = 1
  c.train.eval_batch_size = 16
  c.eval.ks = (1, 2, 4, 8)
  c.gradnorm.num_images = 8
  c.gradnorm.num_rollouts = 256
  c.runs = [
      _run("cross_entropy", "cross_entropy"),
      _run("maxrl_n8", "maxrl", 8),
  ]
  return c


PRESETS = {"paper": _paper, "cpu": _cpu, "smoke": _smoke}


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
  """The named preset (``paper``, ``cpu`` or ``smoke``)."""
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
  config = PRESETS[preset]()
  config.preset = preset  # Names the default workdir, runs/imagenet/<preset>.
  return config
