"""Layering: the project's imports form no cycle (function-level imports included), the light
modules stay light, every module imports in a fresh interpreter, and driver modules stay small."""

import ast
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("maxrl_jax", "experiments", "benchmarks", "examples")
MAX_DRIVER_LINES = 350


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


def test_driver_modules_are_small():
  big = {}
  for m, path in _modules().items():
    if m.startswith("experiments."):
      n = sum(1 for _ in open(path, encoding="utf-8"))
      if n > MAX_DRIVER_LINES:
        big[m] = n
  assert not big, big
