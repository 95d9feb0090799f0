"""Input pipelines on tensorflow-datasets: streaming ``imagenet2012`` and in-memory small sets.

Two paths, both yielding uint8 images (normalised on device by the model) and int32 labels:

* **Streaming** (``config.data.in_memory = False``; ``imagenet2012``): every process reads its
  own part of the split (``tfds.split_for_jax_process``), shuffles files and examples with a
  seed that depends on the epoch, decodes JPEGs with the paper's augmentation
  (random-resized-crop with area in (0.08, 1) and aspect ratio in (3/4, 4/3) to
  ``image_size``, horizontal flip with p = 0.5; eval: resize to ``image_size``), and batches.
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
                  augment: bool) -> tf.Tensor:
  """JPEG bytes -> uint8 ``[S, S, 3]``: random-resized-crop + flip (stateless, seeded)."""
  if not augment:
    return _decode_eval(image_bytes, image_size)
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


def _decode_eval(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
  """JPEG bytes -> uint8 ``[S, S, 3]``: resize the whole image to ``S x S`` (SPEC 4.2)."""
  image = tf.io.decode_jpeg(image_bytes, channels=3)
  image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


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

  def decode(index, example):
    if jpeg:
      if train:
        ex_seed = tf.stack([tf.constant(seed, tf.int64), index])
        image = _decode_train(example["image"], ex_seed, size, augment)
      else:
        image = _decode_eval(example["image"], size)
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


def eval_batches(builder, config, local_batch: int) -> Iterator[dict[str, np.ndarray]]:
  """This process's part of the eval split, once, in order, batches padded to ``local_batch``.

  Each batch carries ``mask`` (1 for real examples) so padded rows do not count.
  """
  ds = _epoch_dataset(builder, config.data.eval_split, 0, 0, local_batch, config, train=False)
  limit = int(config.data.num_eval_examples)
  seen = 0
  for batch in tfds.as_numpy(ds):
    n = len(batch["label"])
    mask = np.ones((n,), np.float32)
    if limit:
      keep = max(0, min(n, limit // jax_process_count() - seen))
      mask[keep:] = 0.0
    seen += n
    if n < local_batch:
      pad = local_batch - n
      batch = {"image": np.concatenate([batch["image"], np.zeros(
                   (pad,) + batch["image"].shape[1:], np.uint8)]),
               "label": np.concatenate([batch["label"], np.zeros((pad,), np.int32)])}
      mask = np.concatenate([mask, np.zeros((pad,), np.float32)])
    batch["mask"] = mask
    if mask.any():
      yield batch
    if limit and seen * jax_process_count() >= limit:
      return


def jax_process_count() -> int:
  return jax.process_count()


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


def load_split_arrays(builder, split: str, image_size: int,
                      limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """A whole split as uint8 images ``[n, S, S, 3]`` and int32 labels ``[n]`` (in order)."""
  read_config = tfds.ReadConfig(interleave_cycle_length=1)
  encoded = isinstance(builder.info.features["image"], tfds.features.Image)
  decoders = {"image": tfds.decode.SkipDecoding()} if encoded else None
  ds = builder.as_dataset(split=split, shuffle_files=False, read_config=read_config,
                          decoders=decoders)
  jpeg = _is_jpeg_dataset(builder)

  def decode(example):
    image = example["image"]
    if jpeg:
      image = _decode_eval(image, image_size)
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
