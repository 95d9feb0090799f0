"""Checks an ImageNet comparison config before anything is compiled.

Every failure is a :class:`~maxrl_jax.train.errors.ConfigError` naming the field, e.g.
``config.runs[2].num_rollouts: must be >= 1, got 0``; the entry point prints it as one line.
"""

from __future__ import annotations

from experiments.common import options as options_lib
from experiments.imagenet import config as config_lib
from experiments.imagenet import objectives
from experiments.imagenet import runs as runs_lib
from maxrl_jax.models import resnet
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train.errors import require

_PRNG_IMPLS = ("rbg", "unsafe_rbg", "threefry2x32")
_SEARCH_METHODS = ("scan", "scan_unrolled", "sort")


def run_names(config) -> list[str]:
  """The comparison's run names (``config.runs`` after the learning-rate sweep's expansion)."""
  return [r["name"] for r in runs_lib.comparison_runs(config)]


def _int(value, field: str, minimum: int) -> int:
  require(isinstance(value, int) and not isinstance(value, bool), field,
          f"must be an integer, got {value!r}")
  require(value >= minimum, field, f"must be >= {minimum}, got {value}")
  return value


def _positive(value, field: str) -> float:
  require(isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0, field,
          f"must be a number > 0, got {value!r}")
  return float(value)


def _one_of(value, choices, field: str) -> None:
  require(value in choices, field, f"must be one of {list(choices)}, got {value!r}")


def validate_seeds(config) -> None:
  """``config.seeds``: one training of every run per seed (``config.seed`` is gone)."""
  require("seed" not in config, "config.seed",
          "replaced by config.seeds (a tuple of seeds, e.g. (0,); every run is trained once per "
          "seed)")
  seeds = config.get("seeds", None)
  require(isinstance(seeds, (tuple, list)) and len(seeds) >= 1, "config.seeds",
          f"must be a non-empty tuple of integers, got {seeds!r}")
  for i, s in enumerate(seeds):
    _int(s, f"config.seeds[{i}]", 0)
  require(len(set(seeds)) == len(seeds), "config.seeds", f"seeds must be distinct, got {seeds}")


def validate_sweep(config) -> None:
  """``config.sweep_learning_rates`` and the runs' own ``learning_rate``."""
  rates = config.get("sweep_learning_rates", ())
  require(isinstance(rates, (tuple, list)), "config.sweep_learning_rates",
          f"must be a tuple of learning rates (empty: no sweep), got {rates!r}")
  for i, lr in enumerate(rates):
    _positive(lr, f"config.sweep_learning_rates[{i}]")
  require(len({float(lr) for lr in rates}) == len(rates), "config.sweep_learning_rates",
          f"rates must be distinct, got {tuple(rates)}")
  for i, run in enumerate(config.runs):
    if "learning_rate" in run:
      require(not rates, f"config.runs[{i}].learning_rate",
              "a run's own learning rate cannot be combined with config.sweep_learning_rates")
      _positive(run["learning_rate"], f"config.runs[{i}].learning_rate")


def validate_runs(config) -> None:
  """The seeds, the runs, the learning-rate sweep and the estimator options
  (``{method: {option: value}}``)."""
  require(len(config.runs) >= 1, "config.runs", "needs at least one run")
  validate_seeds(config)
  base = [str(r["name"]) for r in config.runs]
  require(len(set(base)) == len(base), "config.runs", f"run names must be unique: {base}")
  validate_sweep(config)
  options_lib.validate(config.estimators, field="config.estimators")
  for i, run in enumerate(config.runs):
    field = f"config.runs[{i}]"
    extra = sorted(set(run) - {"name", "objective", "num_rollouts", "learning_rate"})
    require(not extra, f"{field}.{extra[0] if extra else ''}",
            "not a run field (estimator options go in config.estimators.<method>)")
    _one_of(run["objective"], objectives.objective_names(), f"{field}.objective")
    n = _int(run.get("num_rollouts", 1), f"{field}.num_rollouts", 1)
    objective = run["objective"]
    if objective != objectives.CROSS_ENTROPY:  # Its options at its N (e.g. truncation <= N).
      given = options_lib.of(config.estimators, objective, field="config.estimators")
      options_lib.validate({objective: given}, n, field="config.estimators")
  names = run_names(config)
  require(len(set(names)) == len(names), "config.sweep_learning_rates",
          f"gives repeated run names: {names}")
  a = config.analysis
  for i, name in enumerate(a.runs):
    require(name in names, f"config.analysis.runs[{i}]",
            f"must be one of the run names {names}, got {name!r}")
  _int(a.batch_size, "config.analysis.batch_size", 1)
  _int(a.num_images, "config.analysis.num_images", 1)
  _int(a.num_rollouts, "config.analysis.num_rollouts", 1)


