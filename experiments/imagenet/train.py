"""Training driver: a comparison of objectives (cross-entropy, MaxRL, REINFORCE, GRPO) on ResNets.

``run(config, workdir)`` trains every run of ``config.runs`` in ``workdir/<run name>`` (each
resumable from its checkpoints, skipped when its ``summary.json`` is complete), then writes the
comparison's figures (``workdir/figures``) and ``workdir/summary.json`` (final numbers per run).

One training step of run ``r`` on a batch of images ``x_b`` with labels ``y*_b``:
``loss = objectives.objective_loss(logits, y*, key_step, objective=r.objective, ...)``,
``grads = d loss / d params``, SGD with momentum (coupled weight decay, as PyTorch's SGD) and a
warmup-cosine learning rate. Parameters and optimiser state are replicated over the 1-D
``"data"`` mesh, batches sharded on it; ``jit`` turns the replicated update into a data-parallel
one (gradient all-reduce, BatchNorm statistics over the global batch). Steps run in chunks of
``config.train.chunk_steps`` inside one ``lax.scan``; the per-step PRNG key is
``fold_in(key, step)`` and the data are a function of the step, so resuming is exact.

Validation (every ``config.train.eval_every`` steps and at the end; BatchNorm running
averages): pass@1 = mean ``pi(y*|x)``, pass@128 = mean ``1 - (1 - pi(y*|x))^128`` (analytic),
top-1 accuracy; at the end also pass@k for ``config.eval.ks``.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import time
from typing import Any, Callable, Sequence

import jax
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.imagenet import input_pipeline
from experiments.imagenet import objectives
from maxrl_jax import estimators
from maxrl_jax import metrics as metrics_lib
from maxrl_jax.models import resnet
from maxrl_jax.train import checkpoint as checkpoint_lib
from maxrl_jax.train import logs
from maxrl_jax.train import loop
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train.errors import ConfigError, require

SUMMARY_FILE = "summary.json"
FINAL_EVAL_FILE = "final_eval.npz"
PASS_AT = (1, 128)


# ----------------------------------------------------------------------------- configuration


def run_names(config) -> list[str]:
  return [str(r["name"]) for r in config.runs]


def run_config(config, run: dict) -> ml_collections.ConfigDict:
  """The comparison config specialised to one run (``config.run`` holds the run)."""
  c = copy.deepcopy(config)
  with c.unlocked():
    c.run = ml_collections.ConfigDict({
        "name": str(run["name"]), "objective": str(run["objective"]),
        "num_rollouts": int(run.get("num_rollouts", 1)),
        "options": dict(run.get("options", {}) or {})})
    del c["runs"]
  return c


def validate(config, mesh) -> None:
  """Checks the comparison config (``ConfigError`` naming the field) before compiling."""
  require(len(config.runs) >= 1, "config.runs", "needs at least one run")
  names = run_names(config)
  require(len(set(names)) == len(names), "config.runs", f"run names must be unique: {names}")
  for i, run in enumerate(config.runs):
    field = f"config.runs[{i}]"
    require(run["objective"] in objectives.objective_names(), f"{field}.objective",
            f"unknown objective {run['objective']!r}; one of {objectives.objective_names()}")
    n = int(run.get("num_rollouts", 1))
    require(n >= 1, f"{field}.num_rollouts", f"must be >= 1, got {n}")
    if run["objective"] != objectives.CROSS_ENTROPY:
      try:
        estimators.coefficient_table(run["objective"], n, **dict(run.get("options", {}) or {}))
      except ValueError as e:
        raise ConfigError(f"{field}.options", str(e)) from e
  require(not config.gradnorm.run or config.gradnorm.run in names, "config.gradnorm.run",
          f"must be '' or one of the run names {names}, got {config.gradnorm.run!r}")
  mesh_lib.check_global_batch(config.optim.batch_size, mesh, "config.optim.batch_size")
  mesh_lib.check_global_batch(config.train.eval_batch_size, mesh, "config.train.eval_batch_size")
  t = config.train
  for name in ("chunk_steps", "eval_every", "checkpoint_every", "log_every"):
    require(int(t[name]) >= 1, f"config.train.{name}", f"must be >= 1, got {t[name]}")
  require(t.eval_every % t.chunk_steps == 0, "config.train.eval_every",
          f"must be a multiple of config.train.chunk_steps={t.chunk_steps}, got {t.eval_every}")
  require(config.optim.learning_rate > 0, "config.optim.learning_rate", "must be > 0")
  require(config.optim.num_steps >= 0, "config.optim.num_steps", "must be >= 0")
  require(config.model.dtype in ("float32", "bfloat16"), "config.model.dtype",
          f"must be 'float32' or 'bfloat16', got {config.model.dtype!r}")
  require(config.model.name in resnet.ARCHITECTURES, "config.model.name",
          f"unknown {config.model.name!r}; one of {sorted(resnet.ARCHITECTURES)}")
  require(config.model.stem in ("imagenet", "small"), "config.model.stem",
          f"must be 'imagenet' or 'small', got {config.model.stem!r}")
  require(t.search_method in ("scan", "scan_unrolled", "sort"), "config.train.search_method",
          f"must be 'scan', 'scan_unrolled' or 'sort', got {t.search_method!r}")
  require(t.prng_impl in ("rbg", "unsafe_rbg", "threefry2x32"), "config.train.prng_impl",
          f"must be 'rbg', 'unsafe_rbg' or 'threefry2x32', got {t.prng_impl!r}")
  require(all(int(k) >= 1 for k in config.eval.ks), "config.eval.ks", "every k must be >= 1")


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


def gspmd_mesh(mesh: Mesh) -> Mesh:
  """The same devices and axis names with ``Auto`` axis types (classic GSPMD propagation).

  ``jax.make_mesh`` defaults to ``Explicit`` axes on recent JAX ("sharding in types"), under
  which every op needs a sharding rule; the label sampler's batched ``searchsorted`` has none.
  With ``Auto`` axes the compiler propagates the batch sharding through the whole step.
  """
  types = getattr(mesh, "axis_types", None)
  if types is None or all(t == AxisType.Auto for t in types):
    return mesh
  return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """The infrastructure's 1-D ``"data"`` mesh (Auto axes already; `gspmd_mesh` is for meshes
  a caller builds itself)."""
  return mesh_lib.make_mesh(devices)


# ----------------------------------------------------------------------------- model and state


def prng_key(config, stream: int) -> jax.Array:
  """Key of one random stream: 0 init, 1 label sampling, 2 data order, 3 gradnorm analysis.

  ``config.train.prng_impl`` picks the generator: ``"rbg"`` (XLA's RngBitGenerator) compiles
  an order of magnitude faster than ``"threefry2x32"`` for the many parameter tensors of a
  ResNet init on CPU; values differ between backends (CPU/GPU/TPU), not between runs.
  """
  key = jax.random.key(int(config.seed), impl=str(config.train.prng_impl))
  return jax.random.fold_in(key, stream)


def build_model(config, num_classes: int) -> resnet.ResNet:
  dtype = jnp.bfloat16 if config.model.dtype == "bfloat16" else jnp.float32
  return resnet.make_resnet(config.model.name, num_classes, width=int(config.model.width),
                            stem=config.model.stem, dtype=dtype,
                            input_mean=tuple(config.data.mean_rgb),
                            input_std=tuple(config.data.std_rgb))


def make_optimizer(config, total_steps: int, warmup_steps: int):
  """SGD + momentum (no Nesterov) with coupled weight decay and warmup-cosine lr.

  PyTorch's ``SGD(weight_decay=wd, momentum=m)``: ``d = g + wd * theta``,
  ``buf = m * buf + d``, ``theta -= lr_t * buf``.
  """
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=float(config.optim.learning_rate),
      warmup_steps=warmup_steps, decay_steps=total_steps, end_value=0.0)
  tx = optax.chain(
      optax.add_decayed_weights(float(config.optim.weight_decay)),
      optax.sgd(schedule, momentum=float(config.optim.momentum),
                nesterov=bool(config.optim.nesterov)))
  return tx, schedule


def init_state(config, model, tx, mesh) -> dict[str, Any]:
  """``{params, batch_stats, opt_state}`` replicated over the mesh (same in every process)."""
  size = int(config.data.image_size)

  def init():
    dummy = jnp.zeros((2, size, size, 3), jnp.uint8)
    variables = model.init(prng_key(config, 0), dummy, train=False)
    params = variables["params"]
    return {"params": params, "batch_stats": variables["batch_stats"],
            "opt_state": tx.init(params)}

  return jax.jit(init, out_shardings=mesh_lib.replicated(mesh))()


def global_norm(tree) -> jax.Array:
  """``sqrt(sum of squares)`` over all leaves (float32)."""
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def make_train_step(config, model, tx, schedule) -> Callable:
  """``(state, batch, step) -> (state, metrics)`` for the run in ``config.run``."""
  run = config.run
  base_key = prng_key(config, 1)
  options = dict(run.options)

  def train_step(state, batch, step):
    key = jax.random.fold_in(base_key, step)

    def loss_fn(params):
      logits, new_vars = model.apply(
          {"params": params, "batch_stats": state["batch_stats"]}, batch["image"], train=True,
          mutable=["batch_stats"])
      loss, aux = objectives.objective_loss(
          logits, batch["label"], key, objective=run.objective, num_rollouts=run.num_rollouts,
          options=options, search_method=config.train.search_method)
      return loss, (new_vars["batch_stats"], aux)

    (loss, (batch_stats, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": loss, "grad_norm": global_norm(grads), "lr": schedule(step)}
    metrics.update(aux)
    return {"params": params, "batch_stats": batch_stats, "opt_state": opt_state}, metrics

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


def make_eval_fn(model, mesh) -> Callable:
  """Jitted ``(state, images, labels) -> (log pi(y*|x), correct)`` per example (eval mode)."""
  data_sharding = mesh_lib.batch_sharding(mesh)

  @functools.partial(jax.jit, out_shardings=(data_sharding, data_sharding))
  def evaluate(state, images, labels):
    logits = model.apply({"params": state["params"], "batch_stats": state["batch_stats"]},
                         images, train=False)
    logp = jax.nn.log_softmax(logits, axis=-1)
    logp_true = jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
    return logp_true, (jnp.argmax(logits, axis=-1) == labels)

  return evaluate


def _to_host(x) -> np.ndarray:
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


# ----------------------------------------------------------------------------- data sources


class MemoryData:
  """Whole splits on the devices (replicated); eval padded to a multiple of the eval batch."""

  def __init__(self, config, builder, mesh):
    size = int(config.data.image_size)
    images, labels = input_pipeline.load_split_arrays(builder, config.data.train_split, size)
    ev_images, ev_labels = input_pipeline.load_split_arrays(
        builder, config.data.eval_split, size, limit=int(config.data.num_eval_examples))
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
    logp = np.concatenate([_to_host(o[0]) for o in outs])[:self.num_eval]
    correct = np.concatenate([_to_host(o[1]) for o in outs])[:self.num_eval]
    return logp, correct


def stream_evaluate(config, builder, mesh, eval_fn, state) -> tuple[np.ndarray, np.ndarray]:
  """Evaluates on the streamed eval split (each process its part), gathered on every host."""
  local = mesh_lib.check_global_batch(config.train.eval_batch_size, mesh,
                                      "config.train.eval_batch_size")
  logps, corrects = [], []
  for batch in input_pipeline.eval_batches(builder, config, local):
    mask = batch.pop("mask")
    g = mesh_lib.host_local_to_global(mesh, batch)
    logp, correct = eval_fn(state, g["image"], g["label"])
    keep = _to_host(mesh_lib.host_local_to_global(mesh, mask)) > 0
    logps.append(_to_host(logp)[keep])
    corrects.append(_to_host(correct)[keep])
  return np.concatenate(logps), np.concatenate(corrects)


# ----------------------------------------------------------------------------- one run


def _summary_complete(path: str, total_steps: int) -> dict | None:
  try:
    with open(path, encoding="utf-8") as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return None
  return summary if summary.get("step") == total_steps and "final" in summary else None


def train_run(config, workdir: str, *, builder=None, mesh=None, memory: MemoryData | None = None,
              guard: loop.PreemptionGuard | None = None, verbose: bool = True) -> dict:
  """Trains the run ``config.run`` in ``workdir`` (resuming); returns its summary.

  ``guard``: a :class:`maxrl_jax.train.loop.PreemptionGuard` already entered by the caller (on
  SIGTERM the run checkpoints and returns with ``stopped_reason == "preempted"``).
  """
  mesh = gspmd_mesh(mesh) if mesh is not None else make_mesh()
  builder = builder if builder is not None else input_pipeline.prepare_dataset(config)
  num_classes = input_pipeline.num_classes(builder)
  num_train = input_pipeline.num_train_examples(config, builder)
  steps_per_epoch, total_steps, warmup = schedule_steps(config, num_train)
  done = _summary_complete(os.path.join(workdir, SUMMARY_FILE), total_steps)
  if done is not None:
    if verbose:
      print(f"[{config.run.name}] complete ({total_steps} steps); skipping", flush=True)
    return done

  t_start = time.time()
  model = build_model(config, num_classes)
  tx, schedule = make_optimizer(config, total_steps, warmup)
  state = init_state(config, model, tx, mesh)
  writer = logs.MetricWriter(workdir)
  writer.write_config(config)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                     int(config.train.max_to_keep),
                                     async_save=bool(config.train.async_checkpointing))
  start_step = 0
  restored = ckpt.restore_latest(state)
  if restored is not None:
    start_step, state, _ = restored
    if verbose:
      print(f"[{config.run.name}] resumed at step {start_step}", flush=True)

  train_step = make_train_step(config, model, tx, schedule)
  eval_fn = make_eval_fn(model, mesh)
  batch = int(config.optim.batch_size)
  if config.data.in_memory:
    memory = memory if memory is not None else MemoryData(config, builder, mesh)
    data_key = prng_key(config, 2)
    mem_chunk = make_memory_chunk(train_step, mesh, batch, steps_per_epoch, memory.num_train,
                                  data_key, scan=bool(config.train.scan))

    def train_chunk(state, step0, n):
      return mem_chunk(state, np.int32(step0), n, memory.train_images, memory.train_labels)

    def evaluate(state):
      return memory.evaluate(eval_fn, state)
  else:
    local = mesh_lib.check_global_batch(batch, mesh, "config.optim.batch_size")
    stream = input_pipeline.train_batches(builder, config, local, steps_per_epoch, start_step)
    chunks = input_pipeline.prefetch_chunks(
        stream, mesh, [n for _, n in loop.chunk_sizes(start_step, total_steps,
                                                      int(config.train.chunk_steps))],
        buffer_size=int(config.train.prefetch_chunks))
    stream_chunk = make_stream_chunk(train_step, mesh, scan=bool(config.train.scan))

    def train_chunk(state, step0, n):
      data = next(chunks)
      require(data["label"].shape[0] == n, "train_chunk", "chunk size mismatch")
      return stream_chunk(state, np.int32(step0), data)

    def evaluate(state):
      return stream_evaluate(config, builder, mesh, eval_fn, state)

  final: dict[str, Any] = {}

  def on_chunk_end(state, step):
    if step % int(config.train.eval_every) and step != total_steps:
      return
    logp, correct = evaluate(state)
    scalars = eval_metrics(logp, correct)
    writer.write_scalars(step, scalars)
    if verbose:
      print(f"[{config.run.name}] step {step}: " +
            "  ".join(f"{k[5:]}={v:.4g}" for k, v in scalars.items()), flush=True)
    if step == total_steps:
      final.update(scalars)
      final["logp"], final["correct"] = logp, correct

  if start_step == total_steps:  # Trained, but the summary was not written: evaluate only.
    on_chunk_end(state, start_step)
  progress = logs.Progress(total_steps, start_step, every_seconds=15.0, name=config.run.name)
  try:
    state, step, reason = loop.run_loop(
        state=state, start_step=start_step, total_steps=total_steps,
        chunk_steps=int(config.train.chunk_steps), train_chunk=train_chunk, checkpointer=ckpt,
        writer=writer, checkpoint_every=int(config.train.checkpoint_every), progress=progress,
        on_chunk_end=on_chunk_end, meta_fn=lambda s: {"data_step": s}, guard=guard,
        log_every=int(config.train.log_every))
  finally:
    ckpt.close()
    writer.close()

  summary = {"run": config.run.to_dict(), "step": int(step), "stopped_reason": reason,
             "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
             "num_classes": num_classes, "num_train": num_train,
             "num_devices": int(mesh.devices.size), "num_processes": jax.process_count(),
             "wall_seconds_this_session": time.time() - t_start}
  if reason == loop.COMPLETED and final:
    ks = [int(k) for k in config.eval.ks]
    logp = final.pop("logp")
    final.pop("correct")
    final["pass_at_k"] = {str(k): float(np.mean(metrics_lib.pass_at_k_from_logp(
        np.asarray(logp, np.float64), k))) for k in ks}
    summary["final"] = final
    if mesh_lib.is_chief():
      np.savez(os.path.join(workdir, FINAL_EVAL_FILE), logp_true=logp)
  if mesh_lib.is_chief():
    _write_json(os.path.join(workdir, SUMMARY_FILE), summary)
  return summary


def _write_json(path: str, obj: Any) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


# ----------------------------------------------------------------------------- comparison


def run(config, workdir: str, devices: Sequence[jax.Device] | None = None,
        guard: loop.PreemptionGuard | None = None) -> dict:
  """Runs every run of the comparison (resumable), then figures and ``summary.json``.

  Stops early (each run checkpointed) when ``guard`` reports a preemption.
  """
  mesh = make_mesh(devices)
  validate(config, mesh)
  t0 = time.time()
  builder = input_pipeline.prepare_dataset(config)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("imagenet_dataset_prepared")
  memory = None
  if config.data.in_memory:
    memory = MemoryData(config, builder, mesh)
  if mesh_lib.is_chief():
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
      json.dump(logs.config_to_dict(config), f, indent=2, sort_keys=True)
  runs = {}
  for r in config.runs:
    if guard is not None and guard.should_stop():
      break
    rc = run_config(config, r)
    runs[rc.run.name] = train_run(rc, os.path.join(workdir, rc.run.name), builder=builder,
                                  mesh=mesh, memory=memory, guard=guard)
  summary = {
      "dataset": config.data.dataset,
      "generated_data": config.data.dataset == "pattern_classes",
      "model": config.model.name,
      "runs": {name: {"objective": s["run"]["objective"],
                      "num_rollouts": s["run"]["num_rollouts"],
                      "step": s["step"], **s.get("final", {})}
               for name, s in runs.items()},
      "wall_seconds_this_session": time.time() - t0,
  }
  complete = len(runs) == len(config.runs) and all(
      s.get("stopped_reason") == loop.COMPLETED and "final" in s for s in runs.values())
  summary["complete"] = complete
  if mesh_lib.is_chief() and complete:
    from experiments.imagenet import plots  # pylint: disable=g-import-not-at-top
    summary["figures"] = plots.comparison_figures(config, workdir)
    if config.gradnorm.run:
      from experiments.imagenet import gradnorm  # pylint: disable=g-import-not-at-top
      summary["figures"].append(gradnorm.analyse_once(
          config, os.path.join(workdir, config.gradnorm.run), mesh=mesh, builder=builder,
          memory=memory)["figure"])
    _write_json(os.path.join(workdir, SUMMARY_FILE), summary)
  return summary
