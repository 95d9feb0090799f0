"""The host training loop shared by all drivers: chunks of jitted steps, logging that does not
stall the device, finiteness checks, periodic and preemption checkpoints.

Step numbering: ``state`` at step ``s`` has received ``s`` updates. ``train_chunk(state, s, n)``
applies updates ``s, s+1, ..., s+n-1`` (the driver derives update ``t``'s randomness as
``jax.random.fold_in(key, t)`` and its data from ``t``), and returns ``metrics[name][i]`` for
update ``s + i``, which is logged at step ``s + i + 1`` (the number of updates done).

Because every update depends only on ``(state, t)``, a run resumed from a checkpoint at step
``s`` performs exactly the same updates as an uninterrupted run. Chunks are aligned to multiples
of ``chunk_steps`` counted from step 0, so the resumed run also compiles and executes the same
chunk programs, which makes the final parameters bit-identical, not just close.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np

from maxrl_jax.train.checkpoint import Checkpointer
from maxrl_jax.train.errors import ConfigError, NonFiniteError
from maxrl_jax.train.logs import MetricWriter, Progress

COMPLETED = "completed"
PREEMPTED = "preempted"


class PreemptionGuard:
  """Context manager that turns SIGTERM (Cloud TPU / scheduler preemption) into a flag.

  Inside the ``with`` block a SIGTERM no longer kills the process; it sets :attr:`requested`.
  :func:`run_loop` checks it at every chunk boundary, saves a checkpoint and returns normally, so
  the driver finishes and the process exits with status 0. The previous handler is restored on
  exit. Signal handlers can only be installed from the main thread; elsewhere the guard is inert.

  In a multi-process run, :meth:`should_stop` agrees across processes (any process signalled ->
  all stop at the same boundary), so no process is left waiting in a collective. On Cloud TPU it
  also honours JAX's preemption notice (``multihost_utils.reached_preemption_sync_point``, what
  orbax's ``reached_preemption`` uses), which fires on every process at the same step.

  One guard per process: the drivers' shared entry point (:mod:`maxrl_jax.train.entry`) enters
  one and registers it with :func:`install`; every stage of every orchestrator then stops at the
  first chunk boundary after SIGTERM, and the orchestrators stop after that stage.
  """

  def __init__(self, signals: Sequence[int] = (signal.SIGTERM,)):
    self.signals = tuple(signals)
    self._requested = threading.Event()
    self._previous: dict[int, Any] = {}

  @property
  def requested(self) -> bool:
    return self._requested.is_set()

  def request(self) -> None:
    """Asks for a stop as SIGTERM would (also usable from tests and other threads)."""
    self._requested.set()

  def _handler(self, signum, frame) -> None:  # pylint: disable=unused-argument
    self._requested.set()

  def should_stop(self, step: int | None = None) -> bool:
    """:attr:`requested` in any process (a collective when there are several processes)."""
    flag = self.requested
    if step is not None and not flag and jax.process_count() > 1:
      try:  # Cloud TPU maintenance/preemption notice (needs jax.distributed's service).
        flag = bool(multihost_utils.reached_preemption_sync_point(int(step)))
      except Exception:  # pylint: disable=broad-except  # No preemption service here.
        pass
      if flag:
        self._requested.set()
    if jax.process_count() > 1:
      flags = multihost_utils.process_allgather(np.asarray(flag, dtype=np.int32))
      flag = bool(np.any(flags))
    return flag

  def __enter__(self) -> "PreemptionGuard":
    if threading.current_thread() is threading.main_thread():
      for sig in self.signals:
        self._previous[sig] = signal.signal(sig, self._handler)
    return self

  def __exit__(self, *exc) -> None:
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)
    self._previous.clear()


_INSTALLED: PreemptionGuard | None = None


def install(guard: PreemptionGuard | None) -> None:
  """Registers ``guard`` (already entered) as this process's guard; None unregisters it."""
  global _INSTALLED
  _INSTALLED = guard


def installed_guard() -> PreemptionGuard | None:
  """The guard registered by :func:`install` (the entry point's), or None."""
  return _INSTALLED


