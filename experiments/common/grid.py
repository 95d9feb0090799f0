"""The seed/run grid every driver uses: seeds of a config field, run names with their suffixes,
and the runs x seeds product.

A run's *name* is ``<base>[_lr<rate>][_s<seed>]``: a suffix appears only where its axis has more
than one value, so a single-seed, single-rate grid keeps the bare base names (the layout of the
workdirs written before seeds and sweeps existed). The name is a directory name only: a run's
identity (objective or estimator, N, rate, seed) is recorded in its ``summary.json`` /
``config.json`` and read back from there, never parsed from the name.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence


def seeds(values: Iterable[Any] | None, default: Sequence[int] = (0,)) -> tuple[int, ...]:
  """``values`` as a tuple of ints (``default`` when None or empty)."""
  out = tuple(int(s) for s in (values or ()))
  return out or tuple(int(s) for s in default)


def lr_suffix(learning_rate: float) -> str:
  """``_lr<rate>`` with the rate in ``%g`` form (``_lr0.1``, ``_lr1e-05``)."""
  return f"_lr{float(learning_rate):g}"


def seed_suffix(seed: int) -> str:
  return f"_s{int(seed)}"


def run_name(base: str, *, seed: int | None = None, learning_rate: float | None = None,
             with_seed: bool = False, with_lr: bool = False) -> str:
  """``<base>[_lr<rate>][_s<seed>]`` (the suffixes only when asked: their axis has > 1 value)."""
  name = str(base)
  if with_lr:
    name += lr_suffix(learning_rate)
  if with_seed:
    name += seed_suffix(seed)
  return name


def expand(runs: Sequence[dict], run_seeds: Sequence[int]) -> list[dict]:
  """Every training of ``runs`` x ``run_seeds``, seed-major (all runs of the first seed first).

  Each is the run's dict plus ``seed`` and ``dir`` (``<name>`` with one seed, ``<name>_s<seed>``
  with several); ``name`` stays the run's (shared by its seeds).
  """
  many = len(run_seeds) > 1
  return [dict(r, seed=int(s), dir=run_name(r["name"], seed=s, with_seed=many))
          for s in run_seeds for r in runs]
