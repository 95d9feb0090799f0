"""The one training state every driver checkpoints (a ``flax.struct`` pytree).

Its fields, in order, are the checkpoint's tree names: ``params``, ``opt_state``,
``batch_stats`` (the ImageNet driver's former own ``TrainState`` had exactly these, so its
checkpoints restore into this one).

The step is not part of the state: it is the checkpoint's step number (see
:mod:`maxrl_jax.train.loop`). ``batch_stats`` holds BatchNorm statistics for models that have
them (the ResNet) and is ``None`` (an empty subtree) otherwise.
"""

from __future__ import annotations

from typing import Any

import flax


@flax.struct.dataclass
class TrainState:
  params: Any
  opt_state: Any
  batch_stats: Any = None

  @property
  def variables(self) -> dict:
    """``{"params", "batch_stats"}``: the variables of a flax ``apply`` of a model with
    BatchNorm statistics."""
    return {"params": self.params, "batch_stats": self.batch_stats}
