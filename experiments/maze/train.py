"""The maze driver's two stages on the shared lifecycle (:func:`maxrl_jax.train.stage.run_stage`).

Stage 1 (:func:`sft`) trains the decoder on BFS shortest paths (or imports a Hugging Face Qwen2
checkpoint such as the authors' ``maze/ckpt-1500`` when ``config.sft.init_from_hf`` is set);
stage 2 (:func:`rl`) runs one on-policy RL run from the SFT parameters. The programs are in
:mod:`experiments.maze.steps`, evaluation in :mod:`experiments.maze.evaluate`. Both stages log a
periodic evaluation (``eval_every``) and end with the final one (``eval.num_samples`` samples per
maze) in ``summary.json``; both resume exactly and stop cleanly on SIGTERM.
"""

from __future__ import annotations

import ml_collections

from experiments.maze import config as config_lib
from experiments.maze import data as maze_data
from experiments.maze import evaluate as evaluate_lib
from experiments.maze import steps
from experiments.maze import validation
from maxrl_jax.models import transformer
from maxrl_jax.train import files
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train import stage as stage_lib

# Fields that do not change a stage's results: periods, memory splits (the update and the
# evaluation are the same for any of their values), the sweep's list of other runs.
_COMMON_IGNORE = ("preset", "experiment", "sweep", "eval.mazes_per_call", "eval.samples_per_call",
                  "compile_options", "rl.sample_mazes", "rl.grad_mazes", "rl.loss_lengths",
                  "model.remat")


def _stage(name, config, workdir, sec, total_steps, steps_field, ignore) -> stage_lib.Stage:
  return stage_lib.Stage(
      name=name, workdir=workdir, config=config, total_steps=int(total_steps),
      chunk_steps=max(1, min(sec.chunk_steps, sec.eval_every or sec.chunk_steps,
                             sec.checkpoint_every)),
      checkpoint_every=int(sec.checkpoint_every), steps_field=steps_field,
      resume_ignore=_COMMON_IGNORE + tuple(ignore), resume_absent_as=config_lib.FIELDS_ADDED)


def _periodic_eval(config, task, model_cfg, mesh, sec, total_steps):
  def on_chunk_end(state, step, writer):
    if sec.eval_every and step % sec.eval_every == 0 and step < total_steps:
      writer.write_scalars(step, evaluate_lib.evaluate_sets(
          state.params, model_cfg, task, config, step, config.eval.during_num_samples, mesh))
  return on_chunk_end


COUNTS_FILE = "eval_counts.json"


def _final_eval(config, task, model_cfg, mesh, workdir):
  """The final evaluation; also writes ``<workdir>/eval_counts.json``, the successes per maze
  ``{set: {"num_samples": n, "counts": [...]}}`` the report's bootstrap resamples."""
  def final_eval(state, step):
    counts = {}
    out = evaluate_lib.evaluate_sets(state.params, model_cfg, task, config, step,
                                     config.eval.num_samples, mesh, counts_out=counts)
    if mesh_lib.is_chief():
      files.write_json(files.as_path(workdir) / COUNTS_FILE, {
          name: {"num_samples": int(config.eval.num_samples), "counts": c.tolist()}
          for name, c in counts.items()})
    return out
  return final_eval


def sft(config: ml_collections.ConfigDict, workdir: str, *, mesh=None) -> stage_lib.StageResult:
  """Stage 1 in ``workdir`` (resumable). ``result.state.params`` are the SFT parameters once
  ``result.complete``; an orchestrator must not start RL otherwise."""
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  validation.validate(config, mesh)
  task = maze_data.MazeTask.from_config(config)
  model_cfg = steps.decoder_config(config, task)
  optimizer = steps.make_optimizer(steps.optimizer_spec(config.sft), steps.loss_scale_spec(config))
  if config.sft.init_from_hf:
    from maxrl_jax.models import hf_qwen2  # pylint: disable=g-import-not-at-top  # safetensors
    _, params = hf_qwen2.load_hf(config.sft.init_from_hf, model_cfg)
    init_params, total = params, 0
  else:
    init_params, total = steps.init_params(config, model_cfg), config.sft.steps
  sft_seed = int(config.sft.get("seed", 0))
  stage = _stage("maze sft" + (f" seed={sft_seed}" if sft_seed else ""), config, workdir,
                 config.sft, total, "sft.steps",
                 ("rl", "eval.during_num_samples", "sft.eval_every", "sft.checkpoint_every",
                  "sft.chunk_steps"))
  initial = None
  if total:
    initial = lambda state: evaluate_lib.evaluate_sets(
        state.params, model_cfg, task, config, 0, config.eval.during_num_samples, mesh)
  return stage_lib.run_stage(stage, stage_lib.Program(
      init_state=lambda: steps.init_state(init_params, optimizer, mesh),
      train_chunk=steps.make_sft_chunk(config, task, model_cfg, mesh),
      final_eval=_final_eval(config, task, model_cfg, mesh, workdir), initial_eval=initial,
      hooks=stage_lib.Hooks(on_chunk_end=_periodic_eval(config, task, model_cfg, mesh,
                                                        config.sft, total)),
      summary_fields={"num_params": transformer.num_params(init_params),
                      "init_from_hf": config.sft.init_from_hf or None, "seed": sft_seed}))


def rl(config: ml_collections.ConfigDict, workdir: str, init_params, *, mesh=None,
       initial_eval: dict | None = None) -> stage_lib.StageResult:
  """Stage 2: one RL run (``config`` from :func:`runs.rl_config`) from ``init_params``.

  ``initial_eval`` (the SFT model's final pass@k) is logged at step 0, so every run's curve
  starts at the shared starting point. A complete run returns its summary (state not restored).
  """
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  task = maze_data.MazeTask.from_config(config)
  model_cfg = steps.decoder_config(config, task)
  optimizer = steps.make_optimizer(steps.optimizer_spec(config.rl), steps.loss_scale_spec(config))
  name = f"maze rl {config.rl.estimator} N={config.rl.num_rollouts}"
  if len(config.sweep.get("learning_rates", ())) > 1:
    name += f" lr={config.rl.learning_rate:g}"
  if len(config.sweep.get("seeds", (0,))) > 1:
    name += f" seed={config.rl.seed or 0}"
  stage = _stage(name, config, workdir,
                 config.rl, config.rl.steps, "rl.steps",
                 ("sft.eval_every", "sft.checkpoint_every", "sft.chunk_steps", "rl.eval_every",
                  "rl.checkpoint_every", "rl.chunk_steps", "eval.during_num_samples"))
  return stage_lib.run_stage(stage.replace(restore_complete=False), stage_lib.Program(
      init_state=lambda: steps.init_state(init_params, optimizer, mesh),
      train_chunk=steps.make_rl_chunk(config, task, model_cfg, mesh),
      final_eval=_final_eval(config, task, model_cfg, mesh, workdir),
      initial_eval=(lambda state: dict(initial_eval)) if initial_eval else None,
      hooks=stage_lib.Hooks(on_chunk_end=_periodic_eval(config, task, model_cfg, mesh, config.rl,
                                                        config.rl.steps)),
      summary_fields={"estimator": config.rl.estimator,
                      "num_rollouts": int(config.rl.num_rollouts),
                      "seed": int(config.rl.seed or 0),
                      "learning_rate": float(config.rl.learning_rate),
                      "batch_size": int(config.rl.batch_size)}))


def read_summary(workdir: str) -> dict | None:
  return stage_lib.read_summary(workdir)
