r"""One command reproduces the didactic results and writes ``report.md``.

    python -m experiments.reproduce --workdir=runs/reproduce            # cpu presets (~30 min, 2 cores)
    python -m experiments.reproduce --preset=paper --workdir=gs://...  # paper scale (accelerators)
    python -m experiments.reproduce --preset=smoke                      # seconds-to-minutes, for tests

Runs the Bernoulli, ImageNet and maze drivers in sequence, each in its own sub-workdir
(``<workdir>/<experiment>``) through its importable ``train.run(config, workdir)``. Every driver
is resumable and returns at once when its ``summary.json`` is complete, so a second invocation
skips finished experiments and finishes an interrupted one. Then :mod:`experiments.report`
writes ``<workdir>/report.md``: figures, a table of final numbers per experiment, the paper's
numbers or claims beside them, and one verdict per claim computed from the metrics.
"""

from __future__ import annotations

import importlib
import json
import os
import time

from absl import app
from absl import flags
from absl import logging

from experiments import report
from maxrl_jax.train import logs
from maxrl_jax.train import mesh as mesh_lib

EXPERIMENTS = ("bernoulli", "imagenet", "maze")
TIMINGS_FILE = "timings.json"

_WORKDIR = flags.DEFINE_string("workdir", "runs/reproduce", "Output directory.")
_PRESET = flags.DEFINE_enum("preset", "cpu", ["smoke", "cpu", "paper"],
                            "Preset of every driver: cpu (default), paper (accelerators), smoke.")
_ONLY = flags.DEFINE_list("experiments", list(EXPERIMENTS), "Subset of experiments to run.")
_PUBLISH = flags.DEFINE_string(
    "publish", None, "Also copy report.md and its figures into this directory (e.g. docs), as "
    "report_<preset>.md and figures/.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False,
                                 "Only rebuild report.md from the finished runs.")


def load_timings(workdir: str) -> dict:
  path = os.path.join(workdir, TIMINGS_FILE)
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _save_timings(workdir: str, timings: dict) -> None:
  tmp = os.path.join(workdir, TIMINGS_FILE + ".tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(timings, f, indent=2)
  os.replace(tmp, os.path.join(workdir, TIMINGS_FILE))


def run_experiment(name: str, preset: str, workdir: str) -> dict:
  """Runs (or resumes, or skips when finished) one driver; returns its summary."""
  config = importlib.import_module(f"experiments.{name}.config").get_config(preset)
  train = importlib.import_module(f"experiments.{name}.train")
  return train.run(config, os.path.join(workdir, name))


def reproduce(workdir: str, preset: str = "cpu", experiments=EXPERIMENTS) -> str:
  """Runs every experiment of ``experiments`` with ``preset``; returns the report's path."""
  unknown = sorted(set(experiments) - set(EXPERIMENTS))
  if unknown:
    raise ValueError(f"--experiments: unknown {unknown}; choose from {EXPERIMENTS}")
  os.makedirs(workdir, exist_ok=True)
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
    if name not in timings or not timings[name].get("complete"):
      # Wall time of the invocation that finished the experiment (a skip takes ~0 s).
      timings[name] = {"seconds": timings.get(name, {}).get("seconds", 0.0) + seconds,
                       "complete": bool(summaries[name].get("complete"))}
    if mesh_lib.is_chief():
      _save_timings(workdir, timings)
    print(f"[reproduce] {name}: done in {logs.format_duration(seconds)}", flush=True)
  path = os.path.join(workdir, "report.md")
  if mesh_lib.is_chief():
    report.write_report(workdir, preset, summaries, timings, path)
    print(f"[reproduce] report: {path}", flush=True)
  return path


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
  mesh_lib.initialize_distributed()
  if _REPORT_ONLY.value:
    summaries = {}
    for name in _ONLY.value:
      path = os.path.join(_WORKDIR.value, name, "summary.json")
      with open(path, encoding="utf-8") as f:
        summaries[name] = json.load(f)
    out = os.path.join(_WORKDIR.value, "report.md")
    report.write_report(_WORKDIR.value, _PRESET.value, summaries, load_timings(_WORKDIR.value),
                        out)
    print(f"[reproduce] report: {out}")
  else:
    out = reproduce(_WORKDIR.value, _PRESET.value, tuple(_ONLY.value))
  if _PUBLISH.value and mesh_lib.is_chief():
    copy = report.publish(out, _PUBLISH.value, f"report_{_PRESET.value}.md")
    print(f"[reproduce] published: {copy}")


if __name__ == "__main__":
  app.run(main)
