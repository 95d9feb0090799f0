"""The shared stage lifecycle (maxrl_jax.train.stage), workdir files and lock, on a tiny problem."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maxrl_jax.train import checkpoint as checkpoint_lib
from maxrl_jax.train import files
from maxrl_jax.train import logs
from maxrl_jax.train import loop
from maxrl_jax.train import stage as stage_lib
from maxrl_jax.train.errors import ConfigError


def _chunk(state, start, n):
  """``x <- x + t + 1`` for updates ``t = start .. start + n - 1``; loss = the new x."""
  steps = jnp.arange(start, start + n, dtype=jnp.float32)
  xs = state["x"] + jnp.cumsum(steps + 1.0)
  return {"x": xs[-1]}, {"loss": xs, "grad_norm": jnp.ones_like(xs)}


def _stage(workdir, total=8, lr=0.1, **kw):
  return stage_lib.Stage(name="toy", workdir=str(workdir), config={"lr": lr, "steps": total},
                         total_steps=total, chunk_steps=2, checkpoint_every=2,
                         async_checkpointing=False, **kw)


def _run(stage, guard=None, on_chunk_end=None, **program):
  program = stage_lib.Program(init_state=lambda: {"x": jnp.zeros((), jnp.float32)},
                              train_chunk=_chunk, hooks=stage_lib.Hooks(on_chunk_end=on_chunk_end),
                              **program)
  return stage_lib.run_stage(stage, program, guard=guard)


def test_complete_stage_is_restored_exactly_and_not_retrained(tmp_path):
  res = _run(_stage(tmp_path), final_eval=lambda s, t: {"x": float(s["x"])})
  assert res.complete and res.step == 8 and float(res.state["x"]) == 36.0
  assert json.loads((tmp_path / "summary.json").read_text())["eval"]["x"] == 36.0
  calls = []
  again = stage_lib.run_stage(_stage(tmp_path), stage_lib.Program(
      init_state=lambda: {"x": jnp.zeros(())}, train_chunk=lambda *a: calls.append(a)))
  assert not calls and float(again.state["x"]) == 36.0 and again.complete


def test_preempted_stage_resumes_to_identical_result(tmp_path):
  guard = loop.PreemptionGuard()
  stopped = []

  def chunk_end(state, step, writer):
    if step == 4:
      guard.request()
      stopped.append(step)

  res = _run(_stage(tmp_path / "a"), guard=guard, on_chunk_end=chunk_end)
  assert res.preempted and res.step == 4 and not res.complete
  assert not (tmp_path / "a" / "summary.json").exists()
  # The same guard, still requested: the next stage of an orchestrator does not even start.
  assert _run(_stage(tmp_path / "b"), guard=guard).preempted
  assert not (tmp_path / "b").exists()
  resumed = _run(_stage(tmp_path / "a"))
  fresh = _run(_stage(tmp_path / "c"))
  assert resumed.complete and float(resumed.state["x"]) == float(fresh.state["x"]) == 36.0


def test_changed_config_is_refused_naming_the_field(tmp_path):
  guard = loop.PreemptionGuard()
  _run(_stage(tmp_path), guard=guard,
       on_chunk_end=lambda s, step, w: guard.request() if step == 2 else None)
  with pytest.raises(ConfigError, match=r"config\.lr: .*0\.1.*0\.2"):
    _run(_stage(tmp_path, lr=0.2))
  res = _run(_stage(tmp_path, lr=0.2, allow_config_change=True))
  assert res.complete
  # More steps extend a finished stage; fewer are a clear error.
  assert _run(_stage(tmp_path, total=10, lr=0.2)).step == 10
  with pytest.raises(ConfigError, match=r"config\.steps: is 4.*step 10"):
    _run(_stage(tmp_path, total=4, lr=0.2))


def test_run_options_are_scoped_and_a_stage_field_overrides_them(tmp_path):
  guard = loop.PreemptionGuard()
  _run(_stage(tmp_path), guard=guard,
       on_chunk_end=lambda s, step, w: guard.request() if step == 2 else None)
  assert stage_lib.current_options() == stage_lib.RunOptions()
  with stage_lib.run_options(stage_lib.RunOptions(allow_config_change=True)):
    with pytest.raises(ConfigError, match=r"config\.lr"):  # the stage's own False wins
      _run(_stage(tmp_path, lr=0.3, allow_config_change=False))
    assert _run(_stage(tmp_path, lr=0.3)).complete  # None: the run options' True
  assert stage_lib.current_options() == stage_lib.RunOptions()  # back after the block
  with pytest.raises(ConfigError, match=r"config\.lr"):
    _run(_stage(tmp_path, lr=0.4))


def test_unreadable_final_checkpoint_of_a_complete_stage_is_an_error(tmp_path):
  _run(_stage(tmp_path))
  (tmp_path / "checkpoints" / "8").rename(tmp_path / "elsewhere")
  with pytest.raises(checkpoint_lib.CheckpointError, match="step 8"):
    _run(_stage(tmp_path))


def test_bit_flipped_checkpoint_falls_back(tmp_path):
  guard = loop.PreemptionGuard()
  _run(_stage(tmp_path, total=8), guard=guard,
       on_chunk_end=lambda s, step, w: guard.request() if step == 4 else None)
  # Flip 4 bytes in the middle of every data file of the newest checkpoint.
  flipped = 0
  for root, _, names in os.walk(tmp_path / "checkpoints" / "4" / "state"):
    for name in names:
      path = os.path.join(root, name)
      data = bytearray(open(path, "rb").read())
      if len(data) >= 16 and "ocdbt" not in name and not name.endswith(("json", "_METADATA")):
        i = len(data) // 2
        data[i:i + 4] = bytes(b ^ 0xFF for b in data[i:i + 4])
        open(path, "wb").write(bytes(data))
        flipped += 1
  assert flipped
  with pytest.warns(UserWarning, match="step 4"):
    res = _run(_stage(tmp_path, total=8))
  assert res.complete and float(res.state["x"]) == 36.0


def test_digest_detects_changed_bytes():
  a = {"w": jnp.arange(4.0), "k": jax.random.key(0)}
  b = {"w": jnp.arange(4.0).at[2].set(9.0), "k": jax.random.key(0)}
  assert checkpoint_lib.state_digest(a) == checkpoint_lib.state_digest(
      {"w": jnp.arange(4.0), "k": jax.random.key(0)})
  assert checkpoint_lib.state_digest(a) != checkpoint_lib.state_digest(b)


def test_torn_metrics_line_is_trimmed_and_bad_lines_skipped(tmp_path):
  with logs.MetricWriter(tmp_path, enabled=True, tensorboard=False) as w:
    w.write_scalars(1, {"loss": 1.0})
    w.write_scalars(2, {"loss": 2.0})
  path = tmp_path / logs.METRICS_FILE
  with open(path, "a") as f:
    f.write('{"step": 3, "lo')  # killed mid-write
  with pytest.warns(UserWarning, match="torn"):
    with logs.MetricWriter(tmp_path, enabled=True, tensorboard=False) as w:
      w.write_scalars(3, {"loss": 3.0})
  assert [r["loss"] for r in logs.read_metrics(tmp_path)] == [1.0, 2.0, 3.0]
  with open(path, "a") as f:
    f.write("garbage\n")
  with pytest.warns(UserWarning, match=r"metrics.jsonl:4"):
    assert len(logs.read_metrics(tmp_path)) == 3


def test_workdir_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
  proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    files.write_json(tmp_path / files.LOCK_FILE,
                     {"host": __import__("socket").gethostname(), "pid": proc.pid,
                      "since_unix": 0})
    with pytest.raises(files.WorkdirBusyError, match=f"pid {proc.pid}"):
      files.WorkdirLock(tmp_path).acquire()
  finally:
    proc.kill()
    proc.wait()
  with files.WorkdirLock(tmp_path):  # the holder is dead: taken over
    assert json.loads((tmp_path / files.LOCK_FILE).read_text())["pid"] == os.getpid()
  assert not (tmp_path / files.LOCK_FILE).exists()


def test_config_diff_flattens_and_ignores():
  a = {"rl": {"lr": 1e-4, "eval_every": 10}, "ks": (1, 2)}
  b = {"rl": {"lr": 1e-4, "eval_every": 20}, "ks": [1, 2]}
  assert stage_lib.config_diff(a, b) == [("rl.eval_every", 10, 20)]
  assert stage_lib.config_diff(a, b, ignore=("rl.eval_every",)) == []
  assert stage_lib.config_diff(a, {"rl": {"lr": 1e-4}, "ks": [1, 2]}) == [
      ("rl.eval_every", 10, "<absent>")]


def test_io_error_names_the_path(tmp_path):
  target = tmp_path / "file"
  target.write_text("x")
  with pytest.raises(files.WorkdirIOError, match=str(target)):
    files.write_json(target / "below" / "summary.json", {})  # a file is not a directory


def test_profile_trace_and_progress_side_times(tmp_path, capsys):
  with stage_lib.run_options(stage_lib.RunOptions(profile_steps=2)):
    res = _run(_stage(tmp_path, progress_every_seconds=0.0),
               final_eval=lambda s, t: {"x": float(s["x"])}, on_chunk_end=lambda s, step, w: None)
  assert res.complete
  traces = [os.path.join(d, n) for d, _, names in os.walk(tmp_path / "profile") for n in names]
  assert any(t.endswith(".xplane.pb") for t in traces), traces
  out = capsys.readouterr().out
  assert "ckpt 00:00:00" in out and "eval 00:00:00" in out, out


def test_config_is_written_to_tensorboard_as_text_and_hparams(tmp_path):
  with logs.MetricWriter(tmp_path, enabled=True) as w:
    w.write_config({"rl": {"lr": 0.1, "ks": [1, 2]}, "name": "x"})
  events = [n for d, _, names in os.walk(tmp_path / "tb") for n in names]
  assert events
  data = b"".join(open(os.path.join(d, n), "rb").read()
                  for d, _, names in os.walk(tmp_path / "tb") for n in names)
  assert b"rl.lr" in data and b"hparams" in data


def test_start_banner_is_printed_once_per_stage_with_devices_and_workdir(tmp_path, capsys):
  from maxrl_jax.train.state import TrainState  # pylint: disable=g-import-not-at-top
  program = stage_lib.Program(
      init_state=lambda: TrainState(params={"w": jnp.zeros((3,), jnp.float32)},
                                    opt_state={"m": jnp.zeros((), jnp.float32)}),
      train_chunk=lambda s, start, n: (s, {"loss": jnp.zeros(n), "grad_norm": jnp.zeros(n)}))
  stage_lib.run_stage(_stage(tmp_path, total=2), program)
  out = capsys.readouterr().out
  banners = [line for line in out.splitlines() if line.startswith("[toy] start:")]
  assert len(banners) == 1, out
  assert f"{len(jax.devices())} device" in banners[0] and str(tmp_path) in banners[0]
  assert "3 parameters" in banners[0], banners[0]


def test_a_field_added_later_resumes_an_older_workdir_only_at_its_old_value(tmp_path):
  """An older workdir has no ``new.field``: it resumes when the run's value is the one it
  implicitly had (``resume_absent_as``), and is refused naming the field otherwise."""
  _run(_stage(tmp_path))  # config {"lr", "steps"}: written before "new.field" existed
  added = {"new.field": 0}
  newer = lambda value: stage_lib.Stage(
      name="toy", workdir=str(tmp_path), config={"lr": 0.1, "steps": 8, "new": {"field": value}},
      total_steps=8, chunk_steps=2, checkpoint_every=2, async_checkpointing=False,
      resume_absent_as=added)
  assert _run(newer(0)).complete
  with pytest.raises(ConfigError, match=r"config\.new\.field: .*'<absent>'.*1"):
    stage_lib.check_resume_config(dataclasses.replace(newer(1), resume_absent_as={}))
  with pytest.raises(ConfigError, match=r"config\.new\.field: .*0.*1"):
    _run(newer(1))
