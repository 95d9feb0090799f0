"""One run of the ImageNet comparison (one objective) as a stage of the shared stage runner.

:func:`train_run` builds the model, optimiser and data for the run in ``config.run`` and hands
them to :func:`maxrl_jax.train.stage.run_stage`, which owns the lifecycle (skip if complete,
config check on resume, lock, checkpoints, preemption, summary). The run directory holds
``config.json``, ``metrics.jsonl``, ``tb/``, ``checkpoints/``, ``analysis_checkpoint/`` (the
state at ``config.analysis.step``, for Figure 8), ``final_eval.npz`` (per-image
``log pi(y*|x)`` of the final model) and ``summary.json``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from experiments.imagenet import evaluate
from experiments.imagenet import gradnorm
from experiments.imagenet import data as data_lib
from experiments.imagenet import steps
from maxrl_jax.train import loop
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train import stage as stage_lib
from maxrl_jax.train.errors import require

# Config fields that may change when a run is resumed: none changes the run's training.
RESUME_IGNORE = (
    "preset", "data.data_dir", "data.manual_dir", "train.eval_every", "train.log_every",
    "train.checkpoint_every", "train.max_to_keep", "train.async_checkpointing",
    "train.prefetch_chunks", "train.eval_batch_size", "eval", "analysis.runs",
    "analysis.batch_size", "analysis.num_images", "analysis.num_rollouts")


def steps_field(config) -> str:
  """The config field that sets the number of steps (it may grow on resume)."""
  return "optim.num_steps" if config.optim.num_steps else "optim.num_epochs"


def train_run(config, workdir, *, mesh, builder=None, memory: evaluate.MemoryData | None = None,
              guard: loop.PreemptionGuard | None = None) -> stage_lib.StageResult:
  """Trains (resumes, or returns the finished) run ``config.run`` in ``workdir``."""
  builder = builder if builder is not None else data_lib.prepare_dataset(config)
  num_classes = data_lib.num_classes(builder)
  num_train = data_lib.num_train_examples(config, builder)
  steps_per_epoch, total_steps, warmup = steps.schedule_steps(config, num_train)
  model = steps.build_model(config, num_classes)
  tx, schedule = steps.make_optimizer(config, total_steps, warmup)
  train_step = steps.make_train_step(config, model, tx, schedule)
  eval_fn = evaluate.make_eval_fn(model, mesh)
  name = str(config.run.name)
  chief = mesh_lib.is_chief()
  chunk_steps = int(config.train.chunk_steps)
  batch = int(config.optim.batch_size)

  if config.data.in_memory:
    memory = memory if memory is not None else evaluate.MemoryData(config, builder, mesh)
    mem_chunk = steps.make_memory_chunk(train_step, mesh, batch, steps_per_epoch,
                                        memory.num_train, steps.prng_key(config, 2),
                                        scan=bool(config.train.scan))

    def train_chunk(state, step0, n):
      return mem_chunk(state, np.int32(step0), n, memory.train_images, memory.train_labels)

    def run_eval(state):
      return memory.evaluate(eval_fn, state)
  else:
    local = mesh_lib.check_global_batch(batch, mesh, "config.optim.batch_size")
    stream_chunk = steps.make_stream_chunk(train_step, mesh, scan=bool(config.train.scan))
    chunks = []  # The chunk iterator, opened at the first chunk's step (restored or 0).

    def train_chunk(state, step0, n):
      if not chunks:
        stream = data_lib.train_batches(builder, config, local, steps_per_epoch, step0)
        sizes = [m for _, m in loop.chunk_sizes(step0, total_steps, chunk_steps)]
        chunks.append(data_lib.prefetch_chunks(
            stream, mesh, sizes, buffer_size=int(config.train.prefetch_chunks)))
      data = next(chunks[0])
      require(data["label"].shape[0] == n, "train_chunk", "chunk size mismatch")
      return stream_chunk(state, np.int32(step0), data)

    def run_eval(state):
      return evaluate.stream_evaluate(config, builder, mesh, eval_fn, state)

  analysis_step = int(config.analysis.step)
  started = []

  def chunk_with_analysis(state, step0, n):
    if not started:  # Killed between the checkpoint of analysis_step and its analysis copy?
      started.append(step0)
      if step0 == analysis_step and not gradnorm.has_checkpoint(workdir, step0):
        gradnorm.save_checkpoint(workdir, step0, state)
    return train_chunk(state, step0, n)

  def on_chunk_end(state, step, writer):
    if step == analysis_step:
      gradnorm.save_checkpoint(workdir, step, state)
    if step % int(config.train.eval_every) or step == total_steps:
      return  # The last step is final_eval's.
    scalars = evaluate.eval_metrics(*run_eval(state))
    writer.write_scalars(step, scalars)
    if chief:
      print(f"[{name}] step {step}: " + "  ".join(f"{k[5:]}={v:.4g}" for k, v in scalars.items()),
            flush=True)

  def final_eval(state, step):
    logp, correct = run_eval(state)
    out: dict[str, Any] = evaluate.eval_metrics(logp, correct)
    out["pass_at_k"] = evaluate.pass_at_k(logp, config.eval.ks)
    if chief:
      evaluate.write_final_eval(workdir, logp, correct)
      print(f"[{name}] final (step {step}): " + "  ".join(
          f"{k[5:]}={v:.4g}" for k, v in out.items() if k.startswith("eval/")), flush=True)
    return out

  stage = stage_lib.Stage(
      name=name, workdir=workdir, config=config, total_steps=total_steps,
      chunk_steps=chunk_steps, checkpoint_every=int(config.train.checkpoint_every),
      steps_field=steps_field(config), resume_ignore=RESUME_IGNORE,
      log_every=int(config.train.log_every), max_to_keep=int(config.train.max_to_keep),
      async_checkpointing=bool(config.train.async_checkpointing), restore_complete=False,
      progress_every_seconds=15.0)
  program = stage_lib.Program(
      init_state=lambda: steps.init_state(config, model, tx, mesh),
      train_chunk=chunk_with_analysis, final_eval=final_eval,
      hooks=loop.Hooks(on_chunk_end=on_chunk_end, checkpoint_meta=lambda s: {"data_step": s}),
      summary_fields={
          "run": config.run.to_dict(), "total_steps": total_steps,
          "steps_per_epoch": steps_per_epoch, "warmup_steps": warmup,
          "num_classes": num_classes, "num_train": num_train,
          "num_devices": int(mesh.devices.size), "num_processes": jax.process_count(),
          "analysis_step": analysis_step})
  return stage_lib.run_stage(stage, program, guard=guard)
