"""The one training state every driver checkpoints (a ``flax.struct`` pytree).

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
