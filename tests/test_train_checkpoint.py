"""Checkpointer: round trips into shardings, retention, and fallback past broken checkpoints."""

import glob
import os
import shutil

import jax
import numpy as np
import pytest

from maxrl_jax.train import checkpoint as checkpoint_lib
from maxrl_jax.train import mesh as mesh_lib
from examples import toy_trainer as toy


def _state(mesh, scale=1.0):
  tree = {
      "params": {"w": np.arange(12, dtype=np.float32).reshape(3, 4) * scale,
                 "b": np.float32(scale)},
      "count": np.int32(7),
  }
  state = mesh_lib.replicate(mesh, tree)
  state["key"] = jax.device_put(jax.random.key(int(scale)), mesh_lib.replicated(mesh))
  return state


def _assert_tree_equal(a, b):
  a = jax.tree.map(lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key) else x, a)
  b = jax.tree.map(lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key) else x, b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_keeps_values_meta_and_template_shardings(tmp_path):
  mesh = mesh_lib.make_mesh()
  state = _state(mesh, 2.0)
  with checkpoint_lib.Checkpointer(tmp_path / "ckpt") as ckpt:
    assert ckpt.restore_latest(_state(mesh)) is None
    assert ckpt.save(5, state, {"data_position": 123})
    assert not ckpt.save(5, state)  # Existing step, no force: nothing written.
    ckpt.wait()
    assert ckpt.latest_step() == 5
    step, restored, meta = ckpt.restore_latest(_state(mesh, 9.0))
  assert step == 5 and meta["data_position"] == 123 and meta["step"] == 5
  _assert_tree_equal(restored, state)
  assert jax.dtypes.issubdtype(restored["key"].dtype, jax.dtypes.prng_key)
  for leaf in jax.tree.leaves(restored["params"]):
    assert leaf.sharding.is_equivalent_to(mesh_lib.replicated(mesh), leaf.ndim)


def test_restore_onto_a_different_mesh(tmp_path):
  """Saved from 8 devices, restored replicated on a 1-device mesh (e.g. evaluation host)."""
  big, small = mesh_lib.make_mesh(), mesh_lib.make_mesh(jax.devices()[:1])
  with checkpoint_lib.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, _state(big, 3.0))
    step, restored, _ = ckpt.restore_latest(_state(small))
  assert step == 1
  _assert_tree_equal(restored, _state(small, 3.0))
  assert restored["params"]["w"].sharding.mesh.devices.size == 1


def test_keeps_only_the_last_few(tmp_path):
  mesh = mesh_lib.make_mesh()
  with checkpoint_lib.Checkpointer(tmp_path, max_to_keep=2, async_save=False) as ckpt:
    for step in range(1, 6):
      ckpt.save(step, _state(mesh, step))
    assert ckpt.all_steps() == [4, 5]


def _truncate_data_files(step_dir):
  files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "*"), recursive=True)
           if os.path.isfile(f) and os.sep + "d" + os.sep in f]
  assert files
  for f in files:
    with open(f, "r+b") as fh:
      fh.truncate(os.path.getsize(f) // 2)


def _delete_state_dir(step_dir):
  shutil.rmtree(os.path.join(step_dir, "state"))


def _zero_every_file(step_dir):
  """As after a crash of a file system that had not flushed: names exist, contents do not."""
  for f in glob.glob(os.path.join(step_dir, "**", "*"), recursive=True):
    if os.path.isfile(f):
      open(f, "wb").close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # As below.
@pytest.mark.parametrize("corrupt", [_truncate_data_files, _delete_state_dir, _zero_every_file])
def test_unreadable_latest_falls_back_with_warning(tmp_path, corrupt):
  mesh = mesh_lib.make_mesh()
  with checkpoint_lib.Checkpointer(tmp_path) as ckpt:
    for step in (1, 2, 3):
      ckpt.save(step, _state(mesh, step))
    ckpt.wait()
    corrupt(os.path.join(tmp_path, "3"))
    with pytest.warns(UserWarning, match=r"checkpoint step 3 at .*3 is incomplete or unreadable"):
      step, restored, _ = ckpt.restore_latest(_state(mesh))
    assert step == 2
    _assert_tree_equal(restored, _state(mesh, 2))
    # The bad step was moved aside, so the resumed run can write step 3 again.
    assert ckpt.all_steps() == [1, 2]
    assert glob.glob(os.path.join(tmp_path, "corrupt.3.*"))
    assert ckpt.save(3, _state(mesh, 3))


def test_template_mismatch_raises_and_moves_nothing(tmp_path):
  mesh = mesh_lib.make_mesh()
  with checkpoint_lib.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, _state(mesh, 1))
    ckpt.wait()
    other = mesh_lib.replicate(mesh, {"params": {"w": np.zeros((5,), np.float32)}})
    with pytest.warns(UserWarning, match="checkpoint step 1"):
      with pytest.raises(RuntimeError, match=r"none of the checkpoints \[1\]"):
        ckpt.restore_latest(other)
    assert ckpt.all_steps() == [1]
    assert ckpt.restore_latest(_state(mesh))[0] == 1


def test_interrupted_save_is_invisible(tmp_path):
  """Orbax writes into a temporary directory first; a leftover one is not a step."""
  mesh = mesh_lib.make_mesh()
  with checkpoint_lib.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, _state(mesh, 1))
  os.makedirs(tmp_path / "2.orbax-checkpoint-tmp-1234" / "state")
  with checkpoint_lib.Checkpointer(tmp_path) as ckpt:
    assert ckpt.latest_step() == 1
    step, _, _ = ckpt.restore_latest(_state(mesh))
  assert step == 1


def _toy_config(total_steps):
  config = toy.get_config()
  config.total_steps = total_steps
  config.checkpoint_every = 8
  return config


# Reading a truncated checkpoint fails while tensorstore still has reads in flight; their late
# callbacks hit orbax's already-closed event loop ("Event loop is closed", harmless).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_resume_past_corrupted_latest_is_bit_identical(tmp_path):
  """Run to 16 (checkpoints 8, 16), break 16, continue to 24: equals a straight 24-step run."""
  reference, _ = toy.train(_toy_config(24), str(tmp_path / "straight"))
  workdir = str(tmp_path / "resumed")
  toy.train(_toy_config(16), workdir)
  _truncate_data_files(os.path.join(workdir, "checkpoints", "16"))
  with pytest.warns(UserWarning, match="checkpoint step 16"):
    state, summary = toy.train(_toy_config(24), workdir)
  assert summary["start_step"] == 8 and summary["step"] == 24
  for k, v in toy.params_to_numpy(reference).items():
    np.testing.assert_array_equal(toy.params_to_numpy(state)[k], v)
