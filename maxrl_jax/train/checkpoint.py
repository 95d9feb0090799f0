"""Preemption-safe checkpoints on top of orbax-checkpoint's ``CheckpointManager``.

A checkpoint of step ``s`` is the directory ``<directory>/<s>/`` holding two items:

* ``state``: the training pytree (parameters, optimiser state, RNG key, ...), written with
  ``ocp.args.StandardSave`` (every process writes its own shards; arrays restore straight into the
  shardings of a template, so a replicated state comes back replicated on the current mesh);
* ``meta``: a small JSON dict (data-iterator position, wall time, anything the driver needs).

Orbax writes into a temporary directory and renames it when the save is complete, so a save
interrupted by a kill never shows up as a step. A step directory that is complete but unreadable
(files truncated or deleted afterwards, a half-synced copy) is caught by
:meth:`Checkpointer.restore_latest`, which warns naming it, moves it aside and falls back to the
previous step. Every checkpoint's ``meta`` also holds a SHA-256 digest of the state's bytes
(``state_digest``), recomputed after a restore: a checkpoint whose bytes changed after it was
written (a flipped bit on disk, a partial copy that still parses) is unreadable too.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any
import warnings

import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from maxrl_jax.train import files

_STATE = "state"
_META = "meta"
DIGEST_KEY = "state_digest"


class CheckpointError(RuntimeError):
  """A checkpoint that must be restored (a finished stage's final step) cannot be read."""


def state_digest(state: Any) -> str:
  """SHA-256 over the dtype, shape and bytes of every leaf of ``state`` (hex string).

  Arrays that are neither fully addressable nor fully replicated (sharded over several
  processes) are represented by their shape and dtype only, so every process computes the same
  digest.
  """
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(_to_storable(state))[0]:
    h.update(jax.tree_util.keystr(path).encode())
    if isinstance(leaf, jax.Array):
      h.update(f"{leaf.dtype}{leaf.shape}".encode())
      if leaf.is_fully_addressable:
        data = np.asarray(leaf)
      elif leaf.is_fully_replicated:
        data = np.asarray(leaf.addressable_data(0))
      else:
        continue
    elif isinstance(leaf, (np.ndarray, np.generic, int, float, bool)):
      data = np.asarray(leaf)
      h.update(f"{data.dtype}{data.shape}".encode())
    else:
      h.update(repr(leaf).encode())
      continue
    h.update(np.ascontiguousarray(data).tobytes())
  return h.hexdigest()


def _is_typed_key(x: Any) -> bool:
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_storable(tree: Any) -> Any:
  """Typed PRNG keys (``jax.random.key``) are stored as their raw ``uint32`` key data."""
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_typed_key(x) else x, tree)


def _abstract(template: Any) -> Any:
  """Restore targets: shape, dtype and sharding of every array leaf of ``template``."""

  def leaf(x):
    if _is_typed_key(x):
      x = jax.random.key_data(x)
    if isinstance(x, jax.Array):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return x

  return jax.tree.map(leaf, template)


def _from_storable(restored: Any, template: Any) -> Any:
  def leaf(r, t):
    if _is_typed_key(t):
      return jax.random.wrap_key_data(r, impl=jax.random.key_impl(t))
    return r

  return jax.tree.map(leaf, restored, template)


