"""`sklearn_digits`: scikit-learn's 8x8 handwritten digits as a tfds dataset (small, REAL data).

1,797 grayscale images of the digits 0-9 (UCI optical recognition of handwritten digits, as
shipped inside scikit-learn, so nothing is downloaded). Pixel values 0..16 are scaled to uint8
0..255 (``x * 255 / 16``) and replicated to 3 channels so the same RGB models apply. The
fixed split (seeded permutation) puts 1,497 images in ``train`` and 300 in ``validation``.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

NUM_VALIDATION = 300


def load_arrays(split: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images ``[n, 8, 8, 3]`` and int64 labels ``[n]`` of one split."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
  images = np.repeat(images[..., None], 3, axis=-1)
  labels = digits.target.astype(np.int64)
  order = np.random.default_rng(seed).permutation(len(labels))
  idx = order[NUM_VALIDATION:] if split == "train" else order[:NUM_VALIDATION]
  return images[idx], labels[idx]


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's handwritten digits (8x8, 10 classes), RGB uint8."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  # Nothing is downloaded. (Also sidesteps tfds' checksum-file lookup, which needs the
  # `importlib_resources` backport that tfds 4.9 does not declare for Python >= 3.9.)
  url_infos = None

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="scikit-learn's 8x8 handwritten digits (real data), replicated to RGB.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 3)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples("train"),
            "validation": self._generate_examples("validation")}

  def _generate_examples(self, split: str):
    images, labels = load_arrays(split)
    for i in range(len(labels)):
      yield i, {"image": images[i], "label": int(labels[i])}
