"""The one seed-statistics helper: a run's value over its seeds (mean, min, max, std).

Every driver reports a run trained with several seeds by the seed mean and its spread (min-max
band, sample standard deviation); the paper's figures average over seeds the same way (e.g.
Figure 6's bands). Values keep their dtype (float32 curves give float32 means), and a missing
value (None) is dropped, while NaN (e.g. a diverged seed) propagates.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np


def values(seed_values: Iterable[Any]) -> list:
  """The values that exist (None dropped)."""
  return [v for v in seed_values if v is not None]


def stats(seed_values: Sequence[Any] | np.ndarray, ddof: int = 1) -> dict[str, float | None]:
  """``{"mean", "min", "max", "std"}`` over seeds (axis 0); ``std`` with ``ddof`` (the sample
  standard deviation by default: None with a single value; ``ddof=0``: the population one)."""
  v = np.asarray(seed_values)
  std = float(np.std(v, ddof=ddof)) if len(v) > ddof else None
  return {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)),
          "std": std}


def mean(seed_values: Iterable[Any]) -> float:
  """Mean of the values that exist (nan when none does, e.g. every seed diverged)."""
  v = values(seed_values)
  return float(np.mean(np.asarray(v, np.float64))) if v else math.nan


def band(curves: Sequence[Sequence[float]] | np.ndarray
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(mean, min, max)`` over seeds (axis 0) of per-seed curves ``[seeds, points]``."""
  v = np.asarray(curves)
  return v.mean(0), v.min(0), v.max(0)
