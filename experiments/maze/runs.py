"""The maze experiment's runs and the validation of its config (every field, before compiling)."""

from __future__ import annotations

import os
from typing import NamedTuple

import ml_collections
import numpy as np

from experiments.maze import data as maze_data
from experiments.maze import steps
from maxrl_jax import estimators
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train.errors import ConfigError, require

EXPERIMENTS = ("sweep", "data_scarce", "single")
# rl.* fields that a sweep sets per run from sweep.*: an override of them would be ignored, so
# it is refused (override the sweep.* field instead).
SWEEP_SET = {"estimator": "sweep.estimators", "num_rollouts": "sweep.num_rollouts",
             "batch_size": "sweep.batch_size", "steps": "sweep.steps", "seed": "sweep.seeds"}
AGGREGATIONS = ("token_mean", "sequence_mean")


class Run(NamedTuple):
  """One RL run of the experiment (``learning_rate`` None: ``rl.learning_rate``)."""
  estimator: str
  num_rollouts: int
  seed: int
  learning_rate: float | None
  name: str


def run_name(estimator: str, n: int, seed: int = 0, learning_rate: float | None = None,
             *, with_seed: bool = False, with_lr: bool = False) -> str:
  """``<estimator>_n<N>[_lr<rate>][_s<seed>]`` (the suffixes only where the axis has > 1 value)."""
  name = f"{estimator}_n{int(n)}"
  if with_lr:
    name += f"_lr{float(learning_rate):g}"
  if with_seed:
    name += f"_s{int(seed)}"
  return name


def grid_runs(config) -> list[Run]:
  """The RL runs of the experiment, estimator-major, then N, learning rate and seed."""
  if config.experiment == "single":
    seed = config.rl.seed or 0
    return [Run(config.rl.estimator, int(config.rl.num_rollouts), int(seed), None,
                run_name(config.rl.estimator, config.rl.num_rollouts))]
  sw = config.sweep
  seeds = [int(s) for s in sw.get("seeds", (0,))]
  lrs = [float(x) for x in sw.get("learning_rates", ())] or [None]
  out = []
  for e in sw.estimators:
    for n in sw.num_rollouts:
      for lr in lrs:
        for s in seeds:
          out.append(Run(e, int(n), s, lr, run_name(e, n, s, lr, with_seed=len(seeds) > 1,
                                                    with_lr=len(lrs) > 1)))
  return out


def rl_config(config, run: Run | str, num_rollouts: int | None = None
              ) -> ml_collections.ConfigDict:
  """One run's config: ``config.rl`` with the run's estimator, N, seed, learning rate (and the
  sweep's batch/steps). ``rl_config(config, estimator, n)`` is the seed-0 run."""
  if not isinstance(run, Run):
    run = Run(str(run), int(num_rollouts), 0, None, run_name(run, num_rollouts))
  c = ml_collections.ConfigDict(config.to_dict())
  c.rl.estimator = run.estimator
  c.rl.num_rollouts = int(run.num_rollouts)
  if config.experiment != "single":
    c.rl.batch_size = int(config.sweep.batch_size)
    c.rl.steps = int(config.sweep.steps)
    c.rl.seed = int(run.seed)
    if run.learning_rate is not None:
      c.rl.learning_rate = float(run.learning_rate)
  return c


def sft_config(config, sft_seed: int) -> ml_collections.ConfigDict:
  """The config of the SFT stage with seed ``sft_seed`` (a repeat of stage 1)."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.sft.seed = int(sft_seed)
  return c


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


def validate(config, mesh=None) -> None:
  """Raises ConfigError naming the field for any invalid value, before anything compiles."""
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  require(config.experiment in EXPERIMENTS, "config.experiment",
          f"must be one of {EXPERIMENTS}, got {config.experiment!r}")
  _positive_int(config.seed, "config.seed", 0)
  require(config.maze.size >= 5 and config.maze.size % 2 == 1, "config.maze.size",
          f"must be odd and >= 5, got {config.maze.size}")
  _positive_int(config.maze.num_test, "config.maze.num_test")
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
  unknown = sorted(set(rl.estimator_options) - set(estimators.METHODS))
  require(not unknown, "config.rl.estimator_options",
          f"must map estimator names to their options, e.g. {{'grpo': {{'std': 'sample'}}}}; "
          f"unknown names {unknown}")
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
  runs = grid_runs(config)
  require(len(runs) >= 1, "config.sweep.estimators", "no RL run configured")
  for name, n, *_ in runs:
    estimator = steps.base_estimator(name)
    require(estimator in estimators.METHODS, "config.rl.estimator",
            f"unknown estimator {estimator!r}; choose from {sorted(estimators.METHODS)} (a "
            f"'{steps.ENTROPY_SUFFIX}' suffix adds the entropy bonus rl.entropy_coef)")
    if name != estimator:
      require(rl.entropy_coef > 0, "config.rl.entropy_coef",
              f"must be > 0 for the run {name!r}")
    require(n >= 1, "config.rl.num_rollouts", f"must be >= 1, got {n}")
    opts = dict(rl.estimator_options[estimator]) if estimator in rl.estimator_options else {}
    try:  # Options the estimator rejects (e.g. truncation > N) fail here, not inside jit.
      steps.adv_fn(estimator, opts)(np.zeros((1, n), np.float32), np.zeros((1, n), np.float32))
    except ValueError as e:
      raise ConfigError(f"config.rl.estimator_options.{estimator}", f"with N={n}: {e}") from e
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
