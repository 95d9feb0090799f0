"""The host loop, metric writer and progress, and end-to-end runs of the toy problem:
1 vs 8 devices, SIGTERM + resume, NaN learning rate, config errors."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from maxrl_jax.train import checkpoint as checkpoint_lib
from maxrl_jax.train import logs
from maxrl_jax.train import loop
from maxrl_jax.train import mesh as mesh_lib
from examples import toy_trainer as toy
from maxrl_jax.train.errors import ConfigError, NonFiniteError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_chunks_align_to_multiples_of_chunk_steps():
  assert loop.chunk_sizes(0, 10, 4) == [(0, 4), (4, 4), (8, 2)]
  assert loop.chunk_sizes(6, 13, 4) == [(6, 2), (8, 4), (12, 1)]
  assert loop.chunk_sizes(8, 8, 4) == []


class _Recorder:
  """A MetricWriter stand-in that records the order of events."""

  def __init__(self, events):
    self.events = events

  def write_scalars(self, step, scalars):
    self.events.append(("log", step, float(scalars["loss"])))

  def flush(self):
    pass


def _fake_chunk(events, nan_at=None):
  """state = number of updates done; loss of update t is t (NaN at update nan_at)."""

  def train_chunk(state, start, n):
    events.append(("chunk", start, n))
    loss = np.arange(start, start + n, dtype=np.float32)
    if nan_at is not None and start <= nan_at < start + n:
      loss[nan_at - start] = np.nan
    return {"w": state["w"] + n}, {"loss": loss, "grad_norm": np.ones(n, np.float32),
                                   "hist": np.zeros((n, 3))}

  return train_chunk


def test_loop_logs_previous_chunk_while_next_runs_and_checkpoints(tmp_path):
  events, chunk_ends = [], []
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "ckpt", max_to_keep=10, async_save=False)
  hooks = loop.Hooks(on_chunk_end=lambda s, t, w: chunk_ends.append((int(s["w"]), t)),
                     checkpoint_meta=lambda t: {"data_position": 100 + t})
  state, step, reason = loop.run_loop(
      {"w": np.zeros((), np.int32)}, 0, _fake_chunk(events),
      loop.LoopSpec(total_steps=10, chunk_steps=2, checkpoint_every=4), checkpointer=ckpt,
      writer=_Recorder(events), hooks=hooks)
  assert (int(state["w"]), step, reason) == (10, 10, loop.COMPLETED)
  kinds = [e[:2] for e in events]
  # Chunk [0, 2) is logged only after chunk [2, 4) was dispatched; at a checkpoint (step 4) the
  # current chunk is checked and logged before the save.
  assert kinds[:6] == [("chunk", 0), ("chunk", 2), ("log", 1), ("log", 2), ("log", 3), ("log", 4)]
  assert [e[1] for e in events if e[0] == "log"] == list(range(1, 11))
  assert [e[2] for e in events if e[0] == "log"] == list(range(10))  # loss of update t at t+1.
  assert chunk_ends == [(2, 2), (4, 4), (6, 6), (8, 8), (10, 10)]
  assert ckpt.all_steps() == [4, 8, 10]
  restored_step, restored, meta = ckpt.restore_latest({"w": np.zeros((), np.int32)})
  assert (restored_step, int(restored["w"]), meta["data_position"]) == (10, 10, 110)
  ckpt.close()


@pytest.mark.parametrize("nan_at,expected_latest", [(5, 4), (7, 4), (2, None)])
def test_non_finite_stops_naming_the_step_and_is_never_saved(tmp_path, nan_at, expected_latest):
  events = []
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "ckpt", async_save=False)
  with pytest.raises(NonFiniteError, match=f"non-finite loss=nan at step {nan_at + 1};") as e:
    loop.run_loop({"w": np.zeros((), np.int32)}, 0, _fake_chunk(events, nan_at),
                  loop.LoopSpec(total_steps=12, chunk_steps=2, checkpoint_every=4),
                  checkpointer=ckpt, writer=_Recorder(events))
  assert e.value.step == nan_at + 1 and e.value.name == "loss"
  # Update 7 ends the chunk [6, 8) at checkpoint step 8: that state must not be saved.
  assert ckpt.latest_step() == expected_latest
  ckpt.close()


def test_preemption_saves_at_the_next_boundary_and_returns(tmp_path):
  events = []
  guard = loop.PreemptionGuard()
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "ckpt", async_save=False)

  def on_chunk_end(state, step, writer):
    if step == 6:
      os.kill(os.getpid(), signal.SIGTERM)  # Handled by the guard: sets the flag only.

  with guard:
    state, step, reason = loop.run_loop(
        {"w": np.zeros((), np.int32)}, 0, _fake_chunk(events),
        loop.LoopSpec(total_steps=20, chunk_steps=2, checkpoint_every=4), checkpointer=ckpt,
        hooks=loop.Hooks(on_chunk_end=on_chunk_end), guard=guard)
  assert guard.requested
  assert (int(state["w"]), step, reason) == (6, 6, loop.PREEMPTED)
  assert ckpt.all_steps() == [4, 6]
  ckpt.close()


def test_loop_rejects_bad_arguments_before_running():
  with pytest.raises(ConfigError, match="run_loop.chunk_steps"):
    loop.run_loop({}, 0, None, loop.LoopSpec(total_steps=4, chunk_steps=0, checkpoint_every=1))
  with pytest.raises(ConfigError, match="run_loop.checkpoint_every"):
    loop.run_loop({}, 0, None, loop.LoopSpec(total_steps=4, chunk_steps=1, checkpoint_every=0))
  with pytest.raises(ConfigError, match="run_loop.start_step"):
    loop.run_loop({}, -1, None, loop.LoopSpec(total_steps=4, chunk_steps=1, checkpoint_every=1))


def test_metric_writer_jsonl_tensorboard_config(tmp_path):
  config = toy.get_config()
  with logs.MetricWriter(tmp_path, enabled=True) as writer:
    writer.write_config(config)
    writer.write_scalars(1, {"loss": np.float32(0.5), "acc": 1})
    writer.write_scalars(2, {"loss": float("nan")})
  with logs.MetricWriter(tmp_path, enabled=True, tensorboard=False) as writer:
    writer.write_scalars(2, {"loss": 0.25})  # A resumed run logs step 2 again.
  records = logs.read_metrics(tmp_path)
  assert [r["step"] for r in records] == [1, 2]
  assert records[0]["loss"] == 0.5 and records[0]["acc"] == 1.0 and records[1]["loss"] == 0.25
  with open(tmp_path / "metrics.jsonl") as f:
    assert '"loss": "nan"' in f.read()  # Valid JSON even for NaN.
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["batch_size"] == config.batch_size
  assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path / "tb"))

  silent = tmp_path / "other_process"
  with logs.MetricWriter(silent, enabled=False) as writer:
    writer.write_config(config)
    writer.write_scalars(1, {"loss": 1.0})
  assert not silent.exists()


def test_progress_prints_rate_and_eta():
  out = io.StringIO()
  progress = logs.Progress(100, start_step=10, every_seconds=0.0, name="toy", stream=out)
  progress.update(10)
  time.sleep(0.05)
  line = progress.update(20, loss=0.125)
  assert line.startswith("toy step 20/100") and "steps/s" in line and "loss=0.125" in line
  assert "ETA 00:00:" in line or "ETA 00:0" in line
  assert logs.format_duration(3725) == "01:02:05"
  assert not logs.Progress(10, stream=out, enabled=False).update(10)


def _toy_config(**overrides):
  config = toy.get_config()
  config.update(overrides)
  return config


def _params(state):
  return toy.params_to_numpy(state)


def test_one_device_and_eight_devices_train_the_same_parameters(tmp_path):
  config = _toy_config(total_steps=16)
  mesh8 = mesh_lib.make_mesh()
  traces_before = toy.TRACE_COUNTS[mesh8]
  one, _ = toy.train(config, str(tmp_path / "one"), devices=jax.devices()[:1])
  eight, summary = toy.train(config, str(tmp_path / "eight"))
  assert summary["num_devices"] == 8
  for k, v in _params(one).items():
    np.testing.assert_allclose(_params(eight)[k], v, rtol=2e-5, atol=1e-6)
  # Recompiling would be a bug: one program per (mesh, chunk length), shared by all runs.
  toy.train(config, str(tmp_path / "eight_again"))
  assert toy.TRACE_COUNTS[mesh8] - traces_before <= 1


def test_nan_learning_rate_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path):
  workdir = str(tmp_path)
  with pytest.raises(NonFiniteError, match=r"non-finite (loss|grad_norm)=\S+ at step (\d+)") as e:
    toy.train(_toy_config(lr=5.0, total_steps=64), workdir)
  bad_step = e.value.step
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  latest = ckpt.latest_step()
  assert latest is not None and 0 < latest < bad_step
  template = toy.init_state(toy.get_config(), mesh_lib.make_mesh())
  step, state, _ = ckpt.restore_latest(template)
  ckpt.close()
  assert step == latest
  assert all(np.all(np.isfinite(v)) for v in _params(state).values())
  # Every logged step up to the bad one was written, the bad value included.
  assert logs.read_metrics(workdir)[-1]["step"] >= bad_step


@pytest.mark.parametrize("overrides,field", [
    ({"batch_size": 12}, "config.batch_size"),
    ({"chunk_steps": 0}, "config.chunk_steps"),
    ({"lr": float("nan")}, "config.lr"),
])
def test_config_errors_name_the_field_before_compiling(tmp_path, overrides, field):
  workdir = tmp_path / "run"
  before = toy._train_chunk_fn.cache_info()
  with pytest.raises(ConfigError, match=f"^{field}: ") as e:
    toy.train(_toy_config(**overrides), str(workdir))
  assert e.value.field == field
  assert toy._train_chunk_fn.cache_info() == before  # No program was built.
  assert not workdir.exists()  # Nothing written either.


def _wait_for(path, proc, timeout):
  deadline = time.monotonic() + timeout
  while not os.path.exists(path):
    if proc.poll() is not None:
      return False
    if time.monotonic() > deadline:
      return False
    time.sleep(0.05)
  return True


def test_sigterm_then_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
  steps = 48
  workdir = str(tmp_path / "preempted")
  cmd = [sys.executable, "-m", "examples.toy_trainer", f"--workdir={workdir}", f"--steps={steps}",
         "--checkpoint_every=8", "--chunk_steps=4", "--chunk_sleep=0.5"]
  # The environment carries conftest's 8 fake CPU devices.
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  try:
    assert _wait_for(os.path.join(workdir, "checkpoints", "8"), proc, timeout=240), (
        proc.communicate(timeout=30)[0] if proc.poll() is not None else "no checkpoint in time")
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.communicate()
  assert proc.returncode == 0, output
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  assert summary["stopped_reason"] == "preempted", output
  assert 8 <= summary["step"] < steps
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  assert ckpt.latest_step() == summary["step"]  # Saved at the boundary where it stopped.
  ckpt.close()

  resumed, resumed_summary = toy.train(_toy_config(total_steps=steps), workdir)
  assert resumed_summary["start_step"] == summary["step"]
  straight, _ = toy.train(_toy_config(total_steps=steps), str(tmp_path / "straight"))
  for k, v in _params(straight).items():
    np.testing.assert_array_equal(_params(resumed)[k], v)


def test_tensorboard_tags_are_the_metric_names():
  from maxrl_jax.train import logs  # pylint: disable=g-import-not-at-top
  for name in ("tabular/exact/ml/pass@8", "eval/test/pass@1", "a b(c)"):
    assert logs.tensorboard_tag(name) == name  # JSON lines and TensorBoard share one name
