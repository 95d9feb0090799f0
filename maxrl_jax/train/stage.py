"""One training stage's whole lifecycle, shared by every driver: :func:`run_stage`.

A *stage* is one resumable training run in its own workdir (the Bernoulli grid, one ImageNet
objective, maze SFT, one maze RL run). :func:`run_stage` owns, in this order:

1. stop at once if this process was already asked to stop (SIGTERM before the stage began);
2. refuse to resume a workdir whose saved ``config.json`` differs from this run's config in any
   field that changes results (:class:`~maxrl_jax.train.errors.ConfigError` naming the first
   such field; ``allow_config_change``, of the stage or of the :class:`RunOptions`, overrides);
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

A stage is two small objects: :class:`Stage` (where, how long, how it resumes) and
:class:`Program` (what it trains and evaluates, with the loop's
:class:`~maxrl_jax.train.loop.Hooks`). Options of a whole invocation (the entry point's
``--allow_config_change``, ``--profile_steps``) are :class:`RunOptions`, scoped by
:func:`run_options`.

It returns a :class:`StageResult`; an orchestrator stops at the first result whose ``reason``
is ``"preempted"`` (the entry point then exits 0; rerunning the command resumes exactly).
"""

from __future__ import annotations

import contextlib
import contextvars
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
Hooks = loop.Hooks  # A stage's loop hooks (Program.hooks).


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """Options of a whole invocation, not of one stage's results (the entry point's flags).

  Attributes:
    allow_config_change: resume a workdir even if its saved config differs in fields that
      change results (``--allow_config_change``).
    profile_steps: record a ``jax.profiler`` trace of this many steps of every stage, starting
      after its first (compiling) chunk, into ``<stage workdir>/profile`` (``--profile_steps``;
      0: off). View it with TensorBoard's profile plugin or Perfetto.
  """
  allow_config_change: bool = False
  profile_steps: int = 0


_OPTIONS: contextvars.ContextVar[RunOptions] = contextvars.ContextVar(
    "maxrl_jax_run_options", default=RunOptions())


def current_options() -> RunOptions:
  """The :class:`RunOptions` of the innermost :func:`run_options` block (defaults outside)."""
  return _OPTIONS.get()