class Checkpointer:
  """Saves and restores ``(step, state, meta)``; keeps the last ``max_to_keep`` checkpoints.

  All processes of a multi-process run must call :meth:`save` and :meth:`restore_latest`
  (orbax coordinates them; each process writes its shards, process 0 the metadata).

  Args:
    directory: where the step directories live (local path or ``gs://...``).
    max_to_keep: number of most recent checkpoints kept.
    async_save: write in a background thread (``save`` returns once arrays are copied to host);
      call :meth:`wait` or :meth:`close` before exiting.
  """

  def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3, async_save: bool = True):
    directory = os.fspath(files.as_path(directory))
    self.directory = directory
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        create=True,
        enable_async_checkpointing=async_save,
    )
    self._manager = ocp.CheckpointManager(directory, options=options, item_names=(_STATE, _META))

  def save(self, step: int, state: Any, meta: dict | None = None, force: bool = False) -> bool:
    """Saves ``state`` and the JSON-serialisable ``meta`` as step ``step``.

    Returns whether a checkpoint was started (False if ``step`` already exists and not
    ``force``). The arrays are copied to host before this returns, so ``state`` may be donated
    to the next train step right away.
    """
    step = int(step)
    if step in self._manager.all_steps():
      if not force:
        return False
      self._manager.delete(step)
    meta = dict(meta or {})
    meta.setdefault("step", step)
    meta.setdefault("saved_at_unix", time.time())
    meta[DIGEST_KEY] = state_digest(state)
    return self._manager.save(
        step,
        args=ocp.args.Composite(**{
            _STATE: ocp.args.StandardSave(_to_storable(state)),
            _META: ocp.args.JsonSave(meta),
        }),
        force=True,
    )

  def restore_latest(self, template_state: Any) -> tuple[int, Any, dict] | None:
    """Restores the newest readable checkpoint into the shapes/shardings of ``template_state``.

    Unreadable checkpoints newer than it are skipped with a ``UserWarning`` naming their
    directory; once an older one restored (which shows the template fits), they are moved aside
    to ``<directory>/corrupt.<step>.<unix time>`` so that the resumed run saves those steps
    again.

    Returns:
      ``(step, state, meta)``, or None if the directory holds no checkpoint.

    Raises:
      RuntimeError: if checkpoints exist but none can be restored into ``template_state``
        (most likely the state's structure changed: use a fresh workdir). Nothing is moved.
    """
    self.wait()
    self._manager.reload()
    abstract = _abstract(template_state)
    failed: list[tuple[int, str]] = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        state, meta = self._restore(step, abstract, template_state)
      except Exception as e:  # pylint: disable=broad-except  # Any failure means unreadable.
        path = os.path.join(self.directory, str(step))
        reason = f"{type(e).__name__}: {str(e)[:300]}"
        warnings.warn(
            f"checkpoint step {step} at {path} is incomplete or unreadable ({reason}); "
            "falling back to the previous checkpoint", stacklevel=2)
        failed.append((step, reason))
        continue
      for bad_step, _ in failed:
        self._quarantine(bad_step)
      return step, state, meta
    if failed:
      raise RuntimeError(
          f"none of the checkpoints {[s for s, _ in failed]} in {self.directory} can be restored "
          f"into the given state template (newest error: {failed[0][1]}). If the training state's "
          "structure changed, start in a fresh workdir.")
    return None

  def _restore(self, step: int, abstract: Any, template_state: Any) -> tuple[Any, dict]:
    """Restores ``step`` and checks shapes and the state digest; raises if anything is off."""
    restored = self._manager.restore(
        step,
        args=ocp.args.Composite(**{
            _STATE: ocp.args.StandardRestore(abstract),
            _META: ocp.args.JsonRestore(),
        }),
    )
    state = _from_storable(restored[_STATE], template_state)
    _check_restored(state, abstract)
    meta = dict(restored[_META] or {})
    want = meta.get(DIGEST_KEY)
    if want is not None and state_digest(state) != want:
      raise ValueError("the restored state's digest differs from the one saved with it "
                       "(the checkpoint's bytes changed after it was written)")
    return state, meta

  def restore_step(self, step: int, template_state: Any) -> tuple[Any, dict]:
    """Restores exactly ``step`` (a finished stage's final state); no fallback.

    Raises:
      CheckpointError: naming the step directory, if it is missing or unreadable.
    """
    self.wait()
    self._manager.reload()
    path = os.path.join(self.directory, str(step))
    if step not in self._manager.all_steps():
      raise CheckpointError(f"checkpoint step {step} is missing at {path} (have "
                            f"{sorted(self._manager.all_steps())})")
    try:
      return self._restore(step, _abstract(template_state), template_state)
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"checkpoint step {step} at {path} is unreadable "
                            f"({type(e).__name__}: {str(e)[:300]})") from e

  def _quarantine(self, step: int) -> None:
    """Moves an unreadable step directory aside (process 0), then re-reads the step list."""
    if jax.process_index() == 0:
      src = os.path.join(self.directory, str(step))
      dst = os.path.join(self.directory, f"corrupt.{step}.{int(time.time())}")
      try:
        files.as_path(src).rename(dst)
      except Exception as e:  # pylint: disable=broad-except
        warnings.warn(f"could not move unreadable checkpoint {src} aside: {e}", stacklevel=3)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"maxrl_ckpt_quarantine_{step}")
    self._manager.reload()

  def latest_step(self) -> int | None:
    """The newest saved step (not checked for readability), or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _check_restored(state: Any, abstract: Any) -> None:
  """Raises ValueError if a restored leaf does not match the template's shape/dtype."""
  got = jax.tree.leaves(_to_storable(state))
  want = jax.tree.leaves(abstract)
  if len(got) != len(want):
    raise ValueError(f"restored {len(got)} leaves, template has {len(want)}")
  for g, w in zip(got, want):
    if hasattr(w, "shape") and (np.shape(g) != tuple(w.shape)):
      raise ValueError(f"restored leaf shape {np.shape(g)} != template {w.shape}")
