"""Validation of the ImageNet experiment: data sources, the jitted eval step and its metrics.

Validation (BatchNorm running averages) gives per image ``log pi(y*|x)`` and whether the top
class is right; from these: pass@k = mean ``1 - (1 - pi(y*|x))^k`` computed analytically (the
authors evaluate every 1,000 steps on the 50k validation images; paper section 6.1), top-1
accuracy, mean log-likelihood.

Every evaluation is a sequence of global jitted calls that all processes join, so every process
runs the same number of eval batches (padded, with a mask).
"""

from __future__ import annotations

import functools
import io
from typing import Callable, Sequence

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np

from experiments.imagenet import data as data_lib
from maxrl_jax import metrics as metrics_lib
from maxrl_jax.train import files
from maxrl_jax.train import mesh as mesh_lib

PASS_AT = (1, 128)
FINAL_EVAL_FILE = "final_eval.npz"  # In each run's directory: the final per-image results.


def make_eval_fn(model, mesh) -> Callable:
  """Jitted ``(state, images, labels) -> (log pi(y*|x), correct)`` per example (eval mode)."""
  data_sharding = mesh_lib.batch_sharding(mesh)

  @functools.partial(jax.jit, out_shardings=(data_sharding, data_sharding))
  def evaluate(state, images, labels):
    logits = model.apply(state.variables, images, train=False)
    logp = jax.nn.log_softmax(logits, axis=-1)
    logp_true = jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
    return logp_true, (jnp.argmax(logits, axis=-1) == labels)

  return evaluate


def to_host(x) -> np.ndarray:
  """A global array as one host array on every process."""
  if jax.process_count() > 1:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def eval_metrics(logp_true: np.ndarray, correct: np.ndarray,
                 ks: Sequence[int] = PASS_AT) -> dict[str, float]:
  """Validation metrics from per-image ``log pi(y*|x)`` (analytic pass@k) and correctness."""
  logp_true = np.asarray(logp_true, np.float64)
  out = {f"eval/pass@{k}": float(np.mean(metrics_lib.pass_at_k_from_logp(logp_true, k)))
         for k in ks}
  out["eval/top1"] = float(np.mean(correct))
  out["eval/mean_log_p"] = float(np.mean(logp_true))
  return out


def pass_at_k(logp_true: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
  """``{str(k): mean pass@k}`` (analytic) for each k."""
  logp = np.asarray(logp_true, np.float64)
  return {str(int(k)): float(np.mean(metrics_lib.pass_at_k_from_logp(logp, int(k))))
          for k in ks}


class MemoryData:
  """Whole splits on the devices (replicated); eval padded to a multiple of the eval batch, so
  every process runs the same batches."""

  def __init__(self, config, builder, mesh):
    size = int(config.data.image_size)
    transform = str(config.data.eval_transform)
    images, labels = data_lib.load_split_arrays(
        builder, config.data.train_split, size, eval_transform=transform)
    ev_images, ev_labels = data_lib.load_split_arrays(
        builder, config.data.eval_split, size, limit=int(config.data.num_eval_examples),
        eval_transform=transform)
    self.num_train = len(labels)
    self.num_eval = len(ev_labels)
    self.eval_images_host, self.eval_labels_host = ev_images, ev_labels
    eb = int(config.train.eval_batch_size)
    pad = (-self.num_eval) % eb
    ev_images = np.concatenate([ev_images, np.zeros((pad,) + ev_images.shape[1:], np.uint8)])
    ev_labels = np.concatenate([ev_labels, np.zeros((pad,), np.int32)])
    rows = mesh_lib.process_batch_slice(mesh, eb)  # This process's rows of each batch.
    self.eval_batches = [
        mesh_lib.host_local_to_global(mesh, {"image": ev_images[i:i + eb][rows],
                                             "label": ev_labels[i:i + eb][rows]})
        for i in range(0, len(ev_labels), eb)]
    self.train_images = mesh_lib.replicate(mesh, images)
    self.train_labels = mesh_lib.replicate(mesh, labels.astype(np.int32))

  def evaluate(self, eval_fn, state) -> tuple[np.ndarray, np.ndarray]:
    outs = [eval_fn(state, b["image"], b["label"]) for b in self.eval_batches]
    logp = np.concatenate([to_host(o[0]) for o in outs])[:self.num_eval]
    correct = np.concatenate([to_host(o[1]) for o in outs])[:self.num_eval]
    return logp, correct


def stream_evaluate(config, builder, mesh, eval_fn, state) -> tuple[np.ndarray, np.ndarray]:
  """Evaluates on the streamed eval split (each process its part, the same number of batches
  on every process), gathered on every host; padded rows are dropped."""
  local = mesh_lib.check_global_batch(config.train.eval_batch_size, mesh,
                                      "config.train.eval_batch_size")
  logps, corrects = [], []
  for batch in data_lib.eval_batches(builder, config, local):
    mask = batch.pop("mask")
    g = mesh_lib.host_local_to_global(mesh, batch)
    logp, correct = eval_fn(state, g["image"], g["label"])
    keep = to_host(mesh_lib.host_local_to_global(mesh, mask)) > 0
    logps.append(to_host(logp)[keep])
    corrects.append(to_host(correct)[keep])
  return np.concatenate(logps), np.concatenate(corrects)


def analysis_images(config, builder, memory: MemoryData | None,
                    num: int) -> tuple[np.ndarray, np.ndarray]:
  """The first ``num`` validation images and labels, identical on every process."""
  if memory is not None:
    return memory.eval_images_host[:num], memory.eval_labels_host[:num]
  return data_lib.load_split_arrays(
      builder, config.data.eval_split, int(config.data.image_size), limit=num,
      eval_transform=str(config.data.eval_transform))


def write_final_eval(workdir, logp_true: np.ndarray, correct: np.ndarray) -> None:
  """``<workdir>/final_eval.npz``: per-image ``log pi(y*|x)`` and top-1 correctness."""
  buf = io.BytesIO()
  np.savez(buf, logp_true=np.asarray(logp_true, np.float32), correct=np.asarray(correct))
  files.write_bytes(files.as_path(workdir) / FINAL_EVAL_FILE, buf.getvalue())


def read_final_eval(workdir) -> dict[str, np.ndarray] | None:
  """``{"logp_true", "correct"}`` written by :func:`write_final_eval`, or None."""
  path = files.as_path(workdir) / FINAL_EVAL_FILE
  if not path.exists():
    return None
  with np.load(io.BytesIO(path.read_bytes())) as data:
    return {k: data[k] for k in data.files}
