"""Workdir file I/O through ``etils.epath``: local paths and ``gs://`` buckets alike.

Every file the training infrastructure and the drivers write (metrics, config, summaries,
figures, tables, locks) goes through these helpers, so a ``gs://`` workdir on a Cloud TPU VM
receives every artefact, not only the orbax checkpoints.

* :func:`write_json` is the one atomic JSON writer: a local file is written to ``<name>.tmp``
  and renamed over the target (a reader never sees half a file); an object store write is
  atomic by itself (the object appears when the upload completes).
* :func:`read_json` returns None for a missing or unreadable file.
* :class:`WorkdirLock` makes a workdir exclusive to one process tree (two runs writing the same
  checkpoints would silently mix their results).
* I/O failures (a full disk, a missing bucket, permissions) are raised once as
  :class:`WorkdirIOError` naming the path; the entry point prints one line for it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from typing import Any, Iterator

from etils import epath

PathLike = str | os.PathLike


class WorkdirIOError(OSError):
  """Reading or writing ``path`` failed; the message names the path and the OS reason."""

  def __init__(self, path: PathLike, cause: BaseException):
    self.path = str(path)
    self.cause = cause
    code = getattr(cause, "errno", None)
    reason = os.strerror(code) if isinstance(code, int) else f"{type(cause).__name__}: {cause}"
    if code == errno.ENOSPC:
      reason = "no space left on device"
    super().__init__(code, f"cannot write or read {self.path}: {reason}")

  def __str__(self) -> str:
    return self.args[1]


class WorkdirBusyError(RuntimeError):
  """Another process holds the workdir's lock."""


def as_path(path: PathLike) -> epath.Path:
  """``path`` as an ``epath.Path`` (local paths made absolute)."""
  p = epath.Path(path)
  if is_local(p):
    p = epath.Path(os.path.abspath(os.fspath(p)))
  return p


def is_local(path: PathLike) -> bool:
  """True unless ``path`` has a URI scheme (``gs://``, ``s3://``, ...)."""
  return "://" not in os.fspath(path)


@contextlib.contextmanager
def io_errors(path: PathLike) -> Iterator[None]:
  """Re-raises any ``OSError`` inside the block as one :class:`WorkdirIOError` naming ``path``."""
  try:
    yield
  except WorkdirIOError:
    raise
  except OSError as e:
    raise WorkdirIOError(path, e) from e


def makedirs(path: PathLike) -> epath.Path:
  p = as_path(path)
  with io_errors(p):
    p.mkdir(parents=True, exist_ok=True)
  return p


def write_text(path: PathLike, text: str) -> None:
  """Writes ``text`` (UTF-8) to ``path`` atomically (see the module docstring)."""
  write_bytes(path, text.encode("utf-8"))


def write_bytes(path: PathLike, data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically: a local ``<name>.tmp`` renamed over the target, or
  one object-store upload."""
  p = as_path(path)
  with io_errors(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    if is_local(p):
      tmp = epath.Path(os.fspath(p) + ".tmp")
      tmp.write_bytes(data)
      os.replace(os.fspath(tmp), os.fspath(p))
    else:
      p.write_bytes(data)


def write_json(path: PathLike, obj: Any, sort_keys: bool = True) -> None:
  """Writes ``obj`` as indented JSON (keys sorted unless ``sort_keys=False``), atomically."""
  write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=_json_default) + "\n")


def _json_default(x: Any) -> Any:
  import numpy as np  # pylint: disable=g-import-not-at-top
  if isinstance(x, (np.generic, np.ndarray)):
    return np.asarray(x).tolist()
  return str(x)


def read_json(path: PathLike) -> Any | None:
  """The parsed JSON at ``path``, or None if it is missing or not valid JSON."""
  p = as_path(path)
  try:
    if not p.exists():
      return None
    return json.loads(p.read_text())
  except (OSError, ValueError):
    return None


def exists(path: PathLike) -> bool:
  return as_path(path).exists()


def savefig(fig, path: PathLike, **kwargs) -> str:
  """Saves a matplotlib figure to ``path`` (any epath backend); returns the path as a string."""
  import io  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  fig.savefig(buf, format=os.path.splitext(os.fspath(path))[1][1:] or "png", **kwargs)
  write_bytes(path, buf.getvalue())
  return os.fspath(as_path(path))


# ------------------------------------------------------------------------------------------------
# Workdir lock.

LOCK_FILE = ".lock"


def _holder() -> dict:
  return {"host": socket.gethostname(), "pid": os.getpid(), "since_unix": time.time()}


def _alive_here(holder: dict) -> bool:
  """Whether ``holder`` names a live process on this host (unknown hosts count as alive)."""
  if holder.get("host") != socket.gethostname():
    return True
  try:
    os.kill(int(holder.get("pid", -1)), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, ValueError, TypeError):
    return True
  return True


class WorkdirLock:
  """An exclusive lock on a workdir: ``<workdir>/.lock`` names its holder (host, pid, since).

  Taken by the chief process only (other processes of a multi-process run follow it). A lock
  whose holder is a dead process on this host (a run killed with SIGKILL) is taken over; a live
  holder, or one on another host, makes :meth:`acquire` raise :class:`WorkdirBusyError` naming
  it (delete the file by hand if that host is gone). The same process may re-enter its own lock.
  """

  def __init__(self, workdir: PathLike, enabled: bool = True):
    self.path = as_path(workdir) / LOCK_FILE
    self.enabled = enabled
    self._owned = False

  def acquire(self) -> None:
    if not self.enabled:
      return
    makedirs(self.path.parent)
    me = _holder()
    if is_local(self.path):
      for _ in range(2):
        try:
          fd = os.open(os.fspath(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
          holder = read_json(self.path) or {}
          if holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
            return  # Re-entered by the holder itself.
          if holder and _alive_here(holder):
            raise WorkdirBusyError(self._busy_message(holder)) from None
          with contextlib.suppress(FileNotFoundError):
            os.remove(os.fspath(self.path))  # Stale: its holder is gone.
          continue
        except OSError as e:
          raise WorkdirIOError(self.path, e) from e
        with os.fdopen(fd, "w") as f:
          json.dump(me, f)
        self._owned = True
        return
      raise WorkdirBusyError(f"could not take the lock {self.path}")
    holder = read_json(self.path)  # Object stores have no O_EXCL: best effort.
    if holder and not (holder.get("pid") == me["pid"] and holder.get("host") == me["host"]):
      if _alive_here(holder):
        raise WorkdirBusyError(self._busy_message(holder))
    write_json(self.path, me)
    self._owned = True

  def _busy_message(self, holder: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since_unix", 0)))
    return (f"workdir {self.path.parent} is in use by pid {holder.get('pid')} on host "
            f"{holder.get('host')} (since {since}); wait for it to finish, or delete "
            f"{self.path} if that process is gone")

  def release(self) -> None:
    if self._owned:
      with contextlib.suppress(OSError):
        self.path.unlink()
      self._owned = False

  def __enter__(self) -> "WorkdirLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
