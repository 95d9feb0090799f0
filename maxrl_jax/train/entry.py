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
  checkpoint into one line and exit status 1;
* answers ``--help`` (also ``-?``, ``--helpshort``) with the driver's module docstring, the flags
  of the driver module and of this module (e.g. ``--config``, ``--workdir``,
  ``--allow_config_change``), and the presets of the driver's config file, then exits 0; the
  same whether the driver runs as a console script (``maxrl-maze``, where absl alone would only
  print ``USAGE: maxrl-maze [flags]``) or as ``python -m experiments.maze.main``.
  ``--helpfull`` adds every flag of every imported module (absl's, chex's, orbax's).
"""

from __future__ import annotations

import ast
import functools
import os
import re
import sys
import textwrap
import types
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


def config_presets(config_file: str | os.PathLike) -> tuple[str, ...]:
  """The preset names that ``config_file``'s ``get_config(preset)`` accepts, read from its source.

  The file is parsed, not executed: a module-level ``PRESETS`` (a tuple, list or set of names, or
  a dict keyed by them) if there is one; otherwise every string that ``get_config`` compares its
  first argument with (``preset == "cpu"``, ``preset in ("paper", "cpu")``, ``not in``), in the
  order they appear. Returns ``()`` if neither is found.
  """
  with open(config_file, encoding="utf-8") as f:
    tree = ast.parse(f.read(), filename=os.fspath(config_file))
  for node in tree.body:
    if isinstance(node, ast.Assign):
      targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
      targets, value = [node.target], node.value
    else:
      continue
    if any(isinstance(t, ast.Name) and t.id == "PRESETS" for t in targets):
      items = value.keys if isinstance(value, ast.Dict) else getattr(value, "elts", [])
      names = _strings(items)
      if names:
        return names
  for node in tree.body:
    if isinstance(node, ast.FunctionDef) and node.name == "get_config" and node.args.args:
      arg = node.args.args[0].arg
      found = []
      for sub in ast.walk(node):
        if (isinstance(sub, ast.Compare) and isinstance(sub.left, ast.Name)
            and sub.left.id == arg
            and all(isinstance(op, (ast.Eq, ast.In, ast.NotIn)) for op in sub.ops)):
          for comp in sub.comparators:
            found.extend(_strings(getattr(comp, "elts", [comp])))
      return tuple(dict.fromkeys(found))
  return ()


def _strings(nodes) -> tuple[str, ...]:
  return tuple(n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str))


_CONFIG_DEFAULT = re.compile(r"^(?P<path>.+\.py)(?::(?P<preset>[^:]*))?$")


def _module_key(module: types.ModuleType) -> str:
  """The name absl registered ``module``'s flags under (``__main__``: the script path)."""
  return sys.argv[0] if module.__name__ == "__main__" else module.__name__


def presets_help(module: types.ModuleType) -> str:
  """For each config-file flag of ``module`` (``config_flags.DEFINE_config_file`` with a
  ``<file>.py:<preset>`` default), the file's presets (:func:`config_presets`)."""
  out = []
  for flag in flags.FLAGS.flags_by_module_dict().get(_module_key(module), []):
    match = _CONFIG_DEFAULT.match(str(getattr(flag, "default_unparsed", "") or ""))
    if not match or not os.path.isfile(match.group("path")):
      continue
    path, default = match.group("path"), match.group("preset")
    names = config_presets(path)
    listed = textwrap.fill(", ".join(names) or "(none found)", width=96, initial_indent="  ",
                           subsequent_indent="  ")
    out.append(f"presets of --{flag.name} ({path}):\n{listed}\n"
               f"  choose one with --{flag.name}={path}:<preset>"
               + (f" (default: {default})" if default else "") + ";\n"
               f"  override any field with --{flag.name}.<field>=<value>, e.g. "
               f"--{flag.name}.seed=1")
  return "\n\n".join(out)


def usage_text(module: types.ModuleType, *, full: bool = False, extra_help: str = "") -> str:
  """The ``--help`` text of a driver: ``module``'s docstring, its flags and this module's shared
  ones (``full``: every flag of every module), its config presets, then ``extra_help``."""
  doc = (module.__doc__ or f"USAGE: {os.path.basename(sys.argv[0])} [flags]").strip("\n")
  if full:
    flag_help = flags.FLAGS.get_help()
  else:
    parts = [flags.FLAGS.module_help(_module_key(module)), flags.FLAGS.module_help(__name__)]
    flag_help = "\n".join(p for p in parts if p.strip())
  sections = [doc, "flags:" + flag_help.rstrip()]
  presets = presets_help(module)
  if presets:
    sections.append(presets)
  if extra_help:
    sections.append(extra_help.strip("\n"))
  if not full:
    sections.append("Try --helpfull to get a list of all flags.")
  return "\n\n".join(sections) + "\n"


class _HelpFlag(flags.BooleanFlag):
  """``--help``/``-?``/``--helpshort``/``--helpfull`` printing :func:`usage_text` (exit 0)."""

  def __init__(self, name: str, short_name: str | None, full: bool,
               module: types.ModuleType, extra_help: str):
    super().__init__(name, False, "show full help" if full else "show this help",
                     short_name=short_name, allow_hide_cpp=True)
    self._full, self._module, self._extra_help = full, module, extra_help

  def parse(self, argument) -> None:
    if self._parse(argument):
      sys.stdout.write(usage_text(self._module, full=self._full, extra_help=self._extra_help))
      sys.stdout.flush()
      sys.exit(0)


def install_help(module: types.ModuleType, extra_help: str = "") -> None:
  """Replaces absl's help flags (which describe ``__main__``: nothing under a console script) by
  ones that describe ``module``; idempotent."""
  app.define_help_flags()
  for name, short, full in (("help", "?", False), ("helpshort", None, False),
                            ("helpfull", None, True)):
    for key in (name, short):
      if key and key in flags.FLAGS:
        delattr(flags.FLAGS, key)
    flags.DEFINE_flag(_HelpFlag(name, short, full, module, extra_help), module_name=app.__name__)


def _main(body: Callable[[], Any], argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]!r} (flags are --name=value)",
                         exitcode=EXIT_CONFIG_ERROR)
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  options = stage_lib.RunOptions(allow_config_change=_ALLOW_CONFIG_CHANGE.value,
                                 profile_steps=_PROFILE_STEPS.value)
  mesh_lib.initialize_distributed()
  enable_compilation_cache()
  with loop.PreemptionGuard() as guard:
    loop.install(guard)
    try:
      with stage_lib.run_options(options):  # per invocation, not process globals
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


def run_main(body: Callable[[], Any], argv=None, *, extra_help: str = "") -> None:
  """Parses flags (absl) and runs ``body()`` as described in the module docstring.

  ``--help`` describes the module that defines ``body`` (its docstring, flags and config
  presets), followed by ``extra_help``.
  """
  install_help(sys.modules[getattr(body, "__module__", "__main__")], extra_help)
  app.run(functools.partial(_main, body), argv=argv)
