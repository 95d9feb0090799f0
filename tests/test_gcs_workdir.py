"""A ``gs://`` workdir gets every artefact (metrics, TensorBoard events, config, summaries,
figures, tables, checkpoints) and nothing is written to the local working directory.

The ``gs://`` scheme is served by a test backend of ``etils.epath`` that keeps the bucket in a
temporary directory (the same mechanism as ``epath.testing.mock_epath``). Orbax writes array
data with TensorStore's own GCS driver, which epath cannot redirect, so the test gives the
checkpointer the bucket's local mirror path; everything else goes through ``gs://`` paths.
"""

import os

from etils.epath import backend as epath_backend
from etils.epath import gpath
import pytest

from experiments.bernoulli import config as bernoulli_config
from experiments.bernoulli import experiment as bernoulli_experiment
from maxrl_jax.train import checkpoint as checkpoint_lib
from maxrl_jax.train import logs
from maxrl_jax.train import stage as stage_lib

PREFIX = "gs://"


class _LocalBucket(epath_backend._OsPathBackend):  # pylint: disable=protected-access
  """``gs://bucket/x`` -> ``<root>/bucket/x``."""

  def __init__(self, root):
    self.root = root
    self.calls = 0

  def _m(self, path):
    path = os.fspath(path)
    assert path.startswith(PREFIX), path
    self.calls += 1
    return os.path.join(self.root, path[len(PREFIX):])

  def _back(self, path):
    return PREFIX + os.path.relpath(path, self.root)

  def open(self, path, *args, **kwargs):
    return super().open(self._m(path), *args, **kwargs)

  def exists(self, path):
    return super().exists(self._m(path))

  def isdir(self, path):
    return super().isdir(self._m(path))

  def listdir(self, path):
    return super().listdir(self._m(path))

  def glob(self, path):
    return [self._back(p) for p in super().glob(self._m(path))]

  def walk(self, path, *args, **kwargs):
    for root, dirs, names in super().walk(self._m(path), *args, **kwargs):
      yield self._back(root), dirs, names

  def makedirs(self, path, *args, **kwargs):
    return super().makedirs(self._m(path), *args, **kwargs)

  def mkdir(self, path, *args, **kwargs):
    return super().mkdir(self._m(path), *args, **kwargs)

  def rmtree(self, path):
    return super().rmtree(self._m(path))

  def remove(self, path):
    return super().remove(self._m(path))

  def rename(self, path, dst):
    return super().rename(self._m(path), self._m(dst))

  def replace(self, path, dst):
    return super().replace(self._m(path), self._m(dst))

  def copy(self, path, dst, overwrite):
    return super().copy(self._m(path), self._m(dst), overwrite)

  def stat(self, path):
    return super().stat(self._m(path))


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  root = tmp_path / "gcs"
  root.mkdir()
  fake = _LocalBucket(str(root))
  monkeypatch.setitem(gpath._PREFIX_TO_BACKEND, "gs", fake)  # pylint: disable=protected-access
  monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
  real_init = checkpoint_lib.Checkpointer.__init__

  def init(self, directory, *args, **kwargs):
    directory = os.fspath(directory)
    if directory.startswith(PREFIX):
      directory = fake._m(directory)  # pylint: disable=protected-access
    real_init(self, directory, *args, **kwargs)

  monkeypatch.setattr(checkpoint_lib.Checkpointer, "__init__", init)
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  return root, cwd, fake


def _all_files(root):
  return sorted(os.path.relpath(os.path.join(d, n), root)
                for d, _, names in os.walk(root) for n in names)


def test_bernoulli_smoke_on_a_gs_workdir(bucket):
  root, cwd, fake = bucket
  config = bernoulli_config.get_config("smoke")
  summary = bernoulli_experiment.run(config, "gs://bucket/runs/bernoulli")
  assert summary["complete"]
  written = _all_files(os.path.join(root, "bucket", "runs", "bernoulli"))
  for name in ("config.json", "metrics.jsonl", "summary.json", "curves.npz", "analysis.npz"):
    assert name in written, (name, written)
  assert sum(f.startswith("figures/") and f.endswith(".png") for f in written) == 6
  assert any(f.startswith("tb/") for f in written)
  assert any(f.startswith("checkpoints/") for f in written)
  assert not any(f.endswith(".lock") or f == ".lock" for f in written)  # released
  assert os.listdir(cwd) == []  # nothing local (no "gs:" directory)
  assert fake.calls > 0
  # Read back through gs:// like a recreated VM would: the run is complete, nothing retrained.
  again = bernoulli_experiment.run(config, "gs://bucket/runs/bernoulli")
  assert again == stage_lib.read_summary("gs://bucket/runs/bernoulli")
  assert [r["step"] for r in logs.read_metrics("gs://bucket/runs/bernoulli")] == [10, 20]


@pytest.mark.slow
def test_maze_smoke_on_a_gs_workdir(bucket):
  from experiments.maze import config as maze_config  # pylint: disable=g-import-not-at-top
  from experiments.maze import experiment  # pylint: disable=g-import-not-at-top
  root, cwd, _ = bucket
  out = experiment.run(maze_config.get_config("smoke"), "gs://bucket/runs/maze")
  assert out["complete"]
  written = _all_files(os.path.join(root, "bucket", "runs", "maze"))
  for name in ("config.json", "summary.json", "table.md", "sft/summary.json",
               "sft/metrics.jsonl", "rl/maxrl_n2/summary.json", "rl/rloo_n4/metrics.jsonl"):
    assert name in written, (name, written)
  assert sum(f.startswith("figures/") for f in written) >= 2
  assert os.listdir(cwd) == []
