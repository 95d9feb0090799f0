"""Model, optimiser, train state and the jitted training steps of the ImageNet experiment (the
runs and their configs: :mod:`experiments.imagenet.runs`).

One training step of run ``r`` on a batch of images ``x_b`` with labels ``y*_b`` (paper
section 6.1, appendix D): ``loss = objectives.objective_loss(logits, y*, key_step, ...)``,
``grads = d loss / d params``, SGD with momentum (coupled weight decay, as PyTorch's SGD) and a
warmup-cosine learning rate. Parameters and optimiser state are replicated over the 1-D
``"data"`` mesh, batches sharded on it; ``jit`` turns the replicated update into a data-parallel
one (gradient all-reduce, BatchNorm statistics over the global batch). The per-step PRNG key is
``fold_in(key, step)`` and the data are a function of the step, so resuming is exact.

No file I/O here (``train.py`` owns the run's lifecycle).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.imagenet import objectives
from experiments.imagenet.runs import seeds
from maxrl_jax.models import resnet
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train import optim
from maxrl_jax.train.errors import require
from maxrl_jax.train.state import TrainState


def schedule_steps(config, num_train: int) -> tuple[int, int, int]:
  """``(steps_per_epoch, total_steps, warmup_steps)`` derived from the config and data size."""
  steps_per_epoch = num_train // int(config.optim.batch_size)
  require(steps_per_epoch >= 1, "config.optim.batch_size",
          f"larger than the {num_train} training examples")
  if config.optim.num_steps:
    total = int(config.optim.num_steps)
  else:
    total = int(round(config.optim.num_epochs * steps_per_epoch))
  if config.optim.warmup_steps >= 0:
    warmup = int(config.optim.warmup_steps)
  else:
    warmup = int(round(config.optim.warmup_epochs * steps_per_epoch))
  require(total >= 1, "config.optim.num_epochs", "gives no training step")
  require(0 <= warmup < total, "config.optim.warmup_steps",
          f"warmup {warmup} must be shorter than training ({total} steps)")
  return steps_per_epoch, total, warmup


def prng_key(config, stream: int) -> jax.Array:
  """Key of one random stream: 0 init, 1 label sampling, 2 data order, 3 gradnorm analysis.

  The seed is ``config.seed`` of a run config (:func:`runs.run_config`), or the first of
  ``config.seeds`` of a comparison config.

  ``config.train.prng_impl`` picks the generator: ``"rbg"`` (XLA's RngBitGenerator) compiles
  an order of magnitude faster than ``"threefry2x32"`` for the many parameter tensors of a
  ResNet init on CPU; values differ between backends (CPU/GPU/TPU), not between runs.
  """
  seed = config.seed if "seed" in config else seeds(config)[0]  # A comparison config: its first.
  key = jax.random.key(int(seed), impl=str(config.train.prng_impl))
  return jax.random.fold_in(key, stream)


def build_model(config, num_classes: int) -> resnet.ResNet:
  dtype = jnp.bfloat16 if config.model.dtype == "bfloat16" else jnp.float32
  return resnet.make_resnet(config.model.name, num_classes, width=int(config.model.width),
                            stem=config.model.stem, dtype=dtype,
                            input_mean=tuple(config.data.mean_rgb),
                            input_std=tuple(config.data.std_rgb))


# The comparison's optimiser (section 6.1, appendix D): config.optim names no optimiser or
# schedule, the driver fixes them (see maxrl_jax.train.optim).
OPTIMIZER_DEFAULTS = {"optimizer": "sgd", "schedule": "warmup_cosine"}


def make_optimizer(config, total_steps: int, warmup_steps: int):
  """SGD + momentum (no Nesterov) with coupled weight decay and warmup-cosine lr (the library's
  :func:`maxrl_jax.train.optim.make_optimizer` of ``config.optim``).

  PyTorch's ``SGD(weight_decay=wd, momentum=m)``: ``d = g + wd * theta``,
  ``buf = m * buf + d``, ``theta -= lr_t * buf``.
  """
  return optim.make_optimizer(config.optim, field="config.optim", defaults=OPTIMIZER_DEFAULTS,
                              warmup_steps=warmup_steps, total_steps=total_steps)


def torchvision_init(params: Any, key: jax.Array) -> Any:
  """torchvision's ResNet initialisation from the model's zero-init one (the authors' code).

  The model zero-initialises the last BatchNorm scale of every residual block and the head.
  torchvision (``zero_init_residual=False``) sets every BatchNorm scale to 1, and leaves the
  ``nn.Linear`` head at PyTorch's default, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for the
  kernel and the bias. Convolutions already match (He normal, fan-out).
  """
  def fix(path, x):
    names = [getattr(p, "key", "") for p in path]
    if names[-1] == "scale":
      return jnp.ones_like(x)
    return x

  params = jax.tree_util.tree_map_with_path(fix, params)
  head = dict(params["head"])
  fan_in = head["kernel"].shape[0]
  bound = 1.0 / np.sqrt(fan_in)
  k_w, k_b = jax.random.split(key)
  head["kernel"] = jax.random.uniform(k_w, head["kernel"].shape, head["kernel"].dtype,
                                      -bound, bound)
  head["bias"] = jax.random.uniform(k_b, head["bias"].shape, head["bias"].dtype, -bound, bound)
  params = dict(params)
  params["head"] = head
  return params


def init_state(config, model, tx, mesh) -> TrainState:
  """The step-0 state, replicated over the mesh (the same in every process)."""
  size = int(config.data.image_size)

  def init():
    dummy = jnp.zeros((2, size, size, 3), jnp.uint8)
    key = prng_key(config, 0)
    variables = model.init(key, dummy, train=False)
    params = variables["params"]
    if config.model.init == "torchvision":
      params = torchvision_init(params, jax.random.fold_in(key, 1))
    return TrainState(params=params, opt_state=tx.init(params),
                      batch_stats=variables["batch_stats"])

  return jax.jit(init, out_shardings=mesh_lib.replicated(mesh))()


def make_train_step(config, model, tx, schedule) -> Callable:
  """``(state, batch, step) -> (state, metrics)`` for the run in ``config.run``."""
  run = config.run
  base_key = prng_key(config, 1)
  options = dict(run.options.to_dict())

  def train_step(state: TrainState, batch, step):
    key = jax.random.fold_in(base_key, step)

    def loss_fn(params):
      logits, new_vars = model.apply(
          {"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True,
          mutable=["batch_stats"])
      loss, aux = objectives.objective_loss(
          logits, batch["label"], key, objective=run.objective, num_rollouts=run.num_rollouts,
          options=options, search_method=config.train.search_method,
          entropy_coef=float(config.optim.get("entropy_coef", 0.0)))
      return loss, (new_vars["batch_stats"], aux)

    (loss, (batch_stats, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": schedule(step)}
    metrics.update(aux)
    return TrainState(params=params, opt_state=opt_state, batch_stats=batch_stats), metrics

  return train_step


def _stack_metrics(per_step: list[dict]) -> dict:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *per_step)


def make_memory_chunk(train_step, mesh, batch_size: int, steps_per_epoch: int, num_train: int,
                      data_key, scan: bool = True) -> Callable:
  """``(state, step0, n, images, labels) -> (state, metrics[n])`` on device-resident data.

  Step ``s`` uses rows ``perm_e[(s mod E) B : (s mod E + 1) B]`` of the training arrays, with
  ``perm_e`` the permutation of epoch ``e = s // E`` (``E`` steps per epoch). With ``scan`` the
  ``n`` steps run in one ``lax.scan`` (one dispatch; best on accelerators); without, one jitted
  step per dispatch (XLA:CPU runs convolutions inside a while loop many times slower).
  """
  data_sharding = mesh_lib.batch_sharding(mesh)
  replicated = mesh_lib.replicated(mesh)

  def one_step(state, step, images, labels):
    epoch, pos = step // steps_per_epoch, step % steps_per_epoch
    perm = jax.random.permutation(jax.random.fold_in(data_key, epoch), num_train)
    idx = jax.lax.dynamic_slice(perm, (pos * batch_size,), (batch_size,))
    batch = {"image": images[idx], "label": labels[idx]}
    batch = jax.lax.with_sharding_constraint(batch, data_sharding)
    return train_step(state, batch, step)

  if not scan:
    step_fn = jax.jit(one_step, donate_argnums=0, out_shardings=(replicated, replicated))

    def loop_chunk(state, step0, n, images, labels):
      per_step = []
      for i in range(n):
        state, m = step_fn(state, np.int32(step0 + i), images, labels)
        per_step.append(m)
      return state, _stack_metrics(per_step)

    return loop_chunk

  @functools.partial(jax.jit, static_argnums=2, donate_argnums=0,
                     out_shardings=(replicated, replicated))
  def chunk(state, step0, n, images, labels):
    return jax.lax.scan(lambda s, step: one_step(s, step, images, labels), state,
                        step0 + jnp.arange(n, dtype=jnp.int32))

  return chunk


def make_stream_chunk(train_step, mesh, scan: bool = True) -> Callable:
  """``(state, step0, data[n, B, ...]) -> (state, metrics[n])`` on streamed batches."""
  replicated = mesh_lib.replicated(mesh)
  if not scan:
    step_fn = jax.jit(lambda s, b, k: train_step(s, b, k), donate_argnums=0,
                      out_shardings=(replicated, replicated))

    def loop_chunk(state, step0, data):
      per_step = []
      for i in range(data["label"].shape[0]):
        state, m = step_fn(state, jax.tree.map(lambda x, i=i: x[i], data), np.int32(step0 + i))
        per_step.append(m)
      return state, _stack_metrics(per_step)

    return loop_chunk

  @functools.partial(jax.jit, donate_argnums=0, out_shardings=(replicated, replicated))
  def chunk(state, step0, data):
    n = data["label"].shape[0]
    steps = step0 + jnp.arange(n, dtype=jnp.int32)
    return jax.lax.scan(lambda s, x: train_step(s, x[1], x[0]), state, (steps, data))

  return chunk
