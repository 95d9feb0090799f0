"""maxrl_jax.train.logs: one metric name in both sinks, wall-clock ``time``, ``steps_per_sec``
and the start banner."""

from __future__ import annotations

import json
import os
import time

import jax
import ml_collections
import numpy as np
import pytest

from maxrl_jax.train import logs


def _jsonl(workdir):
  with open(os.path.join(workdir, logs.METRICS_FILE)) as f:
    return [json.loads(line) for line in f]


def _tensorboard(workdir):
  """``{tag: [(step, wall_time, value)]}`` as TensorBoard's own scalars loader reads them."""
  pytest.importorskip("tensorboard", reason="the TensorBoard reader is in the viz/test extras")
  from tensorboard.backend.event_processing import plugin_event_accumulator
  from tensorboard.util import tensor_util
  acc = plugin_event_accumulator.EventAccumulator(os.path.join(workdir, logs.TB_DIR))
  acc.Reload()
  out = {}
  for tag in acc.Tags()["tensors"]:
    assert acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars", tag
    out[tag] = [(e.step, e.wall_time, float(tensor_util.make_ndarray(e.tensor_proto)))
                for e in acc.Tensors(tag)]
  return out


def test_json_lines_and_tensorboard_use_the_same_names(tmp_path):
  names = ["eval/test/pass@1", "eval/test/best@32", "loss", "tabular/exact/ml/pass@8"]
  with logs.MetricWriter(tmp_path, enabled=True) as writer:
    writer.write_scalars(0, {names[0]: 0.25, names[1]: 0.5})
    writer.write_scalars(3, {"loss": np.float32(1.5), names[3]: 0.125, names[0]: 0.75})
  records = _jsonl(tmp_path)
  json_names = {k for r in records for k in r} - {"step", "time", logs.STEPS_PER_SEC}
  board = _tensorboard(tmp_path)
  assert set(board) - {logs.STEPS_PER_SEC} == json_names == set(names)
  assert all(logs.tensorboard_tag(n) == n for n in names)
  for rec in records:
    for name, value in rec.items():
      if name in ("step", "time"):
        continue
      (match,) = [e for e in board[name] if e[0] == rec["step"]]
      assert match[2] == pytest.approx(value)
      assert match[1] == pytest.approx(rec["time"], abs=1e-3)  # Same wall-clock stamp.


def test_time_is_when_the_values_were_written_not_when_flushed(tmp_path):
  with logs.MetricWriter(tmp_path, enabled=True, tensorboard=False) as writer:
    before = time.time()
    writer.write_scalars(1, {"loss": 1.0})
    after = time.time()
    time.sleep(0.2)
    writer.flush()
    writer.write_scalars(2, {"loss": 2.0})
  first, second = _jsonl(tmp_path)
  assert before <= first["time"] <= after
  assert second["time"] >= after + 0.2


class _Clock:
  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def test_steps_per_sec_per_burst_of_calls(tmp_path, monkeypatch):
  clock = _Clock()
  monkeypatch.setattr(logs.time, "time", clock)
  with logs.MetricWriter(tmp_path, enabled=True, tensorboard=False) as writer:
    writer.write_scalars(0, {"eval/pass@1": 0.0})      # step 0: nothing trained, no anchor
    clock.now = 1010.0
    for s in range(1, 6):                               # first chunk (compiles): no rate
      writer.write_scalars(s, {"loss": s})
      clock.now += 1e-4
    clock.now = 1015.0
    for s in range(6, 11):                              # 5 steps in the 5 s since step 1
      writer.write_scalars(s, {"loss": s})
      clock.now += 1e-4
    clock.now = 1020.0
    writer.write_scalars(10, {"eval/pass@1": 0.5})     # evaluation at a written step: no rate
    clock.now = 1025.0
    writer.write_scalars(11, {"loss": 11.0})            # 5 steps in 10 s (evaluation included)
    clock.now = 1026.0
    writer.write_scalars(12, {"loss": 12.0, logs.STEPS_PER_SEC: 7.0})  # the caller's value wins
  rates = {(r["step"], "loss" in r): r.get(logs.STEPS_PER_SEC) for r in _jsonl(tmp_path)}
  assert rates[(6, True)] == pytest.approx(1.0)
  assert rates[(11, True)] == pytest.approx(0.5)
  assert rates[(12, True)] == 7.0
  assert [k for k, v in rates.items() if v is not None] == [(6, True), (11, True), (12, True)]

  # A resumed run's writer starts again without a rate; consecutive single calls each get one.
  with logs.MetricWriter(tmp_path, enabled=True, tensorboard=False) as writer:
    for s in (13, 15, 16):
      clock.now += 2.0
      writer.write_scalars(s, {"loss": float(s)})
  tail = _jsonl(tmp_path)[-3:]
  assert [r.get(logs.STEPS_PER_SEC) for r in tail] == [None, 1.0, 0.5]


def test_disabled_writer_writes_nothing(tmp_path):
  with logs.MetricWriter(tmp_path / "x", enabled=False) as writer:
    writer.write_scalars(1, {"loss": 1.0})
  assert not (tmp_path / "x").exists()


def test_start_banner_names_devices_processes_preset_workdir_and_parameters():
  config = ml_collections.ConfigDict({"preset": "cpu", "sft": {"steps": 10}})
  params = {"dense": {"kernel": np.zeros((3, 4), np.float32), "bias": np.zeros(4, np.float32)},
            "embed": jax.numpy.zeros((5, 2), jax.numpy.bfloat16)}
  line = logs.start_banner("maze sft", config, params=params, workdir="runs/maze/cpu/sft")
  assert "\n" not in line and line.startswith("[maze sft] start: ")
  n = jax.device_count()
  kind = jax.devices()[0].device_kind
  assert f"{n} device{'s' if n > 1 else ''} ({n} x {kind})" in line
  assert f"in {jax.process_count()} process" in line and f"this: {jax.process_index()}" in line
  assert "preset cpu" in line and "workdir runs/maze/cpu/sft" in line
  assert "26 parameters (84 B)" in line  # 16 float32 + 10 bfloat16
  assert logs.parameter_count(params) == (26, 84)

  bare = logs.start_banner("toy", {"name": "toy run"})
  assert "config toy run" in bare and "parameters" not in bare and "workdir" not in bare
