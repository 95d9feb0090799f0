"""Layering: the project's imports form no cycle (function-level imports included), the light
modules stay light, every module imports in a fresh interpreter, every driver has the standard
modules (CONTRIBUTING.md) and nothing imports upward."""

import ast
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("maxrl_jax", "experiments", "benchmarks", "examples")
DRIVERS = ("bernoulli", "imagenet", "maze")
# The skeleton of every experiments/<driver>/ (CONTRIBUTING.md); "data|evaluate": at least one.
STANDARD_MODULES = ("config", "validation", "runs", "steps", "data|evaluate", "train",
                    "experiment", "analysis", "plots", "claims", "main")
# What reproduce.py and report.py may import of a driver: its interface.
INTERFACE = ("config", "experiment", "claims")
# Former module names kept as thin aliases while tests still import them.
ALIASES: tuple[str, ...] = ()


def _modules():
  out = {}
  for pkg in PACKAGES:
    for root, _, names in os.walk(os.path.join(REPO, pkg)):
      for name in names:
        if name.endswith(".py"):
          path = os.path.join(root, name)
          mod = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
          out[mod.removesuffix(".__init__")] = path
  return out


def _imports(path, modules):
  """Project modules imported anywhere in ``path`` (top level and inside functions)."""
  tree = ast.parse(open(path, encoding="utf-8").read())
  found = set()
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    for name in names:
      while name and name not in modules:
        name = name.rpartition(".")[0]
      if name:
        found.add(name)
  return found


def test_no_import_cycles():
  modules = _modules()
  graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
  # A package's __init__ may re-export its own submodules; that is not a cycle between layers.
  for m in graph:
    graph[m] = {d for d in graph[m] if not (m in modules and d.startswith(m + "."))}
  state, stack, cycles = {}, [], []

  def visit(m):
    state[m] = 1
    stack.append(m)
    for d in sorted(graph.get(m, ())):
      if state.get(d) == 1:
        cycles.append(stack[stack.index(d):] + [d])
      elif d not in state:
        visit(d)
    stack.pop()
    state[m] = 2

  for m in sorted(graph):
    if m not in state:
      visit(m)
  assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_light_modules_import_only_jax_chex_numpy():
  code = ("import sys\nimport maxrl_jax.estimators, maxrl_jax.theory, maxrl_jax.metrics\n"
          "heavy = sorted(m for m in ('scipy', 'flax', 'optax', 'orbax', 'tensorflow', "
          "'matplotlib', 'ml_collections', 'tensorboardX') if m in sys.modules)\n"
          "assert not heavy, heavy\n")
  res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert res.returncode == 0, res.stderr


def _is_entry(m: str) -> bool:
  """Entry modules define absl flags at import: each gets an interpreter of its own."""
  return m.endswith((".main", "__main__")) or m in ("experiments.reproduce",) or (
      m.startswith("benchmarks.") or m.startswith("examples."))


def _import_in_fresh_interpreter(mods):
  code = "import importlib\nfor m in %r:\n  importlib.import_module(m)\n" % (list(mods),)
  return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO), timeout=300)


def test_every_library_and_driver_module_imports_in_a_fresh_interpreter():
  res = _import_in_fresh_interpreter(sorted(m for m in _modules() if not _is_entry(m)))
  assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.slow
def test_every_entry_module_imports_in_a_fresh_interpreter():
  for m in sorted(m for m in _modules() if _is_entry(m) and not m.endswith("__main__")):
    res = _import_in_fresh_interpreter([m])
    assert res.returncode == 0, (m, res.stderr[-3000:])


def _graph():
  modules = _modules()
  return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def test_every_driver_has_the_standard_modules_and_declares_its_experiments():
  from experiments.common import drivers  # pylint: disable=g-import-not-at-top
  assert drivers.DRIVERS == DRIVERS
  modules = _modules()
  for driver in DRIVERS:
    for role in STANDARD_MODULES:
      assert any(f"experiments.{driver}.{r}" in modules for r in role.split("|")), (driver, role)
  import importlib  # pylint: disable=g-import-not-at-top
  for driver in DRIVERS:
    experiment = importlib.import_module(f"experiments.{driver}.experiment")
    claims = importlib.import_module(f"experiments.{driver}.claims")
    plots = importlib.import_module(f"experiments.{driver}.plots")
    assert callable(experiment.run) and callable(claims.section) and callable(plots.draw_all)
    assert importlib.import_module(f"experiments.{driver}").EXPERIMENTS
  assert list(drivers.experiments()) == ["bernoulli", "imagenet", "maze", "maze_scarce"]


def test_nothing_imports_upward():
  graph = _graph()
  bad = []
  for m, deps in graph.items():
    if m.startswith("maxrl_jax"):  # The library never imports a driver, a benchmark, an example.
      bad += [(m, d) for d in deps if not d.startswith("maxrl_jax")]
    parts = m.split(".")
    if m.startswith("experiments.common"):  # Shared by the drivers, so it imports none of them.
      bad += [(m, d) for d in deps if d.split(".")[1:2] and d.split(".")[1] in DRIVERS]
    if len(parts) == 3 and parts[1] in DRIVERS:
      driver, role = parts[1], parts[2]
      for d in deps:
        dp = d.split(".")
        if dp[0] != "experiments" or len(dp) < 2:
          continue
        if dp[1] in DRIVERS and dp[1] != driver:  # a driver never imports another one
          bad.append((m, d))
        if dp[1] == driver and len(dp) == 3:
          # Reading and drawing a workdir never needs its training or orchestration.
          if role in ("analysis", "plots", "claims") and dp[2] in ("train", "experiment", "main"):
            bad.append((m, d))
          if (dp[2] in ("experiment", "main") and role != "main" and role != dp[2]
              and m not in ALIASES):
            bad.append((m, d))  # the orchestrator is imported only by the entry point
  for m in ("experiments.reproduce", "experiments.report"):
    for d in graph[m]:
      dp = d.split(".")
      if len(dp) >= 2 and dp[1] in DRIVERS and not (len(dp) == 2 or dp[2] in INTERFACE):
        bad.append((m, d))
  assert not bad, bad
