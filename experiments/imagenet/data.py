"""Input pipelines on tensorflow-datasets: streaming ``imagenet2012`` and in-memory small sets.

Two paths, both yielding uint8 images (normalised on device by the model) and int32 labels:

* **Streaming** (``config.data.in_memory = False``; ``imagenet2012``): every process reads its
  own part of the split (``tfds.split_for_jax_process``), shuffles files and examples with a
  seed that depends on the epoch, decodes JPEGs with the paper's augmentation
  (random-resized-crop with area in (0.08, 1) and aspect ratio in (3/4, 4/3) to
  ``image_size``, horizontal flip with p = 0.5; eval: ``config.data.eval_transform``, see
  :func:`eval_geometry`), and batches.
  Randomness is stateless per example (seeded by epoch and position), so the stream is a
  deterministic function of the step: a resumed run skips the consumed records of the current
  epoch and continues with exactly the batches it would have seen. Chunks of batches are
  moved to the devices by a background thread (:func:`prefetch_chunks`).
* **In memory** (``config.data.in_memory = True``; the small ``pattern_classes`` and
  ``sklearn_digits``): whole splits are decoded once into arrays; batches are gathered on
  device from an epoch permutation inside the jitted training chunk (see ``train.py``).

For ``imagenet2012`` tfds needs the manually downloaded archives (``ILSVRC2012_img_train.tar``,
``ILSVRC2012_img_val.tar``) in ``config.data.manual_dir`` (default
``<data_dir>/downloads/manual``); ``prepare_dataset`` then builds the TFRecords once.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import maxrl_jax.datasets as maxrl_datasets
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train.errors import ConfigError

# Keep TensorFlow off any accelerator: it only feeds JAX.
tf.config.set_visible_devices([], "GPU")

_CROP_AREA = (0.08, 1.0)
_CROP_ASPECT = (3.0 / 4.0, 4.0 / 3.0)


def get_builder(config) -> tfds.core.DatasetBuilder:
  """The tfds builder of ``config.data.dataset`` (a pattern_classes config is built from
  ``config.data.pattern``)."""
  data = config.data
  if data.dataset == "pattern_classes":
    return tfds.builder("pattern_classes",
                        config=maxrl_datasets.make_config(**data.pattern.to_dict()),
                        data_dir=data.data_dir)
  return tfds.builder(data.dataset, data_dir=data.data_dir)


def prepare_dataset(config) -> tfds.core.DatasetBuilder:
  """Builds the dataset's TFRecords if needed (generation / extraction from manual_dir)."""
  builder = get_builder(config)
  download_config = None
  if config.data.manual_dir:
    download_config = tfds.download.DownloadConfig(manual_dir=config.data.manual_dir)
  if mesh_lib.is_chief():
    builder.download_and_prepare(download_config=download_config)
  return builder


def num_classes(builder: tfds.core.DatasetBuilder) -> int:
  return int(builder.info.features["label"].num_classes)


def num_train_examples(config, builder: tfds.core.DatasetBuilder) -> int:
  """Size of the training split (``config.data.num_train_examples`` overrides the metadata)."""
  if config.data.num_train_examples:
    return int(config.data.num_train_examples)
  splits = builder.info.splits
  if config.data.train_split not in splits:
    raise ConfigError("config.data.num_train_examples",
                      f"tfds has no size for split {config.data.train_split!r} of "
                      f"{builder.name}; set it explicitly")
  return int(splits[config.data.train_split].num_examples)


# ----------------------------------------------------------------------------- augmentation


def _decode_train(image_bytes: tf.Tensor, seed: tf.Tensor, image_size: int,
                  augment: bool, eval_transform: str) -> tf.Tensor:
  """JPEG bytes -> uint8 ``[S, S, 3]``: random-resized-crop + flip (stateless, seeded)."""
  if not augment:
    return _decode_eval(image_bytes, image_size, eval_transform)
  shape = tf.image.extract_jpeg_shape(image_bytes)
  seeds = tf.random.experimental.stateless_split(seed, 2)
  bbox = tf.zeros((1, 0, 4), tf.float32)  # No boxes: crops anywhere in the image.
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=bbox, seed=seeds[0], min_object_covered=0.0,
      aspect_ratio_range=_CROP_ASPECT, area_range=_CROP_AREA, max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  offset_y, offset_x, _ = tf.unstack(begin)
  height, width, _ = tf.unstack(size)
  window = tf.stack([offset_y, offset_x, height, width])
  image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
  image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
  image = tf.image.stateless_random_flip_left_right(image, seeds[1])
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def eval_geometry(height, width, image_size: int, transform: str):
  """``(resize_h, resize_w, top, left)`` of the validation transform of an ``H x W`` image.

  * ``"squash224"`` (the paper's text, appendix D): resize the whole image to ``S x S``
    (``top = left = 0``).
  * ``"resize256_crop224"`` (the authors' code, torchvision ``Resize(256)`` +
    ``CenterCrop(224)``): resize the shorter side to ``R = round(S * 256 / 224)`` (256 for
    ``S = 224``), the longer one to ``int(R * long / short)``, then take the centred ``S x S``
    window at ``top = round((resize_h - S) / 2)``, ``left = round((resize_w - S) / 2)``.

  Works on Python ints and on scalar tensors alike (it is traced inside ``tf.data``).
  """
  if transform == "squash224":
    return image_size, image_size, 0, 0
  if transform != "resize256_crop224":
    raise ConfigError("config.data.eval_transform", f"unknown transform {transform!r}")
  resize = int(round(image_size * 256 / 224))
  h = tf.cast(height, tf.float64)
  w = tf.cast(width, tf.float64)
  short = tf.minimum(h, w)
  new_h = tf.where(h <= w, tf.constant(resize, tf.float64), tf.floor(resize * h / short))
  new_w = tf.where(w < h, tf.constant(resize, tf.float64), tf.floor(resize * w / short))
  top = tf.round((new_h - image_size) / 2.0)
  left = tf.round((new_w - image_size) / 2.0)
  return (tf.cast(new_h, tf.int32), tf.cast(new_w, tf.int32), tf.cast(top, tf.int32),
          tf.cast(left, tf.int32))


