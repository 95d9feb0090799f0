"""Metrics (JSON lines + TensorBoard), the run's config as JSON, console progress and the start
banner.

Only the chief process (``jax.process_index() == 0``) writes; in other processes the writer is a
no-op, so drivers call it unconditionally. Both sinks use the same metric names: a scalar logged
as ``eval/test/pass@1`` is ``"eval/test/pass@1"`` in ``metrics.jsonl`` and the TensorBoard tag
``eval/test/pass@1`` (see :func:`tensorboard_tag`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Mapping, TextIO
import warnings

import numpy as np

from maxrl_jax.train import files
from maxrl_jax.train import mesh as mesh_lib

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
TB_DIR = "tb"


def _to_float(value: Any) -> float:
  return float(np.asarray(value).reshape(()))


def _json_value(value: float) -> float | str:
  """JSON has no NaN/inf; keep them readable as strings ("nan", "inf", "-inf")."""
  return value if math.isfinite(value) else str(value)


def config_to_dict(config: Any) -> Any:
  """A JSON-serialisable copy of an ``ml_collections.ConfigDict``, a dataclass or a dict."""
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  elif hasattr(config, "__dataclass_fields__"):
    import dataclasses
    config = dataclasses.asdict(config)
  if isinstance(config, Mapping):
    return {str(k): config_to_dict(v) for k, v in config.items()}
  if isinstance(config, (list, tuple)):
    return [config_to_dict(v) for v in config]
  if isinstance(config, (np.generic, np.ndarray)):
    return np.asarray(config).tolist()
  if config is None or isinstance(config, (bool, int, float, str)):
    return config
  return str(config)


def tensorboard_tag(name: str) -> str:
  """The TensorBoard tag of the metric ``name``: ``name`` itself, e.g. ``eval/test/pass@1``.

  TensorBoard stores and shows any tag string; only TensorFlow's and tensorboardX's summary
  helpers rewrite characters outside ``[-/\\w.]`` (``pass@1`` would become ``pass_1``), so
  :class:`MetricWriter` writes the summary protocol buffers itself and the JSON lines and
  TensorBoard share one name.
  """
  return str(name)


STEPS_PER_SEC = "steps_per_sec"
BURST_GAP_S = 0.01


class MetricWriter:
  """Writes scalars to ``workdir/metrics.jsonl`` and TensorBoard events under ``workdir/tb``.

  Each ``metrics.jsonl`` line is ``{"step": s, "time": unix_seconds, "<name>": value, ...}``,
  where ``time`` is the wall-clock time of the :meth:`write_scalars` call that recorded the
  values (not the time the line reached the file, e.g. at a :meth:`flush`); TensorBoard events
  carry the same time. The file is appended to, so a resumed run continues it (steps after the
  last checkpoint are logged again by the resumed run; readers keep the last line per step and
  name). A torn last line (a process killed mid-write) is trimmed when the writer opens the file.

  ``workdir`` may be any ``etils.epath`` path. Object stores (``gs://``) cannot append: there
  the lines are kept in memory and the whole file is rewritten at every :meth:`flush` (the loop
  flushes at checkpoints and at the end), and TensorBoard events are written to a local
  temporary directory and copied into ``workdir/tb`` at each flush.

  Throughput: the writer adds ``steps_per_sec`` (``STEPS_PER_SEC``) to the record that starts a
  *burst*, a call whose step is above every step this writer has written and that comes at least
  ``burst_gap_s`` after the previous call. Its value is (step - step of the previous burst's
  first call) / (time - that call's time). The training loop writes the steps of a chunk
  together, so this is the rate per chunk (evaluation and checkpoint time included); records
  inside a burst, evaluations logged at an already written step, records at step 0 (nothing
  trained yet) and the writer's first burst (after a start or resume: compilation) have none.
  A caller's own ``steps_per_sec`` value is kept.

  Args:
    workdir: run directory (created).
    enabled: write files; defaults to :func:`maxrl_jax.train.mesh.is_chief`.
    tensorboard: also write TensorBoard events (tensorboardX's event-file writer).
    burst_gap_s: the least time between two calls for the later one to start a burst.
  """

  def __init__(self, workdir: str | os.PathLike, enabled: bool | None = None,
               tensorboard: bool = True, burst_gap_s: float = BURST_GAP_S):
    self.workdir = str(workdir)
    self.burst_gap_s = float(burst_gap_s)
    self._last_call: float | None = None          # time of the previous write_scalars call
    self._max_step: int | None = None             # the highest step written so far
    self._anchor: tuple[int, float] | None = None  # (step, time) of the last burst's first call
    self.enabled = mesh_lib.is_chief() if enabled is None else bool(enabled)
    self._jsonl = None
    self._tb = None
    self._remote_lines: list[str] | None = None
    self._tb_local: str | None = None
    if not self.enabled:
      return
    root = files.makedirs(workdir)
    self._path = root / METRICS_FILE
    kept = _trim_torn_line(self._path)
    if files.is_local(root):
      with files.io_errors(self._path):
        self._jsonl = open(os.fspath(self._path), "a", encoding="utf-8")
    else:
      self._remote_lines = kept
    if tensorboard:
      from tensorboardX import SummaryWriter  # Imported lazily: slow import.
      if files.is_local(root):
        self._tb = SummaryWriter(logdir=os.fspath(root / TB_DIR))
      else:
        import tempfile  # pylint: disable=g-import-not-at-top
        self._tb_local = tempfile.mkdtemp(prefix="maxrl_tb_")
        self._tb = SummaryWriter(logdir=self._tb_local)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Appends one JSON line and one TensorBoard scalar per entry, all at ``step``, stamped with
    the current wall-clock time (plus ``steps_per_sec`` at the start of a burst, see above)."""
    if not self.enabled:
      return
    now = time.time()
    step = int(step)
    values = {str(k): _to_float(v) for k, v in scalars.items()}
    rate = self._rate(step, now)
    if rate is not None:
      values.setdefault(STEPS_PER_SEC, rate)
    record = {"step": step, "time": now}
    record.update({k: _json_value(v) for k, v in values.items()})
    line = json.dumps(record) + "\n"
    if self._jsonl is not None:
      with files.io_errors(self._path):
        self._jsonl.write(line)
        self._jsonl.flush()
    elif self._remote_lines is not None:
      self._remote_lines.append(line)
    if self._tb is not None and values:
      from tensorboardX.proto.summary_pb2 import Summary  # pylint: disable=g-import-not-at-top
      summary = Summary(value=[Summary.Value(tag=tensorboard_tag(k), simple_value=v)
                               for k, v in values.items()])
      self._tb.file_writer.add_summary(summary, global_step=step, walltime=now)

  def _rate(self, step: int, now: float) -> float | None:
    """``steps_per_sec`` of a call at ``step`` and time ``now`` (None: not a burst start)."""
    starts_burst = (step > 0 and (self._max_step is None or step > self._max_step)
                    and (self._last_call is None or now - self._last_call >= self.burst_gap_s))
    self._last_call = now
    self._max_step = step if self._max_step is None else max(self._max_step, step)
    if not starts_burst:
      return None
    anchor, self._anchor = self._anchor, (step, now)
    if anchor is None or now <= anchor[1]:
      return None
    return (step - anchor[0]) / (now - anchor[1])

  def write_config(self, config: Any) -> None:
    """Writes ``workdir/config.json`` (sorted keys, indented) and, with TensorBoard, the config
    as text and as hyperparameters (the HParams dashboard's table, scalar fields only)."""
    if not self.enabled:
      return
    as_dict = config_to_dict(config)
    files.write_json(files.as_path(self.workdir) / CONFIG_FILE, as_dict)
    if self._tb is not None:
      flat = _flatten(as_dict) if isinstance(as_dict, Mapping) else {}
      text = "\n".join(f"    {k} = {v!r}" for k, v in sorted(flat.items()))
      self._tb.add_text("config", text)
      hparams = {k: v for k, v in flat.items() if isinstance(v, (bool, int, float, str))}
      if hparams:
        from tensorboardX.summary import hparams as hparams_summary  # pylint: disable=g-import-not-at-top
        for summary in hparams_summary(hparams, {}):
          self._tb.file_writer.add_summary(summary)

  def flush(self) -> None:
    if self._jsonl is not None:
      with files.io_errors(self._path):
        self._jsonl.flush()
    if self._remote_lines is not None:
      files.write_text(self._path, "".join(self._remote_lines))
    if self._tb is not None:
      self._tb.flush()
      if self._tb_local is not None:
        _copy_tree(self._tb_local, files.as_path(self.workdir) / TB_DIR)

  def close(self) -> None:
    if not self.enabled:
      return
    self.flush()
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      if self._tb_local is not None:
        _copy_tree(self._tb_local, files.as_path(self.workdir) / TB_DIR)
      self._tb = None
    self._remote_lines = None

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _flatten(tree: Mapping, prefix: str = "") -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v if not isinstance(v, list) else str(v)
  return out


def _copy_tree(local_dir: str, dest) -> None:
  for root, _, names in os.walk(local_dir):
    for name in names:
      src = os.path.join(root, name)
      rel = os.path.relpath(src, local_dir)
      with open(src, "rb") as f:
        files.write_bytes(dest / rel, f.read())


def _trim_torn_line(path) -> list[str]:
  """Drops a torn (unterminated) last line of ``path``; returns the complete lines kept."""
  if not path.exists():
    return []
  with files.io_errors(path):
    data = path.read_bytes()
  if not data or data.endswith(b"\n"):
    return data.decode("utf-8", errors="replace").splitlines(keepends=True)
  cut = data.rfind(b"\n") + 1
  warnings.warn(f"{path}: dropping a torn last line ({len(data) - cut} bytes) left by an "
                "interrupted write", stacklevel=3)
  if files.is_local(path):
    with files.io_errors(path), open(os.fspath(path), "r+b") as f:
      f.truncate(cut)
  else:
    files.write_bytes(path, data[:cut])
  return data[:cut].decode("utf-8", errors="replace").splitlines(keepends=True)


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
  """Reads ``metrics.jsonl`` back, keeping the last record of each step (resumes re-log steps).

  Lines that are not valid JSON records (a torn write) are skipped with a warning naming
  ``file:line``.
  """
  path = files.as_path(workdir) / METRICS_FILE
  by_step: dict[int, dict] = {}
  with files.io_errors(path):
    text = path.read_text()
  for lineno, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    try:
      rec = json.loads(line)
      step = int(rec["step"])
    except (ValueError, KeyError, TypeError):
      warnings.warn(f"{path}:{lineno}: skipping a line that is not a metrics record",
                    stacklevel=2)
      continue
    by_step.setdefault(step, {}).update(rec)
  return [by_step[s] for s in sorted(by_step)]


def format_duration(seconds: float) -> str:
  """``hh:mm:ss`` (hours may exceed 24)."""
  if not math.isfinite(seconds):
    return "--:--:--"
  seconds = max(0, int(round(seconds)))
  return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _config_field(config: Any, key: str) -> Any:
  if config is None:
    return None
  if isinstance(config, Mapping) or (hasattr(config, "get") and hasattr(config, "keys")):
    try:
      return config.get(key)
    except (AttributeError, KeyError, TypeError):
      return None
  return getattr(config, key, None)


def parameter_count(params: Any) -> tuple[int, int]:
  """``(number of parameters, bytes)`` of the array leaves of the pytree ``params``."""
  import jax  # pylint: disable=g-import-not-at-top
  count = nbytes = 0
  for leaf in jax.tree.leaves(params):
    shape = getattr(leaf, "shape", None)
    if shape is None:
      continue
    size = math.prod(shape)
    count += size
    nbytes += size * np.dtype(getattr(leaf, "dtype", np.float32)).itemsize
  return count, nbytes


def _bytes(n: int) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if n < 1024 or unit == "GiB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1024
  return f"{n} B"


def start_banner(name: str, config: Any = None, params: Any = None,
                 workdir: str | os.PathLike | None = None) -> str:
  """One line describing a stage at its start, e.g.

  ``[maze sft] start: 8 devices (8 x cpu) in 1 process (this: 0, 8 local), preset cpu, workdir
  runs/maze/cpu/sft, 180,352 parameters (704.5 KiB)``

  Devices are all devices of all processes, grouped by ``device_kind``; the preset is
  ``config.preset`` (else ``config.name``) when the config has one; the parameter count (and
  bytes) is over the array leaves of ``params`` when given. The caller prints it (the chief, once
  per stage).
  """
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  kinds: dict[str, int] = {}
  for d in devices:
    kinds[d.device_kind] = kinds.get(d.device_kind, 0) + 1
  kind_text = ", ".join(f"{n} x {k}" for k, n in kinds.items())
  n_proc = jax.process_count()
  parts = [f"{len(devices)} device{'s' if len(devices) != 1 else ''} ({kind_text}) in {n_proc} "
           f"process{'es' if n_proc != 1 else ''} (this: {jax.process_index()}, "
           f"{jax.local_device_count()} local)"]
  preset = _config_field(config, "preset")
  if preset is not None:
    parts.append(f"preset {preset}")
  elif _config_field(config, "name") is not None:
    parts.append(f"config {_config_field(config, 'name')}")
  if workdir is not None:
    parts.append(f"workdir {workdir}")
  if params is not None:
    count, nbytes = parameter_count(params)
    parts.append(f"{count:,} parameters ({_bytes(nbytes)})")
  return f"[{name}] start: " + ", ".join(parts)


class Progress:
  """Console progress: ``name step i/n  x.y steps/s  ETA hh:mm:ss  k=v ...``.

  The rate is measured from the first :meth:`update` (so compilation of the first chunk is not
  counted) and printed at most every ``every_seconds`` (and always at the last step). Only the
  chief prints.
  """

  def __init__(self, total_steps: int, start_step: int = 0, every_seconds: float = 10.0,
               name: str = "", stream: TextIO | None = None, enabled: bool | None = None):
    self.total_steps = int(total_steps)
    self.start_step = int(start_step)
    self.every_seconds = float(every_seconds)
    self.name = name
    self.stream = stream
    self.enabled = mesh_lib.is_chief() if enabled is None else bool(enabled)
    self._t0: float | None = None
    self._step0 = self.start_step
    self._last_print = -math.inf
    self.steps_per_second = float("nan")
    self.side_seconds: dict[str, float] = {}  # time spent outside the train chunks

  def add_time(self, name: str, seconds: float) -> None:
    """Accounts ``seconds`` of non-training work (``eval``, ``ckpt``) shown beside the rate."""
    self.side_seconds[name] = self.side_seconds.get(name, 0.0) + float(seconds)

  def eta_seconds(self, step: int) -> float:
    if not self.steps_per_second > 0:
      return float("inf")
    return (self.total_steps - step) / self.steps_per_second

  def update(self, step: int, **extra: Any) -> str | None:
    """Records that ``step`` steps are done; prints and returns the line when due."""
    now = time.perf_counter()
    if self._t0 is None:
      self._t0, self._step0 = now, int(step)
    elif step > self._step0:
      self.steps_per_second = (step - self._step0) / max(now - self._t0, 1e-9)
    last = step >= self.total_steps
    if not self.enabled or (now - self._last_print < self.every_seconds and not last):
      return None
    self._last_print = now
    parts = [f"{self.name} " if self.name else "", f"step {step}/{self.total_steps}"]
    if self.steps_per_second == self.steps_per_second:  # Not NaN.
      parts.append(f"  {self.steps_per_second:.3g} steps/s")
    parts.append(f"  ETA {format_duration(self.eta_seconds(step))}")
    for k, v in self.side_seconds.items():
      parts.append(f"  {k} {format_duration(v)}")
    for k, v in extra.items():
      try:
        parts.append(f"  {k}={_to_float(v):.4g}")
      except (TypeError, ValueError):
        parts.append(f"  {k}={v}")
    line = "".join(parts)
    print(line, file=self.stream or sys.stdout, flush=True)
    return line
