"""Errors shared by the training infrastructure and the experiment drivers."""


class ConfigError(ValueError):
  """An invalid configuration value, raised before anything is compiled.

  The message always starts with the offending field, e.g.
  ``config.rl.num_rollouts: must be >= 1, got 0``.
  """

  def __init__(self, field: str, message: str):
    self.field = field
    super().__init__(f"{field}: {message}")


def require(condition: bool, field: str, message: str) -> None:
  """Raises ``ConfigError(field, message)`` unless ``condition`` holds."""
  if not condition:
    raise ConfigError(field, message)


class NonFiniteError(FloatingPointError):
  """A loss or gradient norm became NaN/inf; the message names the step."""

  def __init__(self, step: int, name: str, value: float):
    self.step = step
    self.name = name
    self.value = value
    super().__init__(
        f"non-finite {name}={value} at step {step}; stopping. The last good checkpoint is kept."
    )
