"""The ImageNet-experiment driver end to end on the smoke preset (generated data)."""

import json
import os

import jax
import numpy as np
import pytest

from experiments.imagenet import comparison
from experiments.imagenet import config as config_lib
from experiments.imagenet import evaluate
from experiments.imagenet import steps
from experiments.imagenet import train
from maxrl_jax.train import loop
from maxrl_jax.train import mesh as mesh_lib


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _smoke(data_dir):
  config = config_lib.get_config("smoke")
  config.data.data_dir = data_dir
  return config


def _one_device():
  return jax.devices()[:1]  # tests/test_imagenet_pipeline.py covers the 8-device mesh.


def test_smoke_comparison_end_to_end_and_rerun_skips(data_dir, tmp_path):
  config = _smoke(data_dir)
  workdir = str(tmp_path / "cmp")
  summary = comparison.run(config, workdir, devices=_one_device())
  assert summary["complete"] and summary["stopped"] == "completed" and summary["generated_data"]
  assert set(summary["runs"]) == {"cross_entropy", "maxrl_n8"}
  for name, run in summary["runs"].items():
    assert run["step"] == 12 and run["complete"]
    assert 0 < run["eval/pass@1"] <= run["eval/pass@128"] <= 1
    assert sorted(int(k) for k in run["pass_at_k"]) == [1, 2, 4, 8]
    for f in ("config.json", "metrics.jsonl", "summary.json", "final_eval.npz"):
      assert os.path.exists(os.path.join(workdir, name, f)), (name, f)
    # Figure 8's checkpoint of every run, at config.analysis.step.
    assert os.path.isdir(os.path.join(workdir, name, "analysis_checkpoint", "8"))
  for fig in ("imagenet_curves.png", "imagenet_pass_at_k.png", "imagenet_gradnorm.png"):
    assert os.path.getsize(os.path.join(workdir, "figures", fig)) > 10_000, fig
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    assert json.load(f)["runs"]["maxrl_n8"]["eval/pass@1"] == summary["runs"]["maxrl_n8"][
        "eval/pass@1"]
  with open(os.path.join(workdir, "figures", "imagenet_gradnorm.json"), encoding="utf-8") as f:
    grad = json.load(f)
  # Each run analysed on its own analysis checkpoint with its own objective.
  assert grad["step"] == 8 and not grad["missing"]
  assert [(p["run"], p["objective"]) for p in grad["panels"]] == [
      ("cross_entropy", "cross_entropy"), ("maxrl_n8", "maxrl")]
  for p in grad["panels"]:
    assert len(p["pass_rate"]) == len(p["norms"]) == config.analysis.num_images
    assert np.all(np.isfinite(p["norms"])) and min(p["norms"]) >= 0
  ce, mx = grad["panels"]
  assert ce["pass_rate"] != mx["pass_rate"]  # two different models
  # Cross-entropy: |grad log p| > 0 for every image.
  assert min(ce["norms"]) > 0
  # Finished runs are skipped: the same numbers come back without training.
  again = comparison.run(config, workdir, devices=_one_device())
  assert again["runs"] == summary["runs"] and again["gradnorm"]["runs"] == ["cross_entropy",
                                                                          "maxrl_n8"]


class _StopAfterChunks(loop.PreemptionGuard):
  """Acts like a SIGTERM arriving after ``chunks`` training chunks."""

  def __init__(self, chunks):
    super().__init__()
    self.calls, self.chunks = 0, chunks

  def should_stop(self, step=None):
    self.calls += 1
    if self.calls > self.chunks:
      self.request()
    return self.requested


def test_preempted_run_resumes_exactly_and_comparison_stops(data_dir, tmp_path):
  config = _smoke(data_dir)
  run_config = steps.run_config(config, config.runs[1])  # maxrl_n8: sampling depends on step.
  mesh = mesh_lib.make_mesh(_one_device())
  straight = train.train_run(run_config, str(tmp_path / "a"), mesh=mesh)
  stopped = train.train_run(run_config, str(tmp_path / "b"), mesh=mesh,
                            guard=_StopAfterChunks(2))
  assert stopped.preempted and stopped.step == 8 and not stopped.complete
  resumed = train.train_run(run_config, str(tmp_path / "b"), mesh=mesh)
  assert resumed.complete and resumed.step == 12
  a = evaluate.read_final_eval(tmp_path / "a")["logp_true"]
  b = evaluate.read_final_eval(tmp_path / "b")["logp_true"]
  np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
  assert resumed.summary["eval"]["eval/pass@1"] == pytest.approx(
      straight.summary["eval"]["eval/pass@1"], rel=1e-5)
  # The orchestrator stops at the first preempted run: no second run, no figures.
  summary = comparison.run(config, str(tmp_path / "cmp"), devices=_one_device(),
                           guard=_StopAfterChunks(1))
  assert not summary["complete"] and summary["stopped"] == "preempted"
  assert list(summary["runs"]) == ["cross_entropy"] and summary["runs"]["cross_entropy"][
      "step"] == 4
  assert "figures" not in summary and not os.path.exists(tmp_path / "cmp" / "summary.json")
  assert not os.path.exists(tmp_path / "cmp" / "maxrl_n8")
