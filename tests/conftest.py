"""Test-wide settings: 8 fake CPU devices so sharding code runs on real multi-device meshes."""

import os

# Must happen before JAX initialises its backends.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", False)

# Tests that take tens of seconds run first: with `pytest -n 2` (xdist's `load` scheduling hands
# out tests in collection order) a long test started last would leave the other worker idle.
_LONG_FIRST = (
    "test_reproduce.py::", "test_imagenet_driver.py::", "test_maze_driver.py::",
    "test_maze_seeds.py::test_seed_axis",
    "test_entry_points.py::", "test_maze_steps.py::", "test_notebook_", "test_gcs_workdir.py::",
    "test_multiprocess.py::", "test_bernoulli.py::test_smoke", "test_layering.py::",
)


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
  def rank(item):
    for i, prefix in enumerate(_LONG_FIRST):
      if prefix in item.nodeid:
        return i
    return len(_LONG_FIRST)
  items.sort(key=rank)  # stable: the order within each group is kept
