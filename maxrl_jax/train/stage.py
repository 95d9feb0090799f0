"""One training stage's whole lifecycle, shared by every driver: :func:`run_stage`.

A *stage* is one resumable training run in its own workdir (the Bernoulli grid, one ImageNet
objective, maze SFT, one maze RL run). :func:`run_stage` owns, in this order:

1. stop at once if this process was already asked to stop (SIGTERM before the stage began);
2. refuse to resume a workdir whose saved ``config.json`` differs from this run's config in any
   field that changes results (:class:`~maxrl_jax.train.errors.ConfigError` naming the first
   such field; ``allow_config_change`` overrides);
3. a complete ``summary.json`` for exactly ``total_steps``: restore *exactly* that final step
   (never an older one: an unreadable final checkpoint is an error, not a silent fallback) and
   return without training; a summary past ``total_steps`` is a clear error;
4. take the workdir lock (:class:`~maxrl_jax.train.files.WorkdirLock`), write ``config.json``,
   open the metric writer and the checkpointer;
5. restore the latest readable checkpoint (or initialise; a restored step past ``total_steps``
   is a clear error) and log the optional initial evaluation at step 0;
6. :func:`~maxrl_jax.train.loop.run_loop` under the process's preemption guard;
7. close checkpointer and writer in ``finally``;
8. if the stage reached ``total_steps``: the final evaluation, logged at the last step, and an
   atomic ``summary.json`` with ``complete: true``.

It returns a :class:`StageResult`; an orchestrator stops at the first result whose ``reason``
is ``"preempted"`` (the entry point then exits 0; rerunning the command resumes exactly).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from maxrl_jax.train import checkpoint as checkpoint_lib
from maxrl_jax.train import files
from maxrl_jax.train import logs
from maxrl_jax.train import loop
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train.errors import ConfigError

SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
COMPLETED = loop.COMPLETED
PREEMPTED = loop.PREEMPTED

_allow_config_change = False
_profile_steps = 0


def set_allow_config_change(allow: bool) -> None:
  """Process-wide default of :attr:`Stage.allow_config_change` (the ``--allow_config_change``
  flag of the entry point)."""
  global _allow_config_change
  _allow_config_change = bool(allow)


def set_profile_steps(steps: int) -> None:
  """Process-wide: record a ``jax.profiler`` trace of this many steps of every stage, starting
  after its first (compiling) chunk, into ``<stage workdir>/profile`` (the ``--profile_steps``
  flag of the entry point; 0: off). View it with TensorBoard's profile plugin or Perfetto."""
  global _profile_steps
  _profile_steps = int(steps)


def _profiled(train_chunk, directory: str, steps: int):
  """``train_chunk`` that traces ``steps`` steps after the first chunk it runs."""
  import jax  # pylint: disable=g-import-not-at-top
  state = {"calls": 0, "start": None, "done": False}

  def chunk(s, start, n):
    if state["calls"] == 1 and state["start"] is None:
      jax.profiler.start_trace(directory)
      state["start"] = start
    state["calls"] += 1
    out = train_chunk(s, start, n)
    if state["start"] is not None and not state["done"] and start + n - state["start"] >= steps:
      jax.block_until_ready(out)
      jax.profiler.stop_trace()
      state["done"] = True
    return out

  def close():
    if state["start"] is not None and not state["done"]:
      jax.profiler.stop_trace()
      state["done"] = True

  return chunk, close


@dataclasses.dataclass(frozen=True)
class Stage:
  """What :func:`run_stage` needs to know about a stage.

  Attributes:
    name: for messages, e.g. ``"maze sft"``.
    workdir: the stage's directory (any ``etils.epath`` path).
    config: what ``config.json`` records; compared with the saved one on resume.
    total_steps: updates at the end of the stage.
    chunk_steps: updates per jitted chunk.
    checkpoint_every: checkpoint period in steps (>= 1).
    steps_field: the config field that sets ``total_steps`` (named in errors).
    resume_ignore: dotted config fields (or prefixes) that may differ on resume because they do
      not change the stage's results (e.g. ``eval_every``, data directories); ``steps_field`` is
      always allowed to grow (a finished stage is then extended).
    allow_config_change: resume even if other fields differ (None: the process default).
    log_every: scalar logging period.
    max_to_keep: checkpoints kept.
    async_checkpointing: orbax asynchronous saves.
    finite_keys: metrics that must stay finite.
  """
  name: str
  workdir: Any
  config: Any
  total_steps: int
  chunk_steps: int
  checkpoint_every: int
  steps_field: str = "steps"
  resume_ignore: Sequence[str] = ()
  allow_config_change: bool | None = None
  log_every: int = 1
  max_to_keep: int = 2
  async_checkpointing: bool = True
  finite_keys: Sequence[str] = ("loss", "grad_norm")


