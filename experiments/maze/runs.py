"""The maze experiment's runs: the grid of RL runs, their names and their configs (the config's
validation is :mod:`experiments.maze.validation`)."""

from __future__ import annotations

from typing import NamedTuple

import ml_collections


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
