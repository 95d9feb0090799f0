"""``report.md`` for :mod:`experiments.reproduce`: figures, final numbers, claims and verdicts.

Each section is its driver's ``claims.section`` (found through
:mod:`experiments.common.drivers`); it reads only the driver's ``summary.json`` (and, for the
ImageNet runs, each run's own summary), puts the paper's numbers or claims (from the paper)
beside this run's, and states per claim whether this run shows it. The verdicts are computed
from the metrics; nothing in the report is written by hand. Scale caveats are part of the claim text: a
CPU preset is a small analogue of the paper's experiment, not a reproduction of its numbers.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Mapping

from experiments import report_format as fmt
from experiments.common import drivers
from maxrl_jax.train import files
from maxrl_jax.train import logs

publish = fmt.publish


def write_report(workdir: str, preset: str, summaries: Mapping[str, Mapping[str, Any]],
                 timings: Mapping[str, Mapping[str, Any]], path: str) -> str:
  """Writes the report for ``summaries`` (``{experiment: summary}``) to ``path``."""
  report_dir = os.fspath(files.as_path(path).parent)
  now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  lines = [f"# MaxRL didactic experiments: reproduction report (`{preset}` presets)", "",
           f"Written {now} by `python -m experiments.reproduce --preset={preset}`. Every number "
           "and verdict below is computed from the runs in this directory.", ""]
  rows = [(name, "complete" if s.get("complete") else "INCOMPLETE",
           logs.format_duration(timings.get(name, {}).get("seconds", float("nan"))))
          for name, s in summaries.items()]
  lines += [fmt.markdown_table(["experiment", "status", "wall time"], rows), ""]
  for name, summary in summaries.items():
    exp_dir = os.path.join(workdir, name)
    if not summary.get("complete"):
      lines += [f"## {name}", "", "Not complete: rerun the same command to finish it.", ""]
      continue
    lines += [drivers.experiments()[name].section(summary, exp_dir, report_dir), ""]
  files.write_text(path, "\n".join(lines).rstrip() + "\n")
  return path