def _eval_transform(image: tf.Tensor, image_size: int, transform: str) -> tf.Tensor:
  """A decoded uint8 image -> uint8 ``[S, S, 3]`` by :func:`eval_geometry`."""
  shape = tf.shape(image)
  new_h, new_w, top, left = eval_geometry(shape[0], shape[1], image_size, transform)
  image = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True)
  image = image[top:top + image_size, left:left + image_size]
  image = tf.ensure_shape(image, (image_size, image_size, 3))
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _decode_eval(image_bytes: tf.Tensor, image_size: int, transform: str) -> tf.Tensor:
  """JPEG bytes -> uint8 ``[S, S, 3]`` by the validation transform (:func:`eval_geometry`)."""
  return _eval_transform(tf.io.decode_jpeg(image_bytes, channels=3), image_size, transform)


def _decode_stored(image: tf.Tensor, image_size: int) -> tf.Tensor:
  """An already-decoded uint8 image, resized if the model input size differs."""
  if image.shape[0] == image_size and image.shape[1] == image_size:
    return image
  image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _is_jpeg_dataset(builder) -> bool:
  feature = builder.info.features["image"]
  return getattr(feature, "encoding_format", None) == "jpeg" or builder.name == "imagenet2012"


# ----------------------------------------------------------------------------- streaming


