r"""Figure 8: per-image gradient L2 norm against pass rate, for any checkpoint.

For each of ``num_images`` validation images ``x`` with true label ``y*`` and each objective,
the per-image gradient of the objective with respect to all network parameters is

* cross-entropy: ``g = grad log pi(y*|x)`` (norm ``|grad p| / p``);
* a sampled estimator with ``M`` rollouts: ``g = sum_i a_i grad log pi(y_i|x)``
  (``a_i = A_i / M``), which with binary rewards only depends on the label counts:
  ``g = sum_y c_y grad log pi(y|x)``, ``c_y = n_y A(r_y, K)/M``
  (:func:`objectives.class_coefficients`), so even ``M = 131072`` costs one backward pass.

BatchNorm uses its running averages (eval mode), so each image's gradient is its own. The
paper (after 1500 steps, 1000 images, 131,072 rollouts) finds cross-entropy and MaxRL putting
the largest norms on hard (low-p) images, GRPO peaking near p = 0.5, REINFORCE near zero.

Usage (any run directory holding ``checkpoints/`` of a run trained with that config):

  python -m experiments.imagenet.gradnorm --config=experiments/imagenet/config.py:cpu \
      --run_dir=runs/imagenet/cpu/cross_entropy
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from experiments.imagenet import input_pipeline
from experiments.imagenet import objectives
from experiments.imagenet import plots
from experiments.imagenet import train
from maxrl_jax.train import checkpoint as checkpoint_lib
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train.errors import require

# Estimator options used for the analysis (the paper's GRPO uses the population std).
_OPTIONS = {"grpo": {"std": "population"}}


def per_image_grad_norms(model, variables, images, coefs) -> jax.Array:
  """``|| grad_theta sum_y c_y log pi(y|x) ||_2`` for each image (eval-mode BatchNorm)."""

  def loss(params, image, coef):
    logits = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                         image[None], train=False)[0]
    return -jnp.sum(coef * jax.nn.log_softmax(logits))

  def norm(image, coef):
    return train.global_norm(jax.grad(loss)(variables["params"], image, coef))

  return jax.vmap(norm)(images, coefs)


def _validation_images(config, builder, memory, num: int) -> tuple[np.ndarray, np.ndarray]:
  if memory is not None:
    return memory.eval_images_host[:num], memory.eval_labels_host[:num]
  images, labels = [], []
  for batch in input_pipeline.eval_batches(builder, config, int(config.train.eval_batch_size)):
    keep = batch["mask"] > 0
    images.append(batch["image"][keep])
    labels.append(batch["label"][keep])
    if sum(len(x) for x in labels) >= num:
      break
  return np.concatenate(images)[:num], np.concatenate(labels)[:num]


def analyse(config, run_dir: str, *, mesh=None, builder=None, memory=None,
            objective_names: Sequence[str] | None = None, out_dir: str | None = None) -> dict:
  """Per-image gradient norms at the latest checkpoint of ``run_dir``; writes json + figure.

  Returns:
    ``{"step", "pass_rate": [...], "norms": {objective: [...]}, "figure", "json"}``.
  """
  mesh = train.gspmd_mesh(mesh) if mesh is not None else train.make_mesh()
  builder = builder if builder is not None else input_pipeline.prepare_dataset(config)
  num_classes = input_pipeline.num_classes(builder)
  num_train = input_pipeline.num_train_examples(config, builder)
  _, total_steps, warmup = train.schedule_steps(config, num_train)
  model = train.build_model(config, num_classes)
  tx, _ = train.make_optimizer(config, total_steps, warmup)
  template = train.init_state(config, model, tx, mesh)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(run_dir, "checkpoints"))
  try:
    restored = ckpt.restore_latest(template)
  finally:
    ckpt.close()
  require(restored is not None, "--run_dir", f"no checkpoint under {run_dir}/checkpoints")
  step, state, _ = restored
  variables = {"params": state["params"], "batch_stats": state["batch_stats"]}

  num = int(config.gradnorm.num_images)
  m = int(config.gradnorm.num_rollouts)
  gb = int(config.gradnorm.batch_size)
  names = list(objective_names or config.gradnorm.objectives)
  for name in names:
    require(name in objectives.objective_names(), "config.gradnorm.objectives",
            f"unknown objective {name!r}")
  images, labels = _validation_images(config, builder, memory, num)

  @jax.jit
  def logits_fn(variables, x):
    return model.apply(variables, x, train=False)

  @functools.partial(jax.jit, static_argnums=0)
  def norms_fn(name, variables, x, y, key):
    logits = model.apply(variables, x, train=False)
    coefs = objectives.class_coefficients(logits, y, key, objective=name, num_rollouts=m,
                                          options=_OPTIONS.get(name))
    return per_image_grad_norms(model, variables, x, coefs)

  pass_rates = []
  for i in range(0, len(labels), gb):
    logp = jax.nn.log_softmax(logits_fn(variables, images[i:i + gb]), axis=-1)
    pass_rates.append(np.exp(np.take_along_axis(np.asarray(logp), labels[i:i + gb, None], 1))[:, 0])
  pass_rates = np.concatenate(pass_rates)
  base = train.prng_key(config, 3)
  norms: dict[str, Any] = {}
  for j, name in enumerate(names):
    out = []
    for i in range(0, len(labels), gb):
      key = jax.random.fold_in(jax.random.fold_in(base, j), i)
      out.append(np.asarray(norms_fn(name, variables, images[i:i + gb], labels[i:i + gb], key)))
    norms[name] = np.concatenate(out)

  out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(run_dir)), "figures")
  labels_txt = {n: (plots.run_label(n, m) if n != "cross_entropy" else plots.run_label(n, 1))
                for n in names}
  figure = plots.plot_gradnorm(
      pass_rates, {labels_txt[n]: v for n, v in norms.items()},
      os.path.join(out_dir, "imagenet_gradnorm.png"),
      title=f"per-image gradient norm at step {step} of {os.path.basename(run_dir)} "
            f"({len(labels)} validation images, {m} rollouts each)")
  result = {"step": int(step), "run_dir": os.path.abspath(run_dir), "num_rollouts": m,
            "pass_rate": pass_rates.tolist(), "norms": {k: v.tolist() for k, v in norms.items()},
            "figure": figure}
  json_path = os.path.join(out_dir, "imagenet_gradnorm.json")
  if mesh_lib.is_chief():
    with open(json_path, "w", encoding="utf-8") as f:
      json.dump(result, f)
  result["json"] = json_path
  return result


def analyse_once(config, run_dir: str, **kwargs) -> dict:
  """:func:`analyse`, unless its json already exists for the same checkpoint step."""
  out_dir = kwargs.get("out_dir") or os.path.join(os.path.dirname(os.path.abspath(run_dir)),
                                                  "figures")
  path = os.path.join(out_dir, "imagenet_gradnorm.json")
  ckpt = checkpoint_lib.Checkpointer(os.path.join(run_dir, "checkpoints"))
  try:
    latest = ckpt.latest_step()
  finally:
    ckpt.close()
  try:
    with open(path, encoding="utf-8") as f:
      previous = json.load(f)
    if previous.get("step") == latest and os.path.exists(previous.get("figure", "")):
      previous["json"] = path
      return previous
  except (OSError, ValueError):
    pass
  return analyse(config, run_dir, **kwargs)


def _define_flags():
  """Command-line flags (defined only when run as a script: the driver imports this module)."""
  config = config_flags.DEFINE_config_file(
      "config", "experiments/imagenet/config.py:cpu", "Comparison configuration (data/model).")
  run_dir = flags.DEFINE_string("run_dir", None, "Run directory holding checkpoints/.")
  out_dir = flags.DEFINE_string("out_dir", None,
                                "Where to write the figure (default: <run_dir>/../figures).")
  names = flags.DEFINE_list("objectives", None, "Objectives (default: config.gradnorm).")
  flags.mark_flag_as_required("run_dir")

  def main(argv: Sequence[str]) -> None:
    del argv
    cfg = config.value
    mesh = train.make_mesh()
    builder = input_pipeline.prepare_dataset(cfg)
    memory = train.MemoryData(cfg, builder, mesh) if cfg.data.in_memory else None
    result = analyse(cfg, run_dir.value, mesh=mesh, builder=builder, memory=memory,
                     objective_names=names.value, out_dir=out_dir.value)
    print(json.dumps({"figure": result["figure"], "json": result["json"],
                      "step": result["step"]}))

  return main


if __name__ == "__main__":
  app.run(_define_flags())
