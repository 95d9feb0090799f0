"""The runs of the ImageNet comparison, their names and their configs.

A comparison config (:mod:`experiments.imagenet.config`) lists ``runs`` (each an objective and
its N), ``seeds`` and optionally ``sweep_learning_rates``; :func:`trained_runs` is every training
(run x rate x seed) with its directory (``<name>[_lr<rate>][_s<seed>]``, the seed/run grid of
:mod:`experiments.common.grid`) and :func:`run_config` the config of one training. A training's
identity is recorded in its ``summary.json`` (``run``: name, objective, N; the comparison's
``runs`` entries: seed, learning rate), never parsed from its directory name.
"""

from __future__ import annotations

import copy

import ml_collections

from experiments.common import grid


def run_dir_name(name: str, seed: int, num_seeds: int) -> str:
  """The directory of run ``name`` trained with ``seed``: ``<name>`` when the comparison has one
  seed (the layout of single-seed workdirs), ``<name>_s<seed>`` when it has several."""
  return grid.run_name(name, seed=seed, with_seed=num_seeds > 1)


def lr_run_name(name: str, learning_rate: float) -> str:
  """The name of run ``name`` in a learning-rate sweep, e.g. ``maxrl_n16_lr0.1``."""
  return grid.run_name(name, learning_rate=learning_rate, with_lr=True)


def comparison_runs(config) -> list[dict]:
  """``config.runs`` with the learning-rate sweep expanded: one dict per run of the comparison.

  Each is ``{"name", "base", "objective", "num_rollouts", "learning_rate"}``: ``base`` is the
  name in ``config.runs``; with ``config.sweep_learning_rates`` every run becomes one run per
  rate, named ``<base>_lr<rate>`` (:func:`lr_run_name`); ``learning_rate`` is the run's own
  (the run's ``learning_rate`` key, else ``config.optim.learning_rate``).
  """
  rates = tuple(config.get("sweep_learning_rates", ()) or ())
  out = []
  for r in config.runs:
    entry = {"base": str(r["name"]), "objective": str(r["objective"]),
             "num_rollouts": int(r.get("num_rollouts", 1))}
    if rates:
      out += [dict(entry, name=lr_run_name(r["name"], lr), learning_rate=float(lr))
              for lr in rates]
    else:
      lr = r.get("learning_rate", config.optim.learning_rate)
      out.append(dict(entry, name=str(r["name"]), learning_rate=float(lr)))
  return out


def seeds(config) -> tuple[int, ...]:
  """The comparison's seeds (``config.seeds``; one training of every run per seed)."""
  return grid.seeds(config.get("seeds", (0,)))


def trained_runs(config) -> list[dict]:
  """Every training of the comparison, seed by seed (all runs of the first seed first).

  Each is a :func:`comparison_runs` dict plus ``seed`` and ``dir`` (:func:`run_dir_name`);
  ``name`` stays the comparison run's name (shared by its seeds).
  """
  return grid.expand(comparison_runs(config), seeds(config))


def run_config(config, run: dict, seed: int | None = None) -> ml_collections.ConfigDict:
  """The comparison config specialised to one training: ``config.run`` holds the run and its
  estimator's options (``config.estimators[objective]``), ``config.seed`` the training's seed
  (``seed``, else the run's ``seed`` key, else the first of ``config.seeds``) and
  ``config.optim.learning_rate`` the run's own when it has one; ``config.runs``,
  ``config.seeds`` and ``config.sweep_learning_rates`` are dropped. The run's name is its
  directory's (``run["dir"]`` when given).

  With one seed (0) and no sweep the result is the same config as before seeds and sweeps
  existed, so single-seed workdirs resume and train bit-identically.
  """
  c = copy.deepcopy(config)
  objective = str(run["objective"])
  options = {}
  if objective in config.estimators:
    options = dict(config.estimators[objective].to_dict())
  if seed is None:
    seed = run.get("seed", seeds(config)[0])
  with c.unlocked():
    c.run = ml_collections.ConfigDict({
        "name": str(run.get("dir", run["name"])), "objective": objective,
        "num_rollouts": int(run.get("num_rollouts", 1))})
    c.run.options = ml_collections.ConfigDict(options)
    c.seed = int(seed)
    if run.get("learning_rate") is not None:
      c.optim.learning_rate = float(run["learning_rate"])
    for field in ("runs", "seeds", "sweep_learning_rates"):
      if field in c:
        del c[field]
  return c
