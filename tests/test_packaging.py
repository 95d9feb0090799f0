"""Packaging: one version, declared console scripts exist, every import is a declared dependency.

Static checks (pyproject.toml and the sources' ASTs): nothing here imports the drivers.
"""

import ast
import importlib.metadata
import os
import re
import subprocess
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
  try:
    installed = importlib.metadata.version("maxrl_jax")
  except importlib.metadata.PackageNotFoundError:
    pytest.skip("maxrl_jax is not installed")
  assert installed == maxrl_jax.__version__, "reinstall: pip install -e ."


def test_setup_py_is_a_shim_over_pyproject():
  """The top-level ``setup.py`` exists (``pip install .``/``-e .`` and ``python setup.py``
  work) and takes everything, the version included, from pyproject.toml."""
  path = os.path.join(REPO, "setup.py")
  assert os.path.isfile(path)
  tree = ast.parse(open(path, encoding="utf-8").read(), filename=path)
  calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
           and getattr(n.func, "id", None) == "setup"]
  assert len(calls) == 1 and not calls[0].args and not calls[0].keywords, "metadata: pyproject"
  res = subprocess.run([sys.executable, "setup.py", "--version"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
  assert res.returncode == 0, res.stderr
  assert res.stdout.strip().splitlines()[-1] == maxrl_jax.__version__


def test_jax_is_not_capped_and_constraints_pin_the_tested_version():
  project = _pyproject()["project"]
  reqs = project["dependencies"] + [r for name in ("gpu", "gpu-cuda12", "tpu")
                                    for r in project["optional-dependencies"][name]]
  for req in reqs:
    if req.split("[")[0].split(">")[0].strip().lower() == "jax":
      assert "<" not in req and ">=" in req, f"{req}: lower bound only (cap: constraints.txt)"
  with open(os.path.join(REPO, "constraints.txt"), encoding="utf-8") as f:
    pins = dict(line.strip().split("==") for line in f if "==" in line and line[0] != "#")
  assert pins["jax"] == pins["jaxlib"]


def test_tensorboard_viewer_extra():
  project = _pyproject()["project"]
  assert "tensorboard" in _expanded("viz", project)
  assert "tensorboard" in _expanded("all", project)
  assert "tensorboard" not in _expanded("train", project)  # the drivers only write events


def test_project_urls_are_real():
  urls = _pyproject()["project"]["urls"]
  assert urls["Paper"] == "https://arxiv.org/abs/2602.02710"
  for name, url in urls.items():
    assert re.fullmatch(r"https://[a-z0-9.-]+\.[a-z]+/\S*", url), (name, url)
    assert not re.search(r"(?i)example|placeholder|your[-_]?(org|name)|<|OWNER|USER", url), url


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
