"""ResNet-v1.5 family (maxrl_jax.models.resnet)."""

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
import numpy as np
import pytest

from maxrl_jax.models import resnet


def _num_params(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_resnet50_has_the_standard_parameter_count():
  model = resnet.make_resnet("resnet50", 1000)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             jnp.zeros((1, 224, 224, 3)), train=False))
  # torchvision's resnet50 has 25,557,032 parameters; BatchNorm keeps 2 running stats per
  # channel (53,120 numbers in torchvision's buffers as well).
  assert _num_params(shapes["params"]) == 25_557_032
  assert _num_params(shapes["batch_stats"]) == 53_120


def test_small_resnet_uniform_initial_policy_and_dtypes():
  model = resnet.make_resnet("resnet8", 37, width=4, stem="small", dtype=jnp.bfloat16,
                             input_mean=(127.5,) * 3, input_std=(64.0,) * 3)
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3)), jnp.uint8)
  variables = model.init(jax.random.key(1, impl="rbg"), images, train=False)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables["params"]))
  logits, updates = model.apply(variables, images, train=True, mutable=["batch_stats"])
  assert logits.shape == (5, 37) and logits.dtype == jnp.float32
  # Zero-initialised head: the initial policy is uniform, pass rate exactly 1/classes.
  np.testing.assert_allclose(jax.nn.softmax(logits), 1.0 / 37, rtol=1e-6)
  assert set(updates) == {"batch_stats"}
  with pytest.raises(ValueError, match="unknown ResNet"):
    resnet.make_resnet("resnet7", 10)


def test_batchnorm_statistics_are_over_the_global_sharded_batch():
  """Under jit with the batch sharded on 8 devices, train-mode BatchNorm uses all 16 images."""
  devices = jax.devices()
  assert len(devices) == 8
  mesh = Mesh(np.array(devices), ("data",), axis_types=(AxisType.Auto,))
  model = resnet.make_resnet("resnet8", 10, width=4, stem="small")
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(16, 8, 8, 3)), jnp.float32)
  variables = model.init(jax.random.key(1, impl="rbg"), images, train=False)
  # A non-trivial head so that the logits depend on the normalised features.
  variables = jax.tree.map(lambda x: x, variables)  # Fresh dicts, then replace the head.
  kernel = variables["params"]["head"]["kernel"]
  variables["params"]["head"]["kernel"] = jnp.asarray(rng.normal(size=kernel.shape), jnp.float32)

  def forward(v, x):
    return model.apply(v, x, train=True, mutable=["batch_stats"])

  single = jax.jit(forward)(variables, images)
  sharded_images = jax.device_put(images, NamedSharding(mesh, P("data")))
  replicated = jax.device_put(variables, NamedSharding(mesh, P()))
  multi = jax.jit(forward)(replicated, sharded_images)
  assert len(multi[0].sharding.device_set) == 8
  np.testing.assert_allclose(multi[0], single[0], rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(multi[1]), jax.tree.leaves(single[1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # Per-device statistics (2 images each) would give different outputs.
  per_device = jnp.concatenate([forward(variables, images[i:i + 2])[0]
                                for i in range(0, 16, 2)])
  assert not np.allclose(per_device, single[0], rtol=1e-3, atol=1e-4)
