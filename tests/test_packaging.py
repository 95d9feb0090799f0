"""Packaging: one version, declared console scripts exist, every import is a declared dependency.

Static checks (pyproject.toml and the sources' ASTs): nothing here imports the drivers.
"""

import ast
import importlib.metadata
import os
import re
import sys
import tomllib

import pytest

import maxrl_jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Import name -> distribution name, for every third-party package the library and drivers import.
_DIST = {
    "absl": "absl-py", "chex": "chex", "etils": "etils", "flax": "flax", "jax": "jax",
    "matplotlib": "matplotlib", "ml_collections": "ml-collections", "numpy": "numpy",
    "optax": "optax", "orbax": "orbax-checkpoint", "safetensors": "safetensors",
    "sklearn": "scikit-learn", "tensorboardX": "tensorboardX", "tensorflow": "tensorflow-cpu",
    "tensorflow_datasets": "tensorflow-datasets",
}
_CORE_MODULES = ("estimators.py", "theory.py", "metrics.py")


def _pyproject():
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)


def _names(requirements):
  """Distribution names in a list of requirement strings, self-references expanded."""
  return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-")
          for r in requirements}


def _expanded(extra, project):
  out, extras = set(), project["optional-dependencies"]
  for req in extras[extra]:
    m = re.fullmatch(r"maxrl_jax\[([^\]]+)\]", req)
    if m:
      for sub in m.group(1).split(","):
        out |= _expanded(sub.strip(), project)
    else:
      out |= _names([req])
  return out


def _third_party_imports(path):
  tree = ast.parse(open(path, encoding="utf-8").read(), filename=path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      mods = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      mods = [node.module]
    else:
      continue
    for mod in mods:
      top = mod.split(".")[0]
      if top not in sys.stdlib_module_names and top not in ("maxrl_jax", "experiments",
                                                            "__future__"):
        yield top


def _sources(*dirs):
  for d in dirs:
    for root, _, files in os.walk(os.path.join(REPO, d)):
      for name in files:
        if name.endswith(".py"):
          yield os.path.join(root, name)


def test_version_has_one_source():
  project = _pyproject()["project"]
  assert "version" in project["dynamic"] and "version" not in project
  attr = _pyproject()["tool"]["setuptools"]["dynamic"]["version"]["attr"]
  assert attr == "maxrl_jax.__version__"
  assert not os.path.exists(os.path.join(REPO, "setup.py"))
  try:
    installed = importlib.metadata.version("maxrl_jax")
  except importlib.metadata.PackageNotFoundError:
    pytest.skip("maxrl_jax is not installed")
  assert installed == maxrl_jax.__version__, "reinstall: pip install -e ."


def test_console_scripts_point_at_functions():
  scripts = _pyproject()["project"]["scripts"]
  assert set(scripts) == {"maxrl-bernoulli", "maxrl-imagenet", "maxrl-maze", "maxrl-reproduce"}
  for name, target in scripts.items():
    module, func = target.split(":")
    path = os.path.join(REPO, *module.split(".")) + ".py"
    tree = ast.parse(open(path, encoding="utf-8").read(), filename=path)
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert func in defined, f"{name} = {target}: {path} defines no {func}()"


def test_experiments_are_packaged():
  include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
  assert {"maxrl_jax", "maxrl_jax.*", "experiments", "experiments.*"} <= set(include)


def test_core_modules_import_only_core_dependencies():
  core = _names(_pyproject()["project"]["dependencies"])
  for name in _CORE_MODULES:
    for top in _third_party_imports(os.path.join(REPO, "maxrl_jax", name)):
      assert _DIST.get(top, top) in core, f"maxrl_jax/{name} imports {top}, not a core dependency"


def test_every_import_is_declared():
  project = _pyproject()["project"]
  declared = _names(project["dependencies"]) | _expanded("data", project)
  for path in _sources("maxrl_jax", "experiments", "benchmarks"):
    for top in _third_party_imports(path):
      assert top in _DIST, (f"{os.path.relpath(path, REPO)} imports {top}: add it to "
                            "pyproject.toml (an extra) and to _DIST in this test")
      assert _DIST[top].lower() in declared, f"{_DIST[top]} is not in the core or the data extra"