@contextlib.contextmanager
def run_options(options: RunOptions):
  """Every stage run inside the block uses ``options`` (where its :class:`Stage` leaves the
  field None); the entry point wraps the orchestrator in one. Scoped, not a process global:
  the previous options are back after the block."""
  token = _OPTIONS.set(options)
  try:
    yield options
  finally:
    _OPTIONS.reset(token)


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
    resume_absent_as: ``{dotted field: value}`` of fields added to the config after a workdir may
      have been written: a saved config without the field resumes when this run's value is the
      given one (the value older runs implicitly had).
    allow_config_change: resume even if other fields differ (None: that of the run options,
      :func:`current_options`).
    log_every: scalar logging period.
    max_to_keep: checkpoints kept.
    async_checkpointing: orbax asynchronous saves.
    finite_keys: metrics that must stay finite.
    restore_complete: for a finished stage, restore its final state (False: return state None).
    progress_every_seconds: console progress period.
    profile_steps: steps to trace with ``jax.profiler`` (None: that of the run options).
  """
  name: str
  workdir: Any
  config: Any
  total_steps: int
  chunk_steps: int
  checkpoint_every: int
  steps_field: str = "steps"
  resume_ignore: Sequence[str] = ()
  resume_absent_as: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  allow_config_change: bool | None = None
  log_every: int = 1
  max_to_keep: int = 2
  async_checkpointing: bool = True
  finite_keys: Sequence[str] = ("loss", "grad_norm")
  restore_complete: bool = True
  progress_every_seconds: float = 10.0
  profile_steps: int | None = None

  def replace(self, **changes) -> "Stage":
    """A copy with ``changes`` (e.g. ``stage.replace(restore_complete=False)``)."""
    return dataclasses.replace(self, **changes)

  def loop_spec(self) -> loop.LoopSpec:
    return loop.LoopSpec(total_steps=self.total_steps, chunk_steps=self.chunk_steps,
                         checkpoint_every=self.checkpoint_every, log_every=self.log_every,
                         finite_keys=tuple(self.finite_keys))


@dataclasses.dataclass(frozen=True)
class Program:
  """What a stage trains and evaluates: two functions, optional evaluations and loop hooks.

  Attributes:
    init_state: ``() -> state`` at step 0 (also the restore template; sharded as it should be).
    train_chunk: ``(state, start, n) -> (state, metrics)`` (see :func:`loop.run_loop`).
    final_eval: ``(state, step) -> {name: value}`` after the last step; scalar values are
      logged at the last step and all go into ``summary["eval"]``.
    initial_eval: ``state -> {name: value}`` logged at step 0 of a fresh stage.
    hooks: the loop's :class:`~maxrl_jax.train.loop.Hooks` (periodic evaluation, non-scalar
      metrics, checkpoint metadata).
    summary_fields: extra entries of ``summary.json``.
  """
  init_state: Callable[[], Any]
  train_chunk: Callable[[Any, int, int], tuple[Any, Mapping[str, Any]]]
  final_eval: Callable[[Any, int], Mapping[str, Any]] | None = None
  initial_eval: Callable[[Any], Mapping[str, float]] | None = None
  hooks: loop.Hooks = loop.Hooks()
  summary_fields: Mapping[str, Any] | None = None


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


def config_diff(saved: Any, current: Any, ignore: Sequence[str] = (),
                absent_as: Mapping[str, Any] | None = None) -> list[tuple[str, Any, Any]]:
  """``(field, saved value, current value)`` for every differing dotted field not in ``ignore``.

  A field is ignored if it equals an entry of ``ignore`` or lies below one (``"eval"`` ignores
  ``"eval.every"``). Missing fields compare as ``"<absent>"``, except a field of ``absent_as``
  missing from ``saved``: it compares as the value given there (a field added to the config
  after the workdir was written, with the value older runs implicitly had).
  """
  a, b = _normalised(saved), _normalised(current)
  ignored = lambda f: any(f == p or f.startswith(p + ".") for p in ignore)
  absent_as = _normalised(dict(absent_as or {})) if absent_as else {}
  out = []
  for field in sorted(set(a) | set(b)):
    va, vb = a.get(field, absent_as.get(field, "<absent>")), b.get(field, "<absent>")
    if va != vb and not ignored(field):
      out.append((field, va, vb))
  return out


def check_resume_config(stage: Stage) -> None:
  """Raises ConfigError if ``stage.workdir`` was run with a config that changes results."""
  allow = stage.allow_config_change
  if allow is None:
    allow = current_options().allow_config_change
  saved = files.read_json(files.as_path(stage.workdir) / logs.CONFIG_FILE)
  if saved is None or allow:
    return
  diff = config_diff(saved, stage.config, tuple(stage.resume_ignore) + (stage.steps_field,),
                     stage.resume_absent_as)
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


def run_stage(stage: Stage, program: Program, *,
              guard: loop.PreemptionGuard | None = None) -> StageResult:
  """Runs (resumes, or returns the finished) stage; see the module docstring for the order.

  Args:
    stage: the stage's settings (:class:`Stage`).
    program: what it trains and evaluates (:class:`Program`).
    guard: the preemption guard (default: the process's installed guard).
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
    if stage.restore_complete:
      with checkpoint_lib.Checkpointer(root / CHECKPOINT_DIR, async_save=False) as ckpt:
        state, _ = ckpt.restore_step(stage.total_steps, program.init_state())
    print(f"[{stage.name}] complete at step {stage.total_steps}: {root}", flush=True)
    return StageResult(state, stage.total_steps, COMPLETED, done)

  with files.WorkdirLock(root, enabled=chief):
    writer = logs.MetricWriter(root)
    try:
      writer.write_config(stage.config)
      with checkpoint_lib.Checkpointer(root / CHECKPOINT_DIR, max_to_keep=stage.max_to_keep,
                                       async_save=stage.async_checkpointing) as ckpt:
        state = program.init_state()
        start = 0
        restored = ckpt.restore_latest(state)
        if restored is not None:
          start, state, _ = restored
          if start > stage.total_steps:
            raise _too_far(stage, start, "has a checkpoint at")
          print(f"[{stage.name}] resumed from step {start} in {root}", flush=True)
        elif program.initial_eval is not None:
          writer.write_scalars(0, program.initial_eval(state))
        if chief:
          print(logs.start_banner(stage.name, stage.config, params=getattr(state, "params", None),
                                  workdir=root), flush=True)
        progress = logs.Progress(stage.total_steps, start,
                                 every_seconds=stage.progress_every_seconds, name=stage.name)
        t0 = time.time()
        train_chunk, close_profile = program.train_chunk, lambda: None
        profile_steps = stage.profile_steps
        if profile_steps is None:
          profile_steps = current_options().profile_steps
        if profile_steps > 0:
          train_chunk, close_profile = _profiled(train_chunk, str(root / "profile"),
                                                 profile_steps)
        try:
          state, step, reason = loop.run_loop(
              state, start, train_chunk, stage.loop_spec(), checkpointer=ckpt, writer=writer,
              hooks=program.hooks, progress=progress, guard=guard)
        finally:
          close_profile()
        train_wall = time.time() - t0
        if reason == COMPLETED and step == stage.total_steps and step not in ckpt.all_steps():
          ckpt.save(step, state)  # e.g. a 0-step stage: its state must be restorable exactly
      summary = {"stage": stage.name, "step": int(step), "stopped": reason, "complete": False,
                 "train_wall_s": train_wall}
      summary.update(dict(program.summary_fields or {}))
      if reason == COMPLETED and step == stage.total_steps:
        t1 = time.time()
        if program.final_eval is not None:
          final = dict(program.final_eval(state, step))
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