def _epoch_dataset(builder, split: str, epoch: int, skip_examples: int, local_batch: int,
                   config, train: bool) -> tf.data.Dataset:
  """One epoch of this process's part of ``split``: shuffled (train), decoded, batched."""
  seed = int(config.seed) * 1_000_003 + epoch
  jpeg = _is_jpeg_dataset(builder)
  decoders = {"image": tfds.decode.SkipDecoding()} if jpeg else None
  read_config = tfds.ReadConfig(shuffle_seed=seed, interleave_cycle_length=16)
  process_split = tfds.split_for_jax_process(split)
  ds = builder.as_dataset(split=process_split, shuffle_files=train, decoders=decoders,
                          read_config=read_config)
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = 0
  ds = ds.with_options(options)
  if train:
    ds = ds.shuffle(config.data.shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
  ds = ds.enumerate()
  if skip_examples:
    ds = ds.skip(skip_examples)
  size = int(config.data.image_size)
  augment = bool(config.data.augment) and train
  transform = str(config.data.eval_transform)

  def decode(index, example):
    if jpeg:
      if train:
        ex_seed = tf.stack([tf.constant(seed, tf.int64), index])
        image = _decode_train(example["image"], ex_seed, size, augment, transform)
      else:
        image = _decode_eval(example["image"], size, transform)
    else:
      image = _decode_stored(example["image"], size)
    return {"image": image, "label": tf.cast(example["label"], tf.int32)}

  ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(local_batch, drop_remainder=train).prefetch(tf.data.AUTOTUNE)


def train_batches(builder, config, local_batch: int, steps_per_epoch: int,
                  start_step: int) -> Iterator[dict[str, np.ndarray]]:
  """Endless per-process training batches from ``start_step`` on (exact resume)."""
  epoch, offset = divmod(int(start_step), steps_per_epoch)
  while True:
    ds = _epoch_dataset(builder, config.data.train_split, epoch, offset * local_batch,
                        local_batch, config, train=True)
    for batch in tfds.as_numpy(ds.take(steps_per_epoch - offset)):
      yield batch
    epoch, offset = epoch + 1, 0


def eval_split(builder, config) -> tuple[str, int]:
  """``(split, n)``: the eval split (its first ``config.data.num_eval_examples`` if set) and its
  number of examples."""
  split = str(config.data.eval_split)
  limit = int(config.data.num_eval_examples)
  try:
    total = int(builder.info.splits[split].num_examples)
  except KeyError as e:
    if not limit:
      raise ConfigError("config.data.num_eval_examples",
                        f"tfds has no size for split {split!r} of {builder.name}; set it") from e
    total = limit
  if limit and limit < total:
    return f"{split}[:{limit}]", limit
  return split, total


def num_eval_batches(builder, config, local_batch: int) -> int:
  """Eval batches per process: the same on every process (each evaluation is a sequence of
  global jitted calls every process must join). ``tfds.split_for_jax_process`` gives process
  parts whose sizes differ by at most one example, so the largest has ``ceil(n / P)``."""
  _, n = eval_split(builder, config)
  per_process = -(-n // jax.process_count())
  return max(1, -(-per_process // local_batch))


def eval_batches(builder, config, local_batch: int) -> Iterator[dict[str, np.ndarray]]:
  """This process's part of the eval split, once, in order, as exactly
  :func:`num_eval_batches` batches of ``local_batch`` rows on every process.

  Each batch carries ``mask`` (1 for real examples): a short last batch is padded, and a
  process whose part is shorter gets whole padding batches, so no padded row counts.
  """
  split, _ = eval_split(builder, config)
  count = num_eval_batches(builder, config, local_batch)
  ds = _epoch_dataset(builder, split, 0, 0, local_batch, config, train=False)
  size = int(config.data.image_size)
  yielded = 0
  for batch in tfds.as_numpy(ds):
    if yielded == count:
      break
    yield _pad_batch(batch, local_batch)
    yielded += 1
  while yielded < count:
    yield {"image": np.zeros((local_batch, size, size, 3), np.uint8),
           "label": np.zeros((local_batch,), np.int32),
           "mask": np.zeros((local_batch,), np.float32)}
    yielded += 1


def _pad_batch(batch: dict, local_batch: int) -> dict:
  n = len(batch["label"])
  pad = local_batch - n
  mask = np.concatenate([np.ones((n,), np.float32), np.zeros((pad,), np.float32)])
  return {"image": np.concatenate([batch["image"], np.zeros((pad,) + batch["image"].shape[1:],
                                                            np.uint8)]),
          "label": np.concatenate([batch["label"], np.zeros((pad,), np.int32)]),
          "mask": mask}


def prefetch_chunks(batches: Iterator[dict[str, np.ndarray]], mesh, chunk_sizes,
                    buffer_size: int = 2) -> Iterator[Any]:
  """Stacks consecutive batches into chunks ``[n, B, ...]`` and puts them on the devices.

  A background thread assembles each chunk (``host_local_to_global``, batch axis 1) while the
  devices run the previous one. ``chunk_sizes`` is the sequence of chunk lengths ``n``.
  """
  out: queue.Queue = queue.Queue(maxsize=max(1, buffer_size))
  stop = threading.Event()

  def worker():
    try:
      for n in chunk_sizes:
        if stop.is_set():
          return
        local = [next(batches) for _ in range(n)]
        stacked = {k: np.stack([b[k] for b in local]) for k in local[0]}
        out.put(mesh_lib.host_local_to_global(mesh, stacked, batch_axis=1))
    except BaseException as e:  # pylint: disable=broad-except
      out.put(e)
    out.put(None)

  thread = threading.Thread(target=worker, daemon=True)
  thread.start()
  try:
    while True:
      item = out.get()
      if item is None:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()


# ----------------------------------------------------------------------------- in memory


def load_split_arrays(builder, split: str, image_size: int, limit: int = 0,
                      eval_transform: str = "resize256_crop224") -> tuple[np.ndarray, np.ndarray]:
  """A whole split (its first ``limit`` examples if set) as uint8 images ``[n, S, S, 3]`` and
  int32 labels ``[n]`` (in order; JPEGs through the validation transform)."""
  read_config = tfds.ReadConfig(interleave_cycle_length=1)
  encoded = isinstance(builder.info.features["image"], tfds.features.Image)
  decoders = {"image": tfds.decode.SkipDecoding()} if encoded else None
  ds = builder.as_dataset(split=split, shuffle_files=False, read_config=read_config,
                          decoders=decoders)
  jpeg = _is_jpeg_dataset(builder)

  def decode(example):
    image = example["image"]
    if jpeg:
      image = _decode_eval(image, image_size, eval_transform)
    elif encoded:
      image = tf.io.decode_image(image, channels=3, expand_animations=False)
      image = tf.ensure_shape(image, (None, None, 3))
    return image, tf.cast(example["label"], tf.int32)

  if limit:
    ds = ds.take(limit)
  ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(4096)
  images, labels = [], []
  for x, y in tfds.as_numpy(ds):
    images.append(x)
    labels.append(y)
  images = np.concatenate(images)
  if images.shape[1:3] != (image_size, image_size):
    raise ConfigError("config.data.image_size",
                      f"in-memory data has images of size {images.shape[1:3]}, the config says "
                      f"{image_size}; set config.data.image_size to the stored size")
  return images, np.concatenate(labels)
