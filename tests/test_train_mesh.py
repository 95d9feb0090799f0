"""Data-parallel mesh helpers on 8 fake CPU devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train.errors import ConfigError


def test_make_mesh_is_one_data_axis_over_all_devices():
  mesh = mesh_lib.make_mesh()
  assert mesh.axis_names == (mesh_lib.DATA_AXIS,) == ("data",)
  assert mesh.devices.size == jax.device_count() == 8
  assert mesh.axis_types == (jax.sharding.AxisType.Auto,)  # GSPMD propagation (see make_mesh).
  explicit = mesh_lib.make_mesh(axis_type=jax.sharding.AxisType.Explicit)
  assert explicit.axis_types == (jax.sharding.AxisType.Explicit,)
  one = mesh_lib.make_mesh(jax.devices()[:1])
  assert one.devices.size == 1 and one.axis_names == ("data",)
  with pytest.raises(ValueError):
    mesh_lib.make_mesh([])


def test_shardings():
  mesh = mesh_lib.make_mesh()
  assert mesh_lib.replicated(mesh).spec == P()
  assert mesh_lib.batch_sharding(mesh).spec == P("data")
  assert mesh_lib.batch_sharding(mesh, batch_axis=1).spec == P(None, "data")


def test_check_global_batch():
  mesh = mesh_lib.make_mesh()
  assert mesh_lib.check_global_batch(64, mesh, "config.batch_size") == 64  # One process.
  assert mesh_lib.check_global_batch(8, mesh, "config.batch_size") == 8
  with pytest.raises(ConfigError, match=r"^config\.batch_size: .*not divisible by the 8 devices"):
    mesh_lib.check_global_batch(12, mesh, "config.batch_size")
  with pytest.raises(ConfigError, match=r"^config\.rl\.batch: must be >= 1"):
    mesh_lib.check_global_batch(0, mesh, "config.rl.batch")
  with pytest.raises(ConfigError, match="must be an integer"):
    mesh_lib.check_global_batch(8.0, mesh, "config.batch_size")
  try:
    mesh_lib.check_global_batch(3, mesh, "config.x")
  except ConfigError as e:
    assert e.field == "config.x"


def test_host_local_to_global_shards_the_batch_axis():
  mesh = mesh_lib.make_mesh()
  rows = mesh_lib.process_batch_slice(mesh, 16)
  assert rows == slice(0, 16)  # One process owns every row.
  x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
  tree = mesh_lib.host_local_to_global(mesh, {"x": x[rows], "y": np.arange(16)})
  assert tree["x"].shape == (16, 3) and tree["x"].sharding.spec == P("data")
  assert [s.data.shape for s in tree["x"].addressable_shards] == [(2, 3)] * 8
  np.testing.assert_array_equal(np.asarray(tree["x"]), x)
  stacked = mesh_lib.host_local_to_global(mesh, np.zeros((4, 16, 2)), batch_axis=1)
  assert stacked.sharding.spec == P(None, "data")
  assert stacked.addressable_shards[0].data.shape == (4, 2, 2)


def test_replicate_and_a_jitted_data_parallel_mean():
  mesh = mesh_lib.make_mesh()
  params = mesh_lib.replicate(mesh, {"w": np.full((3,), 2.0, np.float32)})
  assert params["w"].sharding.spec == P()
  assert all(np.array_equal(s.data, [2.0, 2.0, 2.0]) for s in params["w"].addressable_shards)
  assert mesh_lib.replicate(mesh, params)["w"] is params["w"]  # Already placed: unchanged.
  on_one = jax.device_put(jnp.ones(2), jax.devices()[3])
  assert mesh_lib.replicate(mesh, on_one).sharding.spec == P()
  key = mesh_lib.replicate(mesh, jax.random.key(3))
  assert key.sharding.spec == P() and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(jax.random.key(3)))

  x = np.random.default_rng(0).standard_normal((32, 3)).astype(np.float32)
  batch = mesh_lib.host_local_to_global(mesh, x)
  loss = jax.jit(lambda p, b: jnp.mean(b @ p["w"]),
                 in_shardings=(mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)),
                 out_shardings=mesh_lib.replicated(mesh))
  np.testing.assert_allclose(loss(params, batch), np.mean(x @ np.full(3, 2.0)), rtol=1e-5)


def test_initialize_distributed_is_a_noop_for_one_process(monkeypatch):
  for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
              "MAXRL_DISTRIBUTED"):
    monkeypatch.delenv(var, raising=False)
  mesh_lib.initialize_distributed()
  monkeypatch.setenv("JAX_NUM_PROCESSES", "1")
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "localhost:1")
  mesh_lib.initialize_distributed()  # A single process never needs the coordinator.
  assert not jax.distributed.is_initialized()
  assert jax.process_count() == 1 and mesh_lib.is_chief()


def test_initialize_distributed_needs_a_process_id(monkeypatch):
  monkeypatch.delenv("JAX_PROCESS_ID", raising=False)
  with pytest.raises(ConfigError, match="JAX_PROCESS_ID"):
    mesh_lib.initialize_distributed("localhost:1", num_processes=2)


def test_default_mesh_propagates_shardings_through_ops_without_sharding_rules():
  """Batched searchsorted inside a while_loop: fine on the default (Auto) data axis."""
  mesh = mesh_lib.make_mesh()
  cdf = mesh_lib.host_local_to_global(mesh, np.tile(np.linspace(0.1, 1.0, 10), (16, 1)))
  u = mesh_lib.host_local_to_global(mesh, np.linspace(0.0, 0.99, 16))

  @jax.jit
  def sample(cdf, u):
    def body(carry):
      i, acc = carry
      return i + 1, acc + jax.vmap(jnp.searchsorted)(cdf, u)
    return jax.lax.while_loop(lambda c: c[0] < 2, body, (0, jnp.zeros(u.shape, jnp.int32)))[1]

  expected = 2 * np.array([np.searchsorted(np.linspace(0.1, 1.0, 10), x)
                           for x in np.linspace(0.0, 0.99, 16)])
  np.testing.assert_array_equal(sample(cdf, u), expected)
