r"""One command reproduces the didactic results and writes ``report.md``.

    python -m experiments.reproduce --workdir=runs/reproduce            # cpu presets (~30 min, 2 cores)
    python -m experiments.reproduce --preset=paper --workdir=gs://...  # paper scale (accelerators)
    python -m experiments.reproduce --preset=smoke                      # seconds-to-minutes, for tests

Runs the Bernoulli, ImageNet and maze drivers (the maze sweep and its data-scarce regime) in
sequence, each in its own sub-workdir
(``<workdir>/<experiment>``) through its orchestrator's ``run(config, workdir)`` (the driver
interface of :mod:`experiments.common.drivers`). Every driver
is resumable and returns at once when its ``summary.json`` is complete, so a second invocation
skips finished experiments and finishes an interrupted one. After SIGTERM the running stage
checkpoints, the reproduction stops there (no report is written from partial results) and the
process exits 0; the same command resumes. Then :mod:`experiments.report` writes
``<workdir>/report.md``: figures, a table of final numbers per experiment, the paper's numbers
or claims beside them, and one verdict per claim computed from the metrics.
"""

from __future__ import annotations

import importlib.util
import os
import textwrap
import time

from absl import flags

from experiments import report
from experiments.common import drivers
from maxrl_jax.train import entry
from maxrl_jax.train import files
from maxrl_jax.train import logs
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train.errors import ConfigError

# Every driver's experiments (experiments/<driver>/experiment.py EXPERIMENTS), in order.
EXPERIMENTS = tuple(drivers.experiments())
TIMINGS_FILE = "timings.json"

_WORKDIR = flags.DEFINE_string("workdir", "runs/reproduce", "Output directory.")
_PRESET_NAMES = ("smoke", "cpu", "paper")
_PRESET = flags.DEFINE_enum("preset", "cpu", list(_PRESET_NAMES),
                            "Preset of every driver: cpu (default), paper (accelerators), smoke.")
_ONLY = flags.DEFINE_list("experiments", list(EXPERIMENTS), "Subset of experiments to run.")
_PUBLISH = flags.DEFINE_string(
    "publish", None, "Also copy report.md and its figures into this directory (e.g. docs), as "
    "report_<preset>.md and figures/.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False,
                                 "Only rebuild report.md from the finished runs.")


def load_timings(workdir: str) -> dict:
  return files.read_json(files.as_path(workdir) / TIMINGS_FILE) or {}


def run_experiment(name: str, preset: str, workdir: str) -> dict:
  """Runs (or resumes, or skips when finished) one driver; returns its summary."""
  return drivers.experiments()[name].run(preset, os.path.join(workdir, name))


def reproduce(workdir: str, preset: str = "cpu", experiments=EXPERIMENTS) -> str | None:
  """Runs every experiment of ``experiments`` with ``preset``; returns the report's path (None
  when a stage was preempted: nothing is reported from partial results)."""
  unknown = sorted(set(experiments) - set(EXPERIMENTS))
  if unknown:
    raise ConfigError("--experiments", f"unknown {unknown}; choose from {EXPERIMENTS}")
  files.makedirs(workdir)
  timings = load_timings(workdir)
  summaries = {}
  t_all = time.perf_counter()
  for i, name in enumerate(experiments, start=1):
    elapsed = logs.format_duration(time.perf_counter() - t_all)
    print(f"[reproduce] ({i}/{len(experiments)}) {name}:{preset}  (elapsed {elapsed})",
          flush=True)
    t0 = time.perf_counter()
    summaries[name] = run_experiment(name, preset, workdir)
    seconds = time.perf_counter() - t0
    if summaries[name].get("preempted") or summaries[name].get("stopped") == "preempted":
      timings[name] = {"seconds": timings.get(name, {}).get("seconds", 0.0) + seconds,
                       "complete": False}
      if mesh_lib.is_chief():
        files.write_json(files.as_path(workdir) / TIMINGS_FILE, timings)
      print(f"[reproduce] {name}: preempted; rerun the same command to resume", flush=True)
      return None
    if name not in timings or not timings[name].get("complete"):
      # Wall time of the invocation that finished the experiment (a skip takes ~0 s).
      timings[name] = {"seconds": timings.get(name, {}).get("seconds", 0.0) + seconds,
                       "complete": bool(summaries[name].get("complete"))}
    if mesh_lib.is_chief():
      files.write_json(files.as_path(workdir) / TIMINGS_FILE, timings)
    print(f"[reproduce] {name}: done in {logs.format_duration(seconds)}", flush=True)
  path = os.path.join(workdir, "report.md")
  if mesh_lib.is_chief():
    report.write_report(workdir, preset, summaries, timings, path)
    print(f"[reproduce] report: {path}", flush=True)
  return path


def main() -> None:
  workdir = _WORKDIR.value
  if _REPORT_ONLY.value:
    summaries = {name: files.read_json(os.path.join(workdir, name, "summary.json"))
                 for name in _ONLY.value}
    missing = [name for name, s in summaries.items() if s is None]
    if missing:
      raise files.WorkdirIOError(os.path.join(workdir, missing[0], "summary.json"),
                                 FileNotFoundError(2, "no summary"))
    out = os.path.join(workdir, "report.md")
    report.write_report(workdir, _PRESET.value, summaries, load_timings(workdir), out)
    print(f"[reproduce] report: {out}")
  else:
    out = reproduce(workdir, _PRESET.value, tuple(_ONLY.value))
  if out and _PUBLISH.value and mesh_lib.is_chief():
    copy = report.publish(out, _PUBLISH.value, f"report_{_PRESET.value}.md")
    print(f"[reproduce] published: {copy}")


def presets_help() -> str:
  """``--help`` text: the presets ``--preset`` selects, and each experiment's config file."""
  lines = [f"presets (--preset=<name>): {', '.join(_PRESET_NAMES)}. Each experiment runs this "
           "preset of its config file:"]
  for name, experiment in drivers.experiments().items():
    spec = importlib.util.find_spec(f"experiments.{experiment.driver}.config")
    if spec is None or not spec.origin:
      continue
    lines.append(f"  {name} ({experiment.preset.format(preset='<name>')}): {spec.origin}")
    lines.extend(textwrap.wrap(", ".join(entry.config_presets(spec.origin)), width=96,
                               initial_indent="    presets: ", subsequent_indent="      "))
  return "\n".join(lines)


def cli() -> None:
  """Console script ``maxrl-reproduce``."""
  entry.run_main(main, extra_help=presets_help())


if __name__ == "__main__":
  cli()
