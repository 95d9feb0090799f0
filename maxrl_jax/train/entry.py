"""The drivers' shared entry point: flags, distributed start-up, one preemption guard, errors.

Every ``experiments/*/main.py`` calls :func:`run_main` with a function of no arguments that runs
its orchestrator. :func:`run_main`:

* rejects positional arguments absl did not consume (a typo such as ``--config cpu``);
* keeps absl's ``--verbosity`` if given, else sets WARNING (orbax logs every save at INFO);
* calls :func:`maxrl_jax.train.mesh.initialize_distributed` (multi-host runs) and, on CPU,
  turns on JAX's persistent compilation cache (:func:`enable_compilation_cache`);
* enters ONE :class:`~maxrl_jax.train.loop.PreemptionGuard` for the whole process and installs
  it, so every stage of every orchestrator stops at its first chunk boundary after SIGTERM (or a
  Cloud TPU preemption notice), saves, and the orchestrator stops after that stage; the process
  then exits 0 and rerunning the same command resumes exactly;
* turns a :class:`~maxrl_jax.train.errors.ConfigError` into one line on stderr naming the field
  and exit status 2 (no traceback), and an I/O failure, a busy workdir or an unreadable final
  checkpoint into one line and exit status 1.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable

from absl import app
from absl import flags
from absl import logging

from maxrl_jax.train import checkpoint as checkpoint_lib
from maxrl_jax.train import files
from maxrl_jax.train import loop
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train import stage as stage_lib
from maxrl_jax.train.errors import ConfigError

EXIT_CONFIG_ERROR = 2
EXIT_RUN_ERROR = 1

_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False,
    "Resume a workdir even though its saved config.json differs in fields that change results "
    "(the new config is recorded; the results mix both).")


_PROFILE_STEPS = flags.DEFINE_integer(
    "profile_steps", 0,
    "Record a jax.profiler trace of this many training steps of every stage (after its first, "
    "compiling chunk) into <stage workdir>/profile; 0: off.")


def config_path(module_file: str, preset: str) -> str:
  """``<directory of module_file>/config.py:<preset>``: a config-flag default that works from
  any working directory."""
  return f"{os.path.join(os.path.dirname(os.path.abspath(module_file)), 'config.py')}:{preset}"


CACHE_ENV = "MAXRL_COMPILATION_CACHE"


def enable_compilation_cache() -> str | None:
  """Turns on JAX's persistent compilation cache for CPU runs (unless ``MAXRL_COMPILATION_CACHE=0``
  or ``JAX_COMPILATION_CACHE_DIR`` already chose a directory); returns the directory used.

  On CPU, compilation dominates the small presets: a rerun of the smoke reproduction took 39 s
  with a warm cache against 86 s without one (a first run gains nothing: 85 s). Accelerator runs
  keep JAX's defaults.
  """
  if os.environ.get(CACHE_ENV, "1").lower() in ("0", "false", "no"):
    return None
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  import jax  # pylint: disable=g-import-not-at-top
  if jax.default_backend() != "cpu":
    return None
  path = os.path.join(os.path.expanduser("~"), ".cache", "maxrl_jax", "jax_compilation_cache")
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  return path


def _main(body: Callable[[], Any], argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]!r} (flags are --name=value)",
                         exitcode=EXIT_CONFIG_ERROR)
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  stage_lib.set_allow_config_change(_ALLOW_CONFIG_CHANGE.value)
  stage_lib.set_profile_steps(_PROFILE_STEPS.value)
  mesh_lib.initialize_distributed()
  enable_compilation_cache()
  with loop.PreemptionGuard() as guard:
    loop.install(guard)
    try:
      body()
    except ConfigError as e:
      print(f"error: {e}", file=sys.stderr, flush=True)
      sys.exit(EXIT_CONFIG_ERROR)
    except (files.WorkdirIOError, files.WorkdirBusyError, checkpoint_lib.CheckpointError) as e:
      print(f"error: {e}", file=sys.stderr, flush=True)
      sys.exit(EXIT_RUN_ERROR)
    finally:
      loop.install(None)
  if guard.requested:
    print("preempted: progress is checkpointed; rerun the same command to resume", flush=True)


def run_main(body: Callable[[], Any], argv=None) -> None:
  """Parses flags (absl) and runs ``body()`` as described in the module docstring."""
  app.run(functools.partial(_main, body), argv=argv)
