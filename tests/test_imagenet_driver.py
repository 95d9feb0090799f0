"""The ImageNet-experiment driver end to end on the smoke preset (generated data)."""

import json
import os

import jax
import numpy as np
import pytest

from experiments.imagenet import config as config_lib
from experiments.imagenet import train
from maxrl_jax.train import loop


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _smoke(data_dir):
  config = config_lib.get_config("smoke")
  config.data.data_dir = data_dir
  return config


def test_smoke_comparison_end_to_end_and_rerun_skips(data_dir, tmp_path):
  config = _smoke(data_dir)
  config.gradnorm.objectives = ("cross_entropy", "maxrl")
  workdir = str(tmp_path / "cmp")
  # One device here (tests/test_imagenet_pipeline.py covers the 8-device mesh).
  summary = train.run(config, workdir, devices=jax.devices()[:1])
  assert summary["complete"] and summary["generated_data"]
  assert set(summary["runs"]) == {"cross_entropy", "maxrl_n8"}
  for name, run in summary["runs"].items():
    assert run["step"] == 12
    assert 0 < run["eval/pass@1"] <= run["eval/pass@128"] <= 1
    assert sorted(int(k) for k in run["pass_at_k"]) == [1, 2, 4, 8]
    for f in ("config.json", "metrics.jsonl", "summary.json", "final_eval.npz"):
      assert os.path.exists(os.path.join(workdir, name, f)), (name, f)
  for fig in ("imagenet_curves.png", "imagenet_pass_at_k.png", "imagenet_gradnorm.png"):
    path = os.path.join(workdir, "figures", fig)
    assert os.path.getsize(path) > 10_000, fig
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    assert json.load(f)["runs"]["maxrl_n8"]["eval/pass@1"] == summary["runs"]["maxrl_n8"][
        "eval/pass@1"]
  with open(os.path.join(workdir, "figures", "imagenet_gradnorm.json"), encoding="utf-8") as f:
    grad = json.load(f)
  assert grad["step"] == 12 and len(grad["pass_rate"]) == config.gradnorm.num_images
  assert all(np.all(np.isfinite(v)) and min(v) >= 0 for v in grad["norms"].values())
  # Finished runs are skipped: the same numbers come back without training.
  again = train.run(config, workdir, devices=jax.devices()[:1])
  assert again["runs"] == summary["runs"]


class _StopAfterChunks(loop.PreemptionGuard):
  """Acts like a SIGTERM arriving after ``chunks`` training chunks."""

  def __init__(self, chunks):
    super().__init__()
    self.calls, self.chunks = 0, chunks

  def should_stop(self):
    self.calls += 1
    return self.calls > self.chunks


def test_preempted_run_resumes_exactly(data_dir, tmp_path):
  config = _smoke(data_dir)
  run_config = train.run_config(config, config.runs[1])  # maxrl_n8: sampling depends on step.
  mesh = train.make_mesh(jax.devices()[:1])
  straight = train.train_run(run_config, str(tmp_path / "a"), mesh=mesh, verbose=False)
  stopped = train.train_run(run_config, str(tmp_path / "b"), mesh=mesh,
                            guard=_StopAfterChunks(2), verbose=False)
  assert stopped["stopped_reason"] == "preempted" and stopped["step"] == 8
  assert "final" not in stopped
  resumed = train.train_run(run_config, str(tmp_path / "b"), mesh=mesh, verbose=False)
  assert resumed["stopped_reason"] == "completed" and resumed["step"] == 12
  a = np.load(tmp_path / "a" / train.FINAL_EVAL_FILE)["logp_true"]
  b = np.load(tmp_path / "b" / train.FINAL_EVAL_FILE)["logp_true"]
  np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
  assert resumed["final"]["eval/pass@1"] == pytest.approx(straight["final"]["eval/pass@1"],
                                                          rel=1e-5)
