r"""Figure 8: per-image gradient L2 norm against pass rate, each objective on its own model.

Following the paper (section 6.1, Figure 8): for every run of ``config.analysis.runs`` (paper:
cross-entropy, MaxRL, GRPO and REINFORCE with N = 1024; the training of the first seed of
``config.seeds`` when there are several), restore the run's own checkpoint at
``config.analysis.step`` (paper: 1,500 steps; kept in ``<run>/analysis_checkpoint/`` by
``train.py``) and, for each of ``num_images`` validation images ``x`` with true label ``y*``,
compute the gradient of THAT run's objective with respect to all network parameters:

* cross-entropy: ``g = grad log pi(y*|x)`` (norm ``|grad p| / p``);
* a sampled estimator with ``M`` rollouts (paper: 131,072): ``g = sum_i a_i grad log
  pi(y_i|x)`` (``a_i = A_i / M``), which with binary rewards only depends on the label counts:
  ``g = sum_y c_y grad log pi(y|x)``, ``c_y = n_y A(r_y, K)/M``
  (:func:`objectives.class_coefficients`), so even ``M = 131072`` costs one backward pass.

BatchNorm uses its running averages (eval mode), so each image's gradient is its own. The
paper finds cross-entropy and MaxRL putting the largest norms on hard (low-p) images, falling
to 0 at p = 1, GRPO peaking near p = 0.3-0.5, REINFORCE tiny and proportional to p (its model
only reaches p < 0.003).

Every process runs the analysis (each restore and each jitted call is global); only process 0
writes ``<workdir>/figures/imagenet_gradnorm.{png,json}``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.imagenet import evaluate
from experiments.imagenet import data as data_lib
from experiments.imagenet import objectives
from experiments.imagenet import plots
from experiments.imagenet import runs as runs_lib
from experiments.imagenet import steps
from maxrl_jax.train import checkpoint as checkpoint_lib
from maxrl_jax.train import files
from maxrl_jax.train import mesh as mesh_lib

ANALYSIS_DIR = "analysis_checkpoint"  # In each run's directory.
FIGURE = "imagenet_gradnorm.png"
JSON = "imagenet_gradnorm.json"


def per_image_grad_norms(model, variables, images, coefs) -> jax.Array:
  """``|| grad_theta sum_y c_y log pi(y|x) ||_2`` for each image (eval-mode BatchNorm)."""

  def loss(params, image, coef):
    logits = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                         image[None], train=False)[0]
    return -jnp.sum(coef * jax.nn.log_softmax(logits))

  def norm(image, coef):
    return optax.tree.norm(jax.grad(loss)(variables["params"], image, coef))

  return jax.vmap(norm)(images, coefs)


def _host(x: jax.Array) -> np.ndarray:
  """A replicated global array's value on this process."""
  return np.asarray(x.addressable_data(0))


def _restore(config, run_dir, model, tx, mesh, step: int):
  template = steps.init_state(config, model, tx, mesh)
  with checkpoint_lib.Checkpointer(files.as_path(run_dir) / ANALYSIS_DIR,
                                   async_save=False) as ckpt:
    state, _ = ckpt.restore_step(step, template)
  return state


def analyse_run(config, run_config, run_dir, *, mesh, builder, images: np.ndarray,
                labels: np.ndarray, key: jax.Array) -> dict[str, Any]:
  """Pass rates and per-image gradient norms of one run's analysis checkpoint, with the run's
  own objective. Every process must call it."""
  num_classes = data_lib.num_classes(builder)
  num_train = data_lib.num_train_examples(config, builder)
  _, total_steps, warmup = steps.schedule_steps(config, num_train)
  model = steps.build_model(config, num_classes)
  tx, _ = steps.make_optimizer(run_config, total_steps, warmup)
  step = int(config.analysis.step)
  state = _restore(run_config, run_dir, model, tx, mesh, step)
  run = run_config.run
  m = int(config.analysis.num_rollouts)
  options = dict(run.options.to_dict())
  replicated = mesh_lib.replicated(mesh)
  data_sharding = mesh_lib.batch_sharding(mesh)
  ndev = int(mesh.devices.size)
  gb = -(-int(config.analysis.batch_size) // ndev) * ndev  # A multiple of the devices.
  num = len(labels)
  pad = (-num) % gb
  images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
  labels = np.concatenate([labels, np.zeros((pad,), labels.dtype)]).astype(np.int32)

  @functools.partial(jax.jit, out_shardings=(replicated, replicated))
  def batch_fn(variables, x, y, key):
    logits = model.apply(variables, x, train=False)
    p = jnp.exp(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], -1)[:, 0])
    coefs = objectives.class_coefficients(logits, y, key, objective=run.objective,
                                          num_rollouts=m, options=options)
    return p, per_image_grad_norms(model, variables, x, coefs)

  def put(a):
    return jax.make_array_from_callback(a.shape, data_sharding, lambda idx: a[idx])

  rates, norms = [], []
  for i in range(0, len(labels), gb):
    p, g = batch_fn(state.variables, put(images[i:i + gb]), put(labels[i:i + gb]),
                    jax.random.fold_in(key, i))
    rates.append(_host(p))
    norms.append(_host(g))
  return {"run": str(run.name), "objective": str(run.objective),
          "num_rollouts_trained": int(run.num_rollouts), "step": step,
          "pass_rate": np.concatenate(rates)[:num].tolist(),
          "norms": np.concatenate(norms)[:num].tolist()}


