"""Validation of the maze experiment's config: every field, with errors that name it
(``maxrl_jax.train.errors.ConfigError``), before anything compiles."""

from __future__ import annotations

import os

import numpy as np

from experiments.maze import data as maze_data
from experiments.maze import steps
from experiments.maze import update as update_lib
from maxrl_jax import estimators
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train.errors import ConfigError, require

EXPERIMENTS = ("sweep", "data_scarce", "single")
# rl.* fields that a sweep sets per run from sweep.*: an override of them would be ignored, so
# it is refused (override the sweep.* field instead).
SWEEP_SET = {"estimator": "sweep.estimators", "num_rollouts": "sweep.num_rollouts",
             "batch_size": "sweep.batch_size", "steps": "sweep.steps", "seed": "sweep.seeds"}
AGGREGATIONS = update_lib.AGGREGATIONS
DTYPES = ("float32", "bfloat16", "float16")


def _positive_int(value, field: str, low: int = 1) -> None:
  require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low,
          field, f"must be an int >= {low}, got {value!r}")


def _seed_list(seeds, field: str, high: int | None = None) -> None:
  seeds = tuple(seeds)
  require(len(seeds) >= 1 and len(set(seeds)) == len(seeds) and all(
      isinstance(x, (int, np.integer)) and not isinstance(x, bool) and 0 <= x
      and (high is None or x <= high) for x in seeds), field,
          "must be at least one distinct int >= 0" + (f" and <= {high}" if high is not None
                                                      else "") + f", got {seeds}")


def _check_hf_checkpoint(path: str, model_cfg) -> None:
  """``config.sft.init_from_hf`` must be a Qwen2 checkpoint directory whose ``config.json``
  agrees with ``config.model`` (the weights themselves are read when stage 1 starts)."""
  from maxrl_jax.models import hf_qwen2  # pylint: disable=g-import-not-at-top
  field = "config.sft.init_from_hf"
  require(os.path.isfile(os.path.join(path, hf_qwen2.WEIGHTS_FILE)), field,
          f"{path} holds no {hf_qwen2.WEIGHTS_FILE} (expected a Hugging Face Qwen2 checkpoint "
          "directory)")
  try:
    hf_qwen2.decoder_config_from_hf(path, model_cfg)
  except (OSError, ValueError) as e:
    raise ConfigError(field, f"{path}: {e}") from e


def _validate_microbatches(config, batch: int, ns) -> None:
  """verl's micro-batches: ``B N`` sequences split evenly over ``rl.loss_data_parallel`` ranks,
  each rank's share into micro-batches of ``S = min(rl.loss_microbatch_size, share)``; an
  accumulation chunk (``rl.grad_mazes`` mazes) holds whole micro-batches or lies inside one."""
  rl = config.rl
  _positive_int(rl.loss_data_parallel, "config.rl.loss_data_parallel")
  _positive_int(rl.loss_microbatch_size, "config.rl.loss_microbatch_size")
  for n in ns:
    seqs = batch * n
    require(seqs % rl.loss_data_parallel == 0, "config.rl.loss_data_parallel",
            f"must divide the batch's {seqs} sequences ({batch} mazes x N={n})")
    share = seqs // rl.loss_data_parallel
    size = min(rl.loss_microbatch_size, share)
    require(share % size == 0, "config.rl.loss_microbatch_size",
            f"must divide each rank's {share} sequences (N={n}), got {size}")
    chunk = (rl.grad_mazes or batch) * n
    require(chunk % size == 0 or size % chunk == 0, "config.rl.grad_mazes",
            f"an accumulation chunk of {chunk} sequences (N={n}) must hold whole micro-batches "
            f"of {size} sequences or lie inside one (rl.loss_microbatch_size)")


def rl_pairs(config) -> list[tuple[str, int]]:
  """The ``(estimator, N)`` pairs of the experiment's RL runs (the grid of
  :func:`experiments.maze.runs.grid_runs` without its seed and rate axes, which do not change
  what is valid)."""
  if config.experiment == "single":
    return [(config.rl.estimator, config.rl.num_rollouts)]
  return [(e, n) for e in config.sweep.estimators for n in config.sweep.num_rollouts]


