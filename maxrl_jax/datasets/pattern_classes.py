"""`pattern_classes`: a GENERATED many-class image dataset (synthetic; not ImageNet).

Each class ``c`` owns a fixed random colour pattern: a ``grid x grid x 3`` array of uniform
values in [0, 1], bilinearly upsampled to ``image_size x image_size``. An image of class ``c``
is that pattern after, independently per image,

* a random translation by up to ``jitter`` pixels in each direction (reflect padding),
* a random contrast factor in ``[1 - contrast, 1 + contrast]`` around the pattern mean and a
  random brightness offset in ``[-brightness, brightness]``,
* i.i.d. Gaussian pixel noise with standard deviation ``noise``,

mapped to uint8 ``[0, 255]``. Everything is a deterministic function of ``seed``, so the
dataset is identical wherever it is generated. With many classes (hundreds to a thousand),
the uniform initial policy has pass rate ``1/num_classes`` and a classifier has to learn many
overlapping templates under noise and shifts: the CPU stand-in for the paper's ImageNet
experiment. Its size is set by a `PatternClassesConfig` (a tfds BuilderConfig), e.g.

  builder = tfds.builder("pattern_classes", config=make_config(num_classes=256, image_size=16))
  builder.download_and_prepare()
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds


@dataclasses.dataclass(eq=False)
class PatternClassesConfig(tfds.core.BuilderConfig):
  """Size and difficulty of a generated `pattern_classes` dataset."""

  num_classes: int = 1000
  image_size: int = 16
  grid: int = 4
  train_per_class: int = 40
  validation_per_class: int = 8
  jitter: int = 2
  contrast: float = 0.3
  brightness: float = 0.1
  noise: float = 0.15
  seed: int = 0


def make_config(num_classes: int = 1000, image_size: int = 16, grid: int = 4,
                train_per_class: int = 40, validation_per_class: int = 8, jitter: int = 2,
                contrast: float = 0.3, brightness: float = 0.1, noise: float = 0.15,
                seed: int = 0) -> PatternClassesConfig:
  """A `PatternClassesConfig` whose name encodes every parameter (one cache dir per variant)."""
  name = (f"c{num_classes}_s{image_size}_g{grid}_n{train_per_class}v{validation_per_class}"
          f"_j{jitter}_c{contrast:g}_b{brightness:g}_z{noise:g}_seed{seed}").replace(".", "p")
  if name in _BUILTIN_CONFIGS:  # tfds rejects an equal-named copy of a registered config.
    return _BUILTIN_CONFIGS[name]
  return PatternClassesConfig(
      name=name, version="1.0.0",
      description=(f"{num_classes} generated classes of {image_size}x{image_size} RGB images "
                   f"({train_per_class} train / {validation_per_class} validation per class)."),
      num_classes=num_classes, image_size=image_size, grid=grid,
      train_per_class=train_per_class, validation_per_class=validation_per_class,
      jitter=jitter, contrast=contrast, brightness=brightness, noise=noise, seed=seed)


_BUILTIN_CONFIGS: dict[str, PatternClassesConfig] = {}
for _kwargs in (dict(num_classes=1000, image_size=16), dict(num_classes=256, image_size=16),
                dict(num_classes=100, image_size=32, train_per_class=100,
                     validation_per_class=20)):
  _config = make_config(**_kwargs)
  _BUILTIN_CONFIGS[_config.name] = _config


def _bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
  """``[out_size, in_size]`` matrix of bilinear (align-corners) interpolation weights."""
  pos = np.linspace(0.0, in_size - 1.0, out_size)
  lo = np.clip(np.floor(pos).astype(int), 0, max(in_size - 2, 0))
  frac = pos - lo
  m = np.zeros((out_size, in_size))
  m[np.arange(out_size), lo] += 1.0 - frac
  m[np.arange(out_size), np.minimum(lo + 1, in_size - 1)] += frac
  return m


def class_patterns(config: PatternClassesConfig) -> np.ndarray:
  """The ``[num_classes, S, S, 3]`` float patterns in [0, 1] (deterministic in ``seed``)."""
  rng = np.random.default_rng([config.seed, 0])
  low = rng.uniform(size=(config.num_classes, config.grid, config.grid, 3))
  m = _bilinear_matrix(config.image_size, config.grid)
  return np.einsum("sg,cghk,th->cstk", m, low, m)


def generate_images(config: PatternClassesConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
  """All images (uint8 ``[n, S, S, 3]``) and labels (int64 ``[n]``) of one split, in order."""
  per_class = {"train": config.train_per_class, "validation": config.validation_per_class}[split]
  patterns = class_patterns(config)
  rng = np.random.default_rng([config.seed, 1 if split == "train" else 2])
  n = config.num_classes * per_class
  labels = rng.permutation(np.repeat(np.arange(config.num_classes), per_class))
  s, j = config.image_size, config.jitter
  base = patterns[labels]
  padded = np.pad(base, ((0, 0), (j, j), (j, j), (0, 0)), mode="reflect") if j else base
  dy = rng.integers(0, 2 * j + 1, size=n)
  dx = rng.integers(0, 2 * j + 1, size=n)
  rows = dy[:, None] + np.arange(s)[None, :]
  cols = dx[:, None] + np.arange(s)[None, :]
  shifted = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
  mean = shifted.mean(axis=(1, 2, 3), keepdims=True)
  factor = rng.uniform(1.0 - config.contrast, 1.0 + config.contrast, size=(n, 1, 1, 1))
  offset = rng.uniform(-config.brightness, config.brightness, size=(n, 1, 1, 1))
  images = mean + factor * (shifted - mean) + offset
  images = images + config.noise * rng.standard_normal(images.shape)
  images = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
  return images, labels.astype(np.int64)


class PatternClasses(tfds.core.GeneratorBasedBuilder):
  """Generated many-class image classification (per-class random patterns + noise + jitter)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  # Nothing is downloaded. (Also sidesteps tfds' checksum-file lookup, which needs the
  # `importlib_resources` backport that tfds 4.9 does not declare for Python >= 3.9.)
  url_infos = None
  BUILDER_CONFIGS = list(_BUILTIN_CONFIGS.values())

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    return self.dataset_info_from_configs(
        description=("GENERATED data (not ImageNet): per-class random colour patterns with "
                     "random translation, contrast, brightness and Gaussian noise."),
        features=tfds.features.FeaturesDict({
            # Raw uint8 tensors: no per-image PNG encoding, so generation takes seconds.
            "image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=self.builder_config.num_classes),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {"train": self._generate_examples("train"),
            "validation": self._generate_examples("validation")}

  def _generate_examples(self, split: str):
    images, labels = generate_images(self.builder_config, split)
    for i in range(len(labels)):
      yield i, {"image": images[i], "label": int(labels[i])}
