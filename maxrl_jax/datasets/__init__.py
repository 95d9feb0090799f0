"""tensorflow-datasets builders for the small image-classification sets of the CPU presets.

Importing this package registers two tfds builders (usable with `tfds.builder(name)`):

* ``pattern_classes``: a GENERATED many-class image dataset (per-class random colour patterns
  plus per-image jitter, contrast changes and noise). It is synthetic, not ImageNet, and exists
  so that the ImageNet experiment's question (binary-reward classification from a 1/classes
  initial pass rate) can be studied in minutes on a CPU. See `pattern_classes.py`.
* ``sklearn_digits``: the 8x8 handwritten digits shipped with scikit-learn (1,797 real images,
  10 classes), as a small real dataset. See `sklearn_digits.py`.

The real ImageNet experiment uses tfds' own ``imagenet2012`` builder (manual download).
"""

from maxrl_jax.datasets.pattern_classes import PatternClasses, PatternClassesConfig, make_config
from maxrl_jax.datasets.sklearn_digits import SklearnDigits

__all__ = ["PatternClasses", "PatternClassesConfig", "SklearnDigits", "make_config"]