def chunk_sizes(start_step: int, total_steps: int, chunk_steps: int) -> list[tuple[int, int]]:
  """The ``(start, num_steps)`` chunks from ``start_step`` to ``total_steps``.

  Chunk boundaries are the multiples of ``chunk_steps`` (and ``total_steps``), independent of
  where the run (re)started.
  """
  out = []
  step = start_step
  while step < total_steps:
    n = min(chunk_steps - step % chunk_steps, total_steps - step)
    out.append((step, n))
    step += n
  return out


def _check_finite(start: int, metrics: Mapping[str, np.ndarray], keys: Sequence[str]) -> None:
  """Raises NonFiniteError for the earliest update whose ``keys`` metrics are not all finite."""
  first = None  # (index, key, value)
  for key in keys:
    if key not in metrics:
      continue
    values = np.asarray(metrics[key])
    values = values.reshape(values.shape[0], -1)
    bad = ~np.all(np.isfinite(values), axis=1)
    if bad.any():
      i = int(np.argmax(bad))
      if first is None or i < first[0]:
        value = values[i]
        first = (i, key, float(value[0]) if value.size == 1 else value.tolist())
  if first is not None:
    raise NonFiniteError(start + first[0] + 1, first[1], first[2])


@dataclasses.dataclass(frozen=True)
class LoopSpec:
  """How far and in what chunks :func:`run_loop` trains.

  Attributes:
    total_steps: updates at the end of the run.
    chunk_steps: updates per ``train_chunk`` call (chunks are aligned to multiples of it).
    checkpoint_every: save when a chunk ends at or past a multiple of this.
    log_every: scalar per-step metrics are written at steps that are multiples of it and at
      ``total_steps``.
    finite_keys: metrics that must stay finite (any shape: a leading step axis, then any).
  """
  total_steps: int
  chunk_steps: int
  checkpoint_every: int
  log_every: int = 1
  finite_keys: Sequence[str] = ("loss", "grad_norm")

  def validate(self, start_step: int = 0) -> None:
    """ConfigError naming the invalid argument (before anything runs)."""
    if self.chunk_steps < 1:
      raise ConfigError("run_loop.chunk_steps", f"must be >= 1, got {self.chunk_steps}")
    if self.checkpoint_every < 1:
      raise ConfigError("run_loop.checkpoint_every",
                        f"must be >= 1, got {self.checkpoint_every}")
    if self.log_every < 1:
      raise ConfigError("run_loop.log_every", f"must be >= 1, got {self.log_every}")
    if not 0 <= start_step:
      raise ConfigError("run_loop.start_step", f"must be >= 0, got {start_step}")


ChunkEndHook = Callable[[Any, int, "MetricWriter | None"], None]
MetricsHook = Callable[[int, int, Mapping[str, np.ndarray], "MetricWriter | None"], None]


@dataclasses.dataclass(frozen=True)
class Hooks:
  """What a driver adds to the loop (clu-style hooks; every one optional).

  Attributes:
    on_chunk_end: ``(state, step, writer)`` after each chunk (e.g. periodic evaluation; the
      writer is None when the loop has none).
    on_metrics: ``(start, n, metrics, writer)`` with every metric of a chunk as host arrays
      (leading axis ``n``), after the finiteness check and before the checkpoint that covers
      them; for non-scalar metrics (e.g. per-run curves) that the writer does not log.
    checkpoint_meta: ``step -> dict`` of JSON metadata saved with each checkpoint (e.g. the
      data position).
  """
  on_chunk_end: ChunkEndHook | None = None
  on_metrics: MetricsHook | None = None
  checkpoint_meta: Callable[[int], dict] | None = None