def save_checkpoint(run_dir, step: int, state: Any) -> None:
  """Keeps ``state`` as ``<run_dir>/analysis_checkpoint/<step>`` (every process must call)."""
  with checkpoint_lib.Checkpointer(files.as_path(run_dir) / ANALYSIS_DIR, max_to_keep=1,
                                   async_save=False) as ckpt:
    ckpt.save(step, state, {"analysis": True})


def has_checkpoint(run_dir, step: int) -> bool:
  with checkpoint_lib.Checkpointer(files.as_path(run_dir) / ANALYSIS_DIR,
                                   async_save=False) as ckpt:
    return step in ckpt.all_steps()


def analyse(config, workdir, *, mesh, builder=None, memory=None) -> dict[str, Any]:
  """Figure 8 for every run of ``config.analysis.runs`` under ``workdir``; every process must
  call it (process 0 writes the json and the figure). Returns the json's content plus
  ``figure`` and ``json`` paths; runs without an analysis checkpoint are listed in
  ``missing``."""
  builder = builder if builder is not None else data_lib.prepare_dataset(config)
  num = int(config.analysis.num_images)
  images, labels = evaluate.analysis_images(config, builder, memory, num)
  base = steps.prng_key(config, 3)  # The first seed's.
  step = int(config.analysis.step)
  seed = runs_lib.seeds(config)[0]
  by_name = {r["name"]: r for r in runs_lib.trained_runs(config) if r["seed"] == seed}
  panels, missing = [], []
  for j, name in enumerate(config.analysis.runs):
    run = by_name[name]
    run_dir = files.as_path(workdir) / run["dir"]
    if not has_checkpoint(run_dir, step):
      missing.append(name)
      continue
    rc = runs_lib.run_config(config, run)
    panel = analyse_run(config, rc, run_dir, mesh=mesh, builder=builder, images=images,
                        labels=labels, key=jax.random.fold_in(base, j))
    panels.append(dict(panel, run=name, seed=seed))
  fig_dir = files.as_path(workdir) / "figures"
  m = int(config.analysis.num_rollouts)
  result = {"step": step, "num_images": int(len(labels)), "num_rollouts": m,
            "requested_images": num, "seed": seed,
            "panels": panels, "missing": missing}
  title = (f"Per-image gradient norm at step {step}, each objective on its own model "
           f"({len(labels)} validation images, {m:,} sampled rollouts per image)")
  figure = str(fig_dir / FIGURE)
  if mesh_lib.is_chief():
    figure = plots.plot_gradnorm(panels, fig_dir / FIGURE, title=title)
    files.write_json(fig_dir / JSON, result)
  result.update(figure=figure, json=str(fig_dir / JSON))
  return result


def is_current(config, workdir) -> bool:
  """Whether ``<workdir>/figures`` already holds this analysis (same runs, step and sizes)."""
  fig_dir = files.as_path(workdir) / "figures"
  previous = files.read_json(fig_dir / JSON)
  return bool(
      isinstance(previous, dict) and previous.get("step") == int(config.analysis.step)
      and previous.get("seed", 0) == runs_lib.seeds(config)[0]
      and previous.get("num_rollouts") == int(config.analysis.num_rollouts)
      and previous.get("requested_images") == int(config.analysis.num_images)
      and not previous.get("missing")
      and [p["run"] for p in previous.get("panels", [])] == list(config.analysis.runs)
      and (fig_dir / FIGURE).exists())


def load(config, workdir) -> dict[str, Any]:
  """The analysis :func:`analyse` wrote (check :func:`is_current` first)."""
  del config
  fig_dir = files.as_path(workdir) / "figures"
  result = files.read_json(fig_dir / JSON) or {}
  result.update(figure=str(fig_dir / FIGURE), json=str(fig_dir / JSON))
  return result