def validate(config, mesh) -> None:
  """Checks the comparison config (``ConfigError`` naming the field) before compiling."""
  validate_runs(config)
  d, m, o, t = config.data, config.model, config.optim, config.train
  _int(d.image_size, "config.data.image_size", 1)
  _int(d.num_eval_examples, "config.data.num_eval_examples", 0)
  _int(d.num_train_examples, "config.data.num_train_examples", 0)
  _int(d.shuffle_buffer, "config.data.shuffle_buffer", 1)
  _one_of(d.eval_transform, config_lib.EVAL_TRANSFORMS, "config.data.eval_transform")
  require(len(d.mean_rgb) == 3, "config.data.mean_rgb", "needs 3 values")
  require(len(d.std_rgb) == 3 and all(s > 0 for s in d.std_rgb), "config.data.std_rgb",
          "needs 3 values > 0")
  _one_of(m.name, sorted(resnet.ARCHITECTURES), "config.model.name")
  _one_of(m.stem, ("imagenet", "small"), "config.model.stem")
  _one_of(m.dtype, ("float32", "bfloat16"), "config.model.dtype")
  _one_of(m.init, config_lib.INITS, "config.model.init")
  _int(m.width, "config.model.width", 1)
  mesh_lib.check_global_batch(o.batch_size, mesh, "config.optim.batch_size")
  mesh_lib.check_global_batch(t.eval_batch_size, mesh, "config.train.eval_batch_size")
  _positive(o.learning_rate, "config.optim.learning_rate")
  _int(o.num_steps, "config.optim.num_steps", 0)
  if not o.num_steps:
    _positive(o.num_epochs, "config.optim.num_epochs")
  require(0.0 <= o.momentum < 1.0, "config.optim.momentum", f"must be in [0, 1), got {o.momentum}")
  require(o.weight_decay >= 0, "config.optim.weight_decay", f"must be >= 0, got {o.weight_decay}")
  require(o.entropy_coef >= 0, "config.optim.entropy_coef", f"must be >= 0, got {o.entropy_coef}")
  require(o.warmup_epochs >= 0, "config.optim.warmup_epochs",
          f"must be >= 0, got {o.warmup_epochs}")
  require(o.warmup_steps >= -1, "config.optim.warmup_steps",
          f"must be >= 0 (or -1: from warmup_epochs), got {o.warmup_steps}")
  for name in ("chunk_steps", "eval_every", "checkpoint_every", "log_every", "max_to_keep",
               "prefetch_chunks"):
    _int(t[name], f"config.train.{name}", 1)
  require(t.eval_every % t.chunk_steps == 0, "config.train.eval_every",
          f"must be a multiple of config.train.chunk_steps={t.chunk_steps}, got {t.eval_every}")
  _int(config.analysis.step, "config.analysis.step", 1)
  require(config.analysis.step % t.chunk_steps == 0, "config.analysis.step",
          f"must be a multiple of config.train.chunk_steps={t.chunk_steps} (a chunk boundary), "
          f"got {config.analysis.step}")
  _one_of(t.search_method, _SEARCH_METHODS, "config.train.search_method")
  _one_of(t.prng_impl, _PRNG_IMPLS, "config.train.prng_impl")
  require(len(config.eval.ks) >= 1, "config.eval.ks", "needs at least one k")
  for i, k in enumerate(config.eval.ks):
    _int(k, f"config.eval.ks[{i}]", 1)


def validate_schedule(config, total_steps: int) -> None:
  """Checks that need the number of training steps (known once the data size is)."""
  if config.analysis.runs:
    require(config.analysis.step <= total_steps, "config.analysis.step",
            f"must be <= the {total_steps} training steps, got {config.analysis.step}")
