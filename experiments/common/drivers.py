"""The driver interface :mod:`experiments.reproduce` and :mod:`experiments.report` use.

A driver is a package ``experiments/<driver>/`` with the standard modules (CONTRIBUTING.md).
Three of them form its interface:

* ``config.get_config(preset)``: the presets;
* ``EXPERIMENTS`` in the package's ``__init__.py`` (cheap to import): ``{experiment name:
  preset pattern}`` (``"{preset}"`` is the reproduction's preset, e.g. the maze's
  ``"maze_scarce": "{preset}_scarce"``);
* ``experiment.run(config, workdir) -> summary`` (resumable; complete when ``summary.json`` is);
* ``claims.section(summary, exp_dir, report_dir) -> str``: its section of ``report.md``.

Nothing else of a driver is imported from outside it (``tests/test_layering.py`` checks).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping

# The drivers, in the order of the reproduction and its report.
DRIVERS = ("bernoulli", "imagenet", "maze")


@dataclasses.dataclass(frozen=True)
class Experiment:
  name: str      # e.g. "maze_scarce": its sub-workdir and report section
  driver: str    # e.g. "maze"
  preset: str    # the preset pattern, e.g. "{preset}_scarce"

  def module(self, role: str):
    """The driver's module ``role`` (``config``, ``experiment`` or ``claims``)."""
    if role not in ("config", "experiment", "claims"):
      raise ValueError(f"{role!r} is not part of the driver interface")
    return importlib.import_module(f"experiments.{self.driver}.{role}")

  def config(self, preset: str):
    return self.module("config").get_config(self.preset.format(preset=preset))

  def run(self, preset: str, workdir: str) -> dict:
    return self.module("experiment").run(self.config(preset), workdir)

  def section(self, summary: Mapping[str, Any], exp_dir: str, report_dir: str) -> str:
    return self.module("claims").section(summary, exp_dir, report_dir)


def experiments() -> dict[str, Experiment]:
  """Every experiment of every driver, in reproduction order."""
  out = {}
  for driver in DRIVERS:
    declared = importlib.import_module(f"experiments.{driver}").EXPERIMENTS
    for name, preset in declared.items():
      out[name] = Experiment(name=name, driver=driver, preset=preset)
  return out