@dataclasses.dataclass
class StageResult:
  state: Any            # the final (or preempted) state; None if the stage never started
  step: int
  reason: str           # "completed" or "preempted"
  summary: dict         # the stage summary (``complete`` True once it reached total_steps)

  @property
  def preempted(self) -> bool:
    return self.reason == PREEMPTED

  @property
  def complete(self) -> bool:
    return bool(self.summary.get("complete"))


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and tuples are leaves)."""
  if isinstance(tree, Mapping):
    out = {}
    for k, v in tree.items():
      out.update(flatten(v, f"{prefix}{k}."))
    return out if out or not prefix else {prefix[:-1]: {}}
  return {prefix[:-1]: tree}


def _normalised(config: Any) -> dict[str, Any]:
  import json  # pylint: disable=g-import-not-at-top
  return flatten(json.loads(json.dumps(logs.config_to_dict(config))))


def config_diff(saved: Any, current: Any, ignore: Sequence[str] = ()) -> list[tuple[str, Any, Any]]:
  """``(field, saved value, current value)`` for every differing dotted field not in ``ignore``.

  A field is ignored if it equals an entry of ``ignore`` or lies below one (``"eval"`` ignores
  ``"eval.every"``). Missing fields compare as ``"<absent>"``.
  """
  a, b = _normalised(saved), _normalised(current)
  ignored = lambda f: any(f == p or f.startswith(p + ".") for p in ignore)
  out = []
  for field in sorted(set(a) | set(b)):
    va, vb = a.get(field, "<absent>"), b.get(field, "<absent>")
    if va != vb and not ignored(field):
      out.append((field, va, vb))
  return out


def check_resume_config(stage: Stage) -> None:
  """Raises ConfigError if ``stage.workdir`` was run with a config that changes results."""
  allow = _allow_config_change if stage.allow_config_change is None else stage.allow_config_change
  saved = files.read_json(files.as_path(stage.workdir) / logs.CONFIG_FILE)
  if saved is None or allow:
    return
  diff = config_diff(saved, stage.config, tuple(stage.resume_ignore) + (stage.steps_field,))
  if diff:
    field, old, new = diff[0]
    more = f" (and {len(diff) - 1} more field(s))" if len(diff) > 1 else ""
    raise ConfigError(
        f"config.{field}",
        f"the workdir {stage.workdir} was run with {old!r}, this run has {new!r}{more}; resuming "
        "would mix two experiments. Use a fresh --workdir, or pass --allow_config_change")


def read_summary(workdir: Any) -> dict | None:
  """The stage's ``summary.json`` if it says ``complete``, else None."""
  summary = files.read_json(files.as_path(workdir) / SUMMARY_FILE)
  return summary if isinstance(summary, dict) and summary.get("complete") else None


def _too_far(stage: Stage, step: int, where: str) -> ConfigError:
  return ConfigError(
      f"config.{stage.steps_field}",
      f"is {stage.total_steps}, but the workdir {stage.workdir} {where} step {step}; a run "
      "cannot be shortened in place. Use a fresh --workdir (or the larger step count)")


