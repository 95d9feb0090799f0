"""The one optimiser factory of every driver: an optax chain from a named config section.

A driver's optimiser lives in one config section (``config.optim`` of the ImageNet comparison,
``config.sft`` / ``config.rl`` of the maze, ``config.tabular`` / ``config.logistic`` of the
Bernoulli grid). :func:`optimizer_spec` reads it into a hashable :class:`OptimizerSpec` (usable
as a static argument of a jitted program) and :func:`make_optimizer` builds ``(tx, schedule)``:

* ``optimizer``: any optax constructor taking ``learning_rate`` (``sgd``, ``adamw``, ``adam``,
  ``rmsprop``, ...); ``optimizer_kwargs`` are passed on; ``momentum`` / ``nesterov`` go to
  ``sgd``, ``betas`` to ``b1``/``b2`` and ``weight_decay`` to an optimiser that takes it
  (``adamw``: decoupled decay, Loshchilov & Hutter).
* ``weight_decay`` with ``sgd``: *coupled* decay as PyTorch's ``SGD(weight_decay=wd)``,
  ``d = g + wd theta`` before momentum (``optax.add_decayed_weights`` first in the chain).
* ``max_grad_norm > 0``: global-norm clipping before everything else.
* ``schedule``: ``"constant"`` (the float rate), ``"warmup_constant"`` (linear warmup from 0
  over ``warmup_steps``, then constant; the float rate when ``warmup_steps`` is 0) or
  ``"warmup_cosine"`` (linear warmup then cosine decay to 0 at ``total_steps``).

A section that configures clipping or weight decay builds ``optax.chain(...)`` (with the parts
that are on); a section with neither builds the bare optimiser. This keeps the optimiser states
(and so the checkpoints) of every driver exactly those of its earlier hand-written chain.

The paper's optimisers: SGD with momentum 0.9, coupled weight decay 1e-4 and a warmup-cosine
rate for ImageNet (section 6.1, appendix D); AdamW with clipping at 1.0 for the maze (section
6.2, appendix E).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import optax

from maxrl_jax.train.errors import ConfigError

SCHEDULES = ("constant", "warmup_constant", "warmup_cosine")
# Fields of a section that this factory reads (others, e.g. batch_size, are the driver's).
FIELDS = ("optimizer", "learning_rate", "schedule", "warmup_steps", "weight_decay", "momentum",
          "nesterov", "betas", "max_grad_norm", "optimizer_kwargs")


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """Hashable optimiser settings (see the module docstring for each field's meaning).

  ``weight_decay``, ``momentum``, ``nesterov``, ``betas`` are None when the section does not
  set them (the optax default applies, and a None ``weight_decay`` means no decay and, with no
  clipping, the bare optimiser).
  """
  optimizer: str
  learning_rate: float
  schedule: str = "constant"
  warmup_steps: int = 0
  total_steps: int | None = None
  weight_decay: float | None = None
  momentum: float | None = None
  nesterov: bool | None = None
  betas: tuple[float, float] | None = None
  max_grad_norm: float = 0.0
  kwargs: tuple[tuple[str, Any], ...] = ()
  field: str = "config.optim"  # the section's name, for errors


def _get(section: Any, key: str, default: Any = None) -> Any:
  if section is None:
    return default
  if isinstance(section, Mapping) or hasattr(section, "get"):
    return section.get(key, default)
  return getattr(section, key, default)


def _as_dict(value: Any) -> dict:
  if value is None:
    return {}
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  return dict(value)


def optimizer_spec(section: Any, *, field: str = "config.optim",
                   defaults: Mapping[str, Any] | None = None, learning_rate_scale: float = 1,
                   warmup_steps: int | None = None,
                   total_steps: int | None = None) -> OptimizerSpec:
  """The :class:`OptimizerSpec` of a config ``section`` (a ConfigDict or a mapping).

  Args:
    section: the config section (fields: :data:`FIELDS`; others are ignored).
    field: the section's dotted name, used in errors (e.g. ``"config.rl"``).
    defaults: values of fields the section does not have (a driver's fixed choices, e.g.
      ``{"optimizer": "adamw", "schedule": "warmup_constant"}``), so configs need not grow.
    learning_rate_scale: multiplies ``learning_rate`` (the Bernoulli tabular policy's per-prompt
      rate is ``learning_rate * num_prompts``).
    warmup_steps: overrides the section's (a driver that derives it, e.g. from epochs).
    total_steps: the schedule's length (``warmup_cosine`` needs it).

  Raises:
    ConfigError: naming the field, for an unknown optimiser or schedule.
  """
  defaults = dict(defaults or {})
  get = lambda k: _get(section, k, defaults.get(k))
  name = get("optimizer")
  if not isinstance(name, str) or not callable(getattr(optax, name, None)):
    raise ConfigError(f"{field}.optimizer", f"not an optax optimiser: {name!r}")
  schedule = get("schedule") or "constant"
  if schedule not in SCHEDULES:
    raise ConfigError(f"{field}.schedule", f"must be one of {SCHEDULES}, got {schedule!r}")
  warmup = get("warmup_steps") if warmup_steps is None else warmup_steps
  if schedule == "warmup_cosine" and total_steps is None:
    raise ConfigError(f"{field}.schedule", "warmup_cosine needs the number of training steps")
  betas = get("betas")
  wd, momentum, nesterov = get("weight_decay"), get("momentum"), get("nesterov")
  kwargs = _as_dict(get("optimizer_kwargs"))
  return OptimizerSpec(
      optimizer=name, learning_rate=float(get("learning_rate")) * learning_rate_scale,
      schedule=schedule, warmup_steps=int(warmup or 0),
      total_steps=None if total_steps is None else int(total_steps),
      weight_decay=None if wd is None else float(wd),
      momentum=None if momentum is None else float(momentum),
      nesterov=None if nesterov is None else bool(nesterov),
      betas=None if betas is None else tuple(float(b) for b in betas),
      max_grad_norm=float(get("max_grad_norm") or 0.0),
      kwargs=tuple(sorted(kwargs.items())), field=field)


def make_schedule(spec: OptimizerSpec) -> float | Callable[[Any], Any]:
  """The learning rate (a float) or schedule ``step -> rate`` of ``spec``."""
  lr = spec.learning_rate
  if spec.schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=spec.warmup_steps,
        decay_steps=spec.total_steps, end_value=0.0)
  if spec.schedule == "warmup_constant" and spec.warmup_steps:
    return optax.linear_schedule(0.0, lr, spec.warmup_steps)
  return lr


def make_optimizer(section: Any, **spec_kwargs) -> tuple[optax.GradientTransformation, Any]:
  """``(tx, schedule)`` of a config section (see :func:`optimizer_spec` for ``spec_kwargs``)
  or of an :class:`OptimizerSpec`.

  ``tx`` is, in order: ``clip_by_global_norm(max_grad_norm)`` if > 0; for ``sgd`` with a
  ``weight_decay``, ``add_decayed_weights(weight_decay)`` (coupled, as PyTorch); the optax
  optimiser ``optimizer(learning_rate=schedule, ...)``. Chained when clipping or weight decay is
  configured, else the bare optimiser. ``schedule`` is the float rate or the optax schedule.
  """
  spec = section if isinstance(section, OptimizerSpec) else optimizer_spec(section,
                                                                           **spec_kwargs)
  schedule = make_schedule(spec)
  kwargs = dict(spec.kwargs)
  coupled = spec.optimizer == "sgd" and spec.weight_decay is not None
  if spec.momentum is not None:
    kwargs["momentum"] = spec.momentum
  if spec.nesterov is not None:
    kwargs["nesterov"] = spec.nesterov
  if spec.betas is not None:
    if len(spec.betas) != 2:
      raise ConfigError(f"{spec.field}.betas", f"must be two numbers, got {spec.betas}")
    kwargs["b1"], kwargs["b2"] = spec.betas
  if spec.weight_decay is not None and not coupled:
    kwargs["weight_decay"] = spec.weight_decay
  try:
    opt = getattr(optax, spec.optimizer)(learning_rate=schedule, **kwargs)
  except TypeError as e:
    raise ConfigError(f"{spec.field}.optimizer", f"optax.{spec.optimizer}: {e}") from e
  if spec.max_grad_norm <= 0 and spec.weight_decay is None:
    return opt, schedule
  parts = [optax.clip_by_global_norm(spec.max_grad_norm)] if spec.max_grad_norm > 0 else []
  if coupled:
    parts.append(optax.add_decayed_weights(spec.weight_decay))
  parts.append(opt)
  return optax.chain(*parts), schedule
