"""ResNet-v1.5 family in Flax linen (ResNet-50 for the paper, small variants for CPU presets).

ResNet-v1.5 (He et al. 2016, as in the reference TensorFlow/PyTorch implementations) differs
from v1 only in the bottleneck block: the stride-2 downsampling sits on the 3x3 convolution
instead of the first 1x1 convolution.

One module, `ResNet`, covers the family:

* ``stage_sizes`` and ``block`` ("basic" for ResNet-18/34-style blocks, "bottleneck" for
  ResNet-50/101/152) pick the depth; ``width`` is the number of filters of the first stage
  (doubled at every following stage).
* ``stem="imagenet"`` is the 7x7/stride-2 convolution plus 3x3/stride-2 max pool for 224x224
  images; ``stem="small"`` is a single 3x3/stride-1 convolution without pooling for the
  16x16 / 32x32 images of the CPU presets.

BatchNorm: in training mode (``train=True``) the normalisation statistics are the mean and
variance over the batch the function sees. Under ``jax.jit`` with the batch sharded over a
device mesh (``NamedSharding(mesh, P("data"))``) that batch is the *global* batch: the compiler
inserts the cross-device reductions, so the statistics are those of all devices' examples
together (synchronised BatchNorm), exactly as on a single device with the same global batch.
Running averages live in the ``batch_stats`` collection and are used with ``train=False``.

``dtype`` is the computation dtype (``jnp.bfloat16`` on accelerators); parameters stay in
``param_dtype`` (float32), and the logits are returned in float32 so the softmax, sampling and
losses are computed in full precision.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

ModuleDef = Any

# ImageNet channel statistics on the [0, 255] scale (the usual normalisation constants).
IMAGENET_MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

  filters: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jnp.ndarray], jnp.ndarray]
  strides: tuple[int, int] = (1, 1)

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (3, 3), self.strides)(x)
    y = self.norm()(y)
    y = self.act(y)
    y = self.conv(self.filters, (3, 3))(y)
    # Zero-initialised last scale: every residual block starts as the identity (Goyal et al.).
    y = self.norm(scale_init=nn.initializers.zeros_init())(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
      residual = self.norm(name="norm_proj")(residual)
    return self.act(residual + y)


class BottleneckBlock(nn.Module):
  """1x1 -> 3x3 (strided, v1.5) -> 1x1 (4x filters) with a projection shortcut when needed."""

  filters: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jnp.ndarray], jnp.ndarray]
  strides: tuple[int, int] = (1, 1)

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (1, 1))(x)
    y = self.norm()(y)
    y = self.act(y)
    y = self.conv(self.filters, (3, 3), self.strides)(y)
    y = self.norm()(y)
    y = self.act(y)
    y = self.conv(self.filters * 4, (1, 1))(y)
    y = self.norm(scale_init=nn.initializers.zeros_init())(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters * 4, (1, 1), self.strides, name="conv_proj")(residual)
      residual = self.norm(name="norm_proj")(residual)
    return self.act(residual + y)


_BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}


class ResNet(nn.Module):
  """ResNet-v1.5 classifier returning float32 logits ``[batch, num_classes]``.

  Input images are ``[batch, height, width, 3]``: either already normalised floats or raw
  ``uint8`` pixels in [0, 255]; uint8 input is normalised on device with ``input_mean`` /
  ``input_std`` (so the host can ship compact uint8 batches).
  """

  stage_sizes: Sequence[int]
  num_classes: int
  block: str = "bottleneck"
  width: int = 64
  stem: str = "imagenet"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  input_mean: Sequence[float] = IMAGENET_MEAN_RGB
  input_std: Sequence[float] = IMAGENET_STDDEV_RGB

  @nn.compact
  def __call__(self, x, train: bool = True):
    if self.block not in _BLOCKS:
      raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got {self.block!r}")
    if self.stem not in ("imagenet", "small"):
      raise ValueError(f"stem must be 'imagenet' or 'small', got {self.stem!r}")
    if x.dtype == jnp.uint8:
      x = (x.astype(jnp.float32) - jnp.asarray(self.input_mean, jnp.float32)) / jnp.asarray(
          self.input_std, jnp.float32)
    x = x.astype(self.dtype)
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             param_dtype=self.param_dtype,
                             kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"))
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                             dtype=self.dtype, param_dtype=self.param_dtype)
    if self.stem == "imagenet":
      x = conv(self.width, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
      x = norm(name="bn_init")(x)
      x = nn.relu(x)
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    else:
      x = conv(self.width, (3, 3), name="conv_init")(x)
      x = norm(name="bn_init")(x)
      x = nn.relu(x)
    block_cls = _BLOCKS[self.block]
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        strides = (2, 2) if i > 0 and j == 0 else (1, 1)
        x = block_cls(self.width * 2**i, conv=conv, norm=norm, act=nn.relu, strides=strides)(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                 kernel_init=nn.initializers.zeros_init(), name="head")(x)
    return x.astype(jnp.float32)


# Standard depths. The zero-initialised head makes the initial policy exactly uniform
# (pass rate 1/num_classes), the paper's starting point.
ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic")
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="basic")
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck")
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block="bottleneck")
ResNet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), block="bottleneck")

ARCHITECTURES = {
    "resnet18": dict(stage_sizes=(2, 2, 2, 2), block="basic"),
    "resnet34": dict(stage_sizes=(3, 4, 6, 3), block="basic"),
    "resnet50": dict(stage_sizes=(3, 4, 6, 3), block="bottleneck"),
    "resnet101": dict(stage_sizes=(3, 4, 23, 3), block="bottleneck"),
    "resnet152": dict(stage_sizes=(3, 8, 36, 3), block="bottleneck"),
    # Small members of the same family for CPU presets and tests.
    "resnet10": dict(stage_sizes=(1, 1, 1, 1), block="basic"),
    "resnet8": dict(stage_sizes=(1, 1, 1), block="basic"),
}


def make_resnet(name: str, num_classes: int, *, width: int = 64, stem: str = "imagenet",
                dtype: Any = jnp.float32, **kwargs) -> ResNet:
  """Builds a ResNet by architecture name (a key of `ARCHITECTURES`)."""
  if name not in ARCHITECTURES:
    raise ValueError(f"unknown ResNet {name!r}; known: {sorted(ARCHITECTURES)}")
  return ResNet(num_classes=num_classes, width=width, stem=stem, dtype=dtype,
                **ARCHITECTURES[name], **kwargs)