def _check_options(options, n: int | None) -> None:
  """``rl.estimator_options`` against the estimator registry (at group size ``n``)."""
  field = "config.rl.estimator_options"
  try:
    estimators.validate_options(options, n, field=field)
  except ValueError as e:
    where, _, message = str(e).partition(": ")
    raise ConfigError(where if where.startswith(field) else field,
                      message + (f" (N={n})" if n is not None else "")) from e


def validate(config, mesh=None) -> None:
  """Raises ConfigError naming the field for any invalid value, before anything compiles."""
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  require(config.experiment in EXPERIMENTS, "config.experiment",
          f"must be one of {EXPERIMENTS}, got {config.experiment!r}")
  _positive_int(config.seed, "config.seed", 0)
  require(config.maze.size >= 5 and config.maze.size % 2 == 1, "config.maze.size",
          f"must be odd and >= 5, got {config.maze.size}")
  _positive_int(config.maze.num_test, "config.maze.num_test")
  _positive_int(config.maze.get("num_train", 0), "config.maze.num_train", 0)
  require(config.maze.get("num_train", 0) <= maze_data.RL_OFFSET, "config.maze.num_train",
          f"must be <= 2^30, got {config.maze.get('num_train', 0)}")
  require(config.model.dtype in DTYPES, "config.model.dtype",
          f"must be one of {DTYPES}, got {config.model.dtype!r}")
  if config.model.dtype == "float16":
    require(config.model.loss_scale_init > 0, "config.model.loss_scale_init",
            f"must be > 0, got {config.model.loss_scale_init}")
    _positive_int(config.model.loss_scale_period, "config.model.loss_scale_period")
  try:
    task = maze_data.MazeTask.from_config(config)
  except ValueError as e:
    raise ConfigError("config.maze", str(e)) from e
  need = task.prompt_length + task.max_response_length
  require(config.model.max_len == 0 or config.model.max_len >= need, "config.model.max_len",
          f"must be >= prompt ({task.prompt_length}) + response ({task.max_response_length}) "
          f"= {need} tokens for {config.maze.size}x{config.maze.size} mazes, got "
          f"{config.model.max_len}")
  try:
    steps.decoder_config(config, task).validate()
  except ValueError as e:
    raise ConfigError("config.model", str(e)) from e
  if config.sft.get("init_from_hf", ""):
    _check_hf_checkpoint(config.sft.init_from_hf, steps.decoder_config(config, task))
  for name in ("sft", "rl"):
    sec = config[name]
    _positive_int(sec.chunk_steps, f"config.{name}.chunk_steps")
    _positive_int(sec.checkpoint_every, f"config.{name}.checkpoint_every")
    _positive_int(sec.eval_every, f"config.{name}.eval_every", 0)
    require(sec.learning_rate > 0, f"config.{name}.learning_rate", "must be > 0")
    require(sec.weight_decay >= 0, f"config.{name}.weight_decay", "must be >= 0")
    require(sec.max_grad_norm >= 0, f"config.{name}.max_grad_norm", "must be >= 0 (0: off)")
    require(len(sec.betas) == 2 and all(0 <= b < 1 for b in sec.betas), f"config.{name}.betas",
            f"must be two numbers in [0, 1), got {tuple(sec.betas)}")
  _positive_int(config.sft.steps, "config.sft.steps", 0)
  mesh_lib.check_global_batch(config.sft.batch_size, mesh, "config.sft.batch_size")
  rl = config.rl
  require(rl.temperature > 0, "config.rl.temperature", f"must be > 0, got {rl.temperature}")
  require(rl.loss_aggregation in AGGREGATIONS, "config.rl.loss_aggregation",
          f"must be one of {AGGREGATIONS}, got {rl.loss_aggregation!r}")
  if config.experiment != "single":
    for field, by in SWEEP_SET.items():
      require(rl[field] is None, f"config.rl.{field}",
              f"is set per run by config.{by} in a {config.experiment} experiment; override "
              f"config.{by} instead (got {rl[field]!r})")
  require(all(isinstance(x, int) and x >= 1 for x in rl.loss_lengths), "config.rl.loss_lengths",
          f"must be ints >= 1, got {tuple(rl.loss_lengths)}")
  require(rl.entropy_coef >= 0, "config.rl.entropy_coef", f"must be >= 0, got {rl.entropy_coef}")
  _check_options(rl.estimator_options, None)
  _seed_list(config.sweep.get("seeds", (0,)), "config.sweep.seeds")
  _seed_list(config.sweep.get("sft_seeds", (0,)), "config.sweep.sft_seeds",
             high=maze_data.MAX_SFT_SEED)
  _positive_int(config.sft.get("seed", 0), "config.sft.seed", 0)
  require(config.sft.get("seed", 0) <= maze_data.MAX_SFT_SEED, "config.sft.seed",
          f"must be <= {maze_data.MAX_SFT_SEED}, got {config.sft.get('seed', 0)}")
  lrs = tuple(config.sweep.get("learning_rates", ()))
  require(all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in lrs)
          and len(set(lrs)) == len(lrs), "config.sweep.learning_rates",
          f"must be distinct numbers > 0 (empty: rl.learning_rate), got {lrs}")
  if config.experiment == "single":
    _positive_int(rl.seed or 0, "config.rl.seed", 0)
  runs = rl_pairs(config)
  require(len(runs) >= 1, "config.sweep.estimators", "no RL run configured")
  for name, n in runs:
    require(isinstance(name, str), "config.rl.estimator", f"must be a name, got {name!r}")
    estimator = steps.base_estimator(name)
    require(estimator in estimators.METHODS, "config.rl.estimator",
            f"unknown estimator {estimator!r}; choose from {sorted(estimators.METHODS)} (a "
            f"'{steps.ENTROPY_SUFFIX}' suffix adds the entropy bonus rl.entropy_coef)")
    if name != estimator:
      require(rl.entropy_coef > 0, "config.rl.entropy_coef",
              f"must be > 0 for the run {name!r}")
    _positive_int(n, "config.rl.num_rollouts")
    if estimator in rl.estimator_options:  # at this N (e.g. truncation <= N), not inside jit
      _check_options({estimator: rl.estimator_options[estimator]}, n)
  single = config.experiment == "single"
  batch_field = "config.rl.batch_size" if single else "config.sweep.batch_size"
  batch = rl.batch_size if single else config.sweep.batch_size
  _positive_int(batch, batch_field)
  mesh_lib.check_global_batch(batch, mesh, batch_field)
  for field in ("sample_mazes", "grad_mazes"):
    chunk = rl[field] or batch
    _positive_int(chunk, f"config.rl.{field}")
    require(batch % chunk == 0, f"config.rl.{field}",
            f"must divide the batch ({batch_field}={batch}), got {chunk}")
  if rl.loss_aggregation == "microbatch_token_mean":
    _validate_microbatches(config, batch, [n for _, n in runs])
  _positive_int(rl.steps if single else config.sweep.steps,
                "config.rl.steps" if single else "config.sweep.steps")
  _positive_int(rl.train_set_size, "config.rl.train_set_size", 0)
  if config.experiment == "data_scarce":
    require(rl.train_set_size >= 1, "config.rl.train_set_size",
            "the data-scarce regime needs a fixed training set (>= 1 maze)")
  ev = config.eval
  _positive_int(ev.num_samples, "config.eval.num_samples")
  require(1 <= ev.during_num_samples <= ev.num_samples, "config.eval.during_num_samples",
          "must be in [1, eval.num_samples]")
  nval = config.maze.get("num_validation", 0)
  _positive_int(nval, "config.maze.num_validation", 0)
  require(0 <= ev.get("validation_mazes", 0) <= nval, "config.eval.validation_mazes",
          f"must be in [0, maze.num_validation={nval}]")
  require(0 <= ev.num_mazes <= config.maze.num_test, "config.eval.num_mazes",
          f"must be in [0, maze.num_test={config.maze.num_test}]")
  require(ev.num_mazes or ev.get("validation_mazes", 0) or ev.train_mazes, "config.eval.num_mazes",
          "is 0 and no validation or training mazes are evaluated: nothing to evaluate")
  require(0 <= ev.train_mazes <= max(rl.train_set_size, 0), "config.eval.train_mazes",
          "must be in [0, rl.train_set_size]")
  require(all(isinstance(k, int) and k >= 1 for k in ev.ks), "config.eval.ks",
          f"must be ints >= 1, got {tuple(ev.ks)}")
  require(any(k <= ev.num_samples for k in ev.ks), "config.eval.ks",
          "needs at least one k <= eval.num_samples")
  require(ev.temperature > 0, "config.eval.temperature", f"must be > 0, got {ev.temperature}")
  _positive_int(ev.samples_per_call, "config.eval.samples_per_call")
  _positive_int(ev.mazes_per_call, "config.eval.mazes_per_call")
