"""``benchmarks/accelerator_check.py --size=tiny``: the GPU check's code paths, on CPU, without
TensorFlow; one JSON file with every part and a falling SFT loss."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_tiny_accelerator_check_writes_its_json(tmp_path):
  out = tmp_path / "check.json"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  env.pop("XLA_FLAGS", None)  # one CPU device, as on the accelerator machine
  res = subprocess.run(
      [sys.executable, os.path.join(REPO, "benchmarks", "accelerator_check.py"), "--size=tiny",
       f"--out={out}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert res.returncode == 0, res.stderr[-3000:]
  d = json.loads(out.read_text())
  for key in ("jax", "device_kind", "backend", "peak_memory_gib", "maze_sft",
              "maze_rl_sweep_shared", "maze_rl_ratio_repeated",
              "maze_rl_repeated_over_shared_seconds", "imagenet", "wall_seconds"):
    assert key in d, key
  assert d["complete"] is True
  assert d["tensorflow_imported"] is False
  sft = d["maze_sft"]
  assert sft["loss_fell"] and sft["loss_last"] < sft["loss_first"]
  assert len(sft["loss_curve"]) == sft["steps"]
  for name in ("maze_rl_sweep_shared", "maze_rl_ratio_repeated"):
    assert d[name]["seconds_per_step"] > 0 and d[name]["compile_seconds"] > 0
  assert d["maze_rl_ratio_repeated"]["prompt"] == "repeated"
  im = d["imagenet"]
  assert im["maxrl_ms_per_step"] > 0 and im["cross_entropy_ms_per_step"] > 0
  assert im["synthetic_images"] is True