def run_loop(
    state: Any,
    start_step: int,
    train_chunk: Callable[[Any, int, int], tuple[Any, Mapping[str, Any]]],
    spec: LoopSpec,
    *,
    checkpointer: Checkpointer | None = None,
    writer: MetricWriter | None = None,
    hooks: Hooks | None = None,
    progress: Progress | None = None,
    guard: PreemptionGuard | None = None,
) -> tuple[Any, int, str]:
  """Runs ``train_chunk`` from ``start_step`` to ``spec.total_steps``.

  Per chunk: dispatch ``train_chunk(state, step, n)`` (asynchronous), then fetch, check and log
  the *previous* chunk's metrics while it runs. At a checkpoint (every ``checkpoint_every`` steps,
  at the end and on preemption) the current chunk's metrics are checked first, so a non-finite
  state is never saved. Then ``hooks.on_chunk_end(state, step, writer)``.

  Args:
    state: training state at ``start_step`` (donated to ``train_chunk``).
    start_step: updates already done (0, or the restored checkpoint's step).
    train_chunk: ``(state, start, n) -> (state, metrics)``, ``metrics[k]`` with leading axis n.
    spec: steps, chunking, checkpoint and logging periods, finite metrics (:class:`LoopSpec`).
    checkpointer: where to save (None: no checkpoints).
    writer: metric sink (None: no logging).
    hooks: the driver's :class:`Hooks` (None: none).
    progress: console progress, updated after each logged chunk.
    guard: a :class:`PreemptionGuard` already entered by the caller; by default the process's
      installed guard (:func:`install`), else one entered for the duration of the loop.

  Returns:
    ``(state, step, reason)`` with ``reason`` ``"completed"`` or ``"preempted"``.

  Raises:
    NonFiniteError: naming the first step whose ``finite_keys`` metric is NaN or inf; the last
      checkpoint (all of whose steps were finite) is kept.
    ConfigError: for invalid loop arguments, before anything runs.
  """
  spec.validate(start_step)
  if guard is None:
    guard = installed_guard()
  own_guard = guard is None
  if own_guard:
    guard = PreemptionGuard().__enter__()
  try:
    return _run(state, start_step, train_chunk, spec, checkpointer, writer, hooks or Hooks(),
                progress, guard)
  finally:
    if own_guard:
      guard.__exit__(None, None, None)
    if writer is not None:
      writer.flush()


def _run(state, start_step, train_chunk, spec: LoopSpec, checkpointer, writer, hooks: Hooks,
         progress, guard):
  total_steps, chunk_steps = spec.total_steps, spec.chunk_steps
  checkpoint_every, log_every = spec.checkpoint_every, spec.log_every
  finite_keys = tuple(spec.finite_keys)
  on_chunk_end, on_metrics, meta_fn = hooks.on_chunk_end, hooks.on_metrics, hooks.checkpoint_meta
  pending: tuple[int, int, Any] | None = None  # (start, n, device metrics) not yet logged.

  def process(item) -> None:
    start, n, metrics = item
    metrics = {k: np.asarray(v) for k, v in jax.device_get(dict(metrics)).items()}
    try:
      _check_finite(start, metrics, finite_keys)
    finally:
      if writer is not None:
        scalars = {k: v for k, v in metrics.items() if v.shape == (n,)}
        for i in range(n):
          s = start + i + 1
          if scalars and (s % log_every == 0 or s == total_steps):
            writer.write_scalars(s, {k: v[i] for k, v in scalars.items()})
    if on_metrics is not None:
      on_metrics(start, n, metrics, writer)
    if progress is not None:
      last = {k: v[-1] for k, v in metrics.items() if v.shape == (n,) and k in ("loss",)}
      progress.update(start + n, **last)

  def save(step: int) -> None:
    if checkpointer is not None:
      t0 = time.perf_counter()
      meta = meta_fn(step) if meta_fn is not None else {}
      checkpointer.save(step, state, meta)
      if progress is not None:
        progress.add_time("ckpt", time.perf_counter() - t0)

  step = start_step
  reason = COMPLETED
  try:
    for start, n in chunk_sizes(start_step, total_steps, chunk_steps):
      if guard.should_stop(start):
        reason = PREEMPTED
        break
      state, metrics = train_chunk(state, start, n)
      if pending is not None:
        item, pending = pending, None
        process(item)  # Previous chunk; the current one is running meanwhile.
      step = start + n
      pending = (start, n, metrics)
      if step // checkpoint_every > start // checkpoint_every or step == total_steps:
        item, pending = pending, None
        process(item)  # Never save a state whose steps were not all checked finite.
        save(step)
        if writer is not None:
          writer.flush()
      if on_chunk_end is not None:
        t0 = time.perf_counter()
        on_chunk_end(state, step, writer)
        if progress is not None:
          progress.add_time("eval", time.perf_counter() - t0)
    if pending is not None:
      item, pending = pending, None
      process(item)
    if reason == PREEMPTED and checkpointer is not None and step not in checkpointer.all_steps():
      save(step)
  finally:
    if checkpointer is not None:
      checkpointer.wait()
  return state, step, reason