def run_stage(
    stage: Stage,
    *,
    init_state: Callable[[], Any],
    train_chunk: Callable[[Any, int, int], tuple[Any, Mapping[str, Any]]],
    final_eval: Callable[[Any, int], Mapping[str, Any]] | None = None,
    initial_eval: Callable[[Any], Mapping[str, float]] | None = None,
    on_chunk_end: Callable[[Any, int, logs.MetricWriter], None] | None = None,
    on_metrics: Callable[[int, int, Mapping[str, np.ndarray], logs.MetricWriter], None]
    | None = None,
    meta_fn: Callable[[int], dict] | None = None,
    summary_fields: Mapping[str, Any] | None = None,
    restore_complete: bool = True,
    guard: loop.PreemptionGuard | None = None,
    progress_every_seconds: float = 10.0,
) -> StageResult:
  """Runs (resumes, or returns the finished) stage; see the module docstring for the order.

  Args:
    stage: the stage's settings.
    init_state: ``() -> state`` at step 0 (also the restore template; sharded as it should be).
    train_chunk: ``(state, start, n) -> (state, metrics)`` (see ``run_loop``).
    final_eval: ``(state, step) -> {name: value}`` after the last step; scalar values are
      logged at the last step and all go into ``summary["eval"]``.
    initial_eval: ``state -> {name: value}`` logged at step 0 of a fresh stage.
    on_chunk_end: ``(state, step, writer)`` after each chunk (periodic evaluation).
    on_metrics: ``(start, n, metrics, writer)`` with every metric of a chunk on the host
      (non-scalar metrics, see ``run_loop``).
    meta_fn: JSON metadata saved with each checkpoint.
    summary_fields: extra entries of ``summary.json``.
    restore_complete: for a finished stage, restore its final state (False: return state None).
    guard: the preemption guard (default: the process's installed guard).
    progress_every_seconds: console progress period.
  """
  guard = guard if guard is not None else loop.installed_guard()
  root = files.as_path(stage.workdir)
  if guard is not None and guard.requested:
    return StageResult(None, 0, PREEMPTED, {"stage": stage.name, "complete": False})
  check_resume_config(stage)
  chief = mesh_lib.is_chief()

  done = read_summary(root)
  if done is not None and int(done.get("step", -1)) > stage.total_steps:
    raise _too_far(stage, int(done["step"]), "finished at")
  if done is not None and int(done.get("step", -1)) == stage.total_steps:
    state = None
    if restore_complete:
      with checkpoint_lib.Checkpointer(root / CHECKPOINT_DIR, async_save=False) as ckpt:
        state, _ = ckpt.restore_step(stage.total_steps, init_state())
    print(f"[{stage.name}] complete at step {stage.total_steps}: {root}", flush=True)
    return StageResult(state, stage.total_steps, COMPLETED, done)

  with files.WorkdirLock(root, enabled=chief):
    writer = logs.MetricWriter(root)
    try:
      writer.write_config(stage.config)
      with checkpoint_lib.Checkpointer(root / CHECKPOINT_DIR, max_to_keep=stage.max_to_keep,
                                       async_save=stage.async_checkpointing) as ckpt:
        state = init_state()
        start = 0
        restored = ckpt.restore_latest(state)
        if restored is not None:
          start, state, _ = restored
          if start > stage.total_steps:
            raise _too_far(stage, start, "has a checkpoint at")
          print(f"[{stage.name}] resumed from step {start} in {root}", flush=True)
        elif initial_eval is not None:
          writer.write_scalars(0, initial_eval(state))
        progress = logs.Progress(stage.total_steps, start, every_seconds=progress_every_seconds,
                                 name=stage.name)
        t0 = time.time()
        close_profile = lambda: None
        if _profile_steps > 0:
          train_chunk, close_profile = _profiled(train_chunk, str(root / "profile"),
                                                 _profile_steps)
        chunk_end = metrics_hook = None
        if on_chunk_end is not None:
          chunk_end = lambda s, step: on_chunk_end(s, step, writer)
        if on_metrics is not None:
          metrics_hook = lambda start, n, m: on_metrics(start, n, m, writer)
        try:
          state, step, reason = loop.run_loop(
              state=state, start_step=start, total_steps=stage.total_steps,
              chunk_steps=stage.chunk_steps, train_chunk=train_chunk, checkpointer=ckpt,
              writer=writer, checkpoint_every=stage.checkpoint_every, progress=progress,
              on_chunk_end=chunk_end, meta_fn=meta_fn, guard=guard, log_every=stage.log_every,
              finite_keys=stage.finite_keys, on_metrics=metrics_hook)
        finally:
          close_profile()
        train_wall = time.time() - t0
        if reason == COMPLETED and step == stage.total_steps and step not in ckpt.all_steps():
          ckpt.save(step, state)  # e.g. a 0-step stage: its state must be restorable exactly
      summary = {"stage": stage.name, "step": int(step), "stopped": reason, "complete": False,
                 "train_wall_s": train_wall}
      summary.update(dict(summary_fields or {}))
      if reason == COMPLETED and step == stage.total_steps:
        t1 = time.time()
        if final_eval is not None:
          final = dict(final_eval(state, step))
          scalars = {k: v for k, v in final.items() if np.ndim(v) == 0 and _is_number(v)}
          if scalars:
            writer.write_scalars(step, scalars)
          summary["eval"] = final
        summary["eval_wall_s"] = time.time() - t1
        summary["complete"] = True
        writer.flush()
        if chief:
          files.write_json(root / SUMMARY_FILE, summary)
    finally:
      writer.close()
  if reason == PREEMPTED:
    print(f"[{stage.name}] preempted at step {step}; checkpoint saved in {root}. Rerun the same "
          "command to resume.", flush=True)
  return StageResult(state, int(step), reason, summary)


def _is_number(v: Any) -> bool:
  try:
    float(np.asarray(v))
    return True
  except (TypeError, ValueError):
    return False
