"""The ImageNet-experiment driver end to end on the smoke preset (generated data)."""

import json
import os

import jax
import numpy as np
import pytest

from experiments.imagenet import analysis
from experiments.imagenet import config as config_lib
from experiments.imagenet import evaluate
from experiments.imagenet import experiment
from experiments.imagenet import runs as runs_lib
from experiments.imagenet import train
from maxrl_jax.train import files
from maxrl_jax.train import logs
from maxrl_jax.train import loop
from maxrl_jax.train import mesh as mesh_lib
from maxrl_jax.train import stage as stage_lib
from maxrl_jax.train.errors import NonFiniteError


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
  summary = experiment.run(config, workdir, devices=_one_device())
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
  again = experiment.run(config, workdir, devices=_one_device())
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
  run_config = runs_lib.run_config(config, config.runs[1])  # maxrl_n8: sampling depends on step.
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
  summary = experiment.run(config, str(tmp_path / "cmp"), devices=_one_device(),
                           guard=_StopAfterChunks(1))
  assert not summary["complete"] and summary["stopped"] == "preempted"
  assert list(summary["runs"]) == ["cross_entropy"] and summary["runs"]["cross_entropy"][
      "step"] == 4
  assert "figures" not in summary and not os.path.exists(tmp_path / "cmp" / "summary.json")
  assert not os.path.exists(tmp_path / "cmp" / "maxrl_n8")


# ----------------------------------------------------------------------------- seeds, lr sweep


def _stub_pass_rate(lr: float, seed: int) -> float:
  """The stub trainer's final pass rate: best at lr 0.3, a little higher for larger seeds."""
  return 0.05 + 0.2 * np.exp(-np.log(lr / 0.3) ** 2) + 0.01 * seed


def _stub_train_run(config, workdir, *, mesh, builder=None, memory=None, guard=None):
  """Stands in for ``train.train_run`` (no compilation): writes the files the comparison reads
  (metrics.jsonl, final_eval.npz) with numbers set by the run's learning rate and seed."""
  del mesh, builder, memory, guard
  total = int(config.optim.num_steps)
  p = _stub_pass_rate(float(config.optim.learning_rate), int(config.seed))
  p = p * (1.0 if config.run.objective == "cross_entropy" else 0.5)
  n = 40
  logp = np.log(np.full(n, p) * np.linspace(0.5, 1.5, n))
  correct = np.arange(n) < int(p * n)
  with logs.MetricWriter(workdir, enabled=True, tensorboard=False) as writer:
    for step in (4, 8):
      writer.write_scalars(step, {"eval/pass@1": p * step / total, "eval/top1": step / total,
                                  "train/pass_rate": p})
  evaluate.write_final_eval(workdir, logp, correct)
  final = evaluate.eval_metrics(logp, correct)
  final["pass_at_k"] = evaluate.pass_at_k(logp, config.eval.ks)
  return stage_lib.StageResult(state=None, step=total, reason=loop.COMPLETED,
                               summary={"complete": True, "eval": final})


def test_seeds_and_lr_sweep_summary_table_and_figures(data_dir, tmp_path, monkeypatch):
  """The comparison's bookkeeping of seeds and of a learning-rate sweep (stub trainings)."""
  monkeypatch.setattr(train, "train_run", _stub_train_run)
  config = _smoke(data_dir)
  config.seeds = (0, 1, 2)
  config.sweep_learning_rates = (0.03, 0.3, 1.0)
  config.analysis.runs = ()
  workdir = tmp_path / "sweep"
  summary = experiment.run(config, str(workdir), devices=_one_device())
  assert summary["complete"] and summary["seeds"] == [0, 1, 2]
  assert len(summary["runs"]) == 2 * 3 * 3
  entry = summary["runs"]["maxrl_n8_lr0.3_s2"]
  assert (entry["run"], entry["seed"], entry["learning_rate"]) == ("maxrl_n8_lr0.3", 2, 0.3)
  agg = summary["aggregate"]["cross_entropy_lr0.03"]
  assert agg["seeds"] == [0, 1, 2] and agg["dirs"] == [
      "cross_entropy_lr0.03_s0", "cross_entropy_lr0.03_s1", "cross_entropy_lr0.03_s2"]
  for key in ("eval/pass@1", "eval/top1", "eval/mean_log_p", "eval/pass@128"):
    values = [summary["runs"][d][key] for d in agg["dirs"]]
    assert agg[key]["mean"] == pytest.approx(np.mean(values))
    assert (agg[key]["min"], agg[key]["max"]) == (min(values), max(values))
    assert agg[key]["std"] == pytest.approx(np.std(values, ddof=1))
  values = [summary["runs"][d]["pass_at_k"]["4"] for d in agg["dirs"]]
  assert agg["pass_at_k"]["4"]["mean"] == pytest.approx(np.mean(values))
  sweep = summary["lr_sweep"]
  assert sweep["learning_rates"] == [0.03, 0.3, 1.0] and sweep["metric"] == "eval/pass@1"
  for name in ("cross_entropy", "maxrl_n8"):
    r = sweep["runs"][name]
    assert r["best_learning_rate"] == 0.3 and r["best_run"] == f"{name}_lr0.3"
    assert r["best"] == summary["aggregate"][f"{name}_lr0.3"]["eval/pass@1"]["mean"]
    assert set(r["by_rate"]) == {"0.03", "0.3", "1"}
  table = (workdir / analysis.LR_SWEEP_TABLE).read_text()
  assert "| run | lr 0.03 | lr 0.3 | lr 1 | best lr |" in table and table.count("**") == 4
  for fig in ("imagenet_curves.png", "imagenet_pass_at_k.png", "imagenet_lr_sweep.png"):
    assert os.path.getsize(workdir / "figures" / fig) > 10_000, fig
  assert "gradnorm" not in summary
  # One seed: single-seed numbers, no spread; a diverged rate (nan) is never the best.
  one = analysis.aggregate(config, summary["runs"])
  config.seeds = (1,)
  entries = {t["dir"]: dict(summary["runs"][f"{t['dir']}_s1"]) for t in
             runs_lib.trained_runs(config)}
  entries["cross_entropy_lr0.3"]["eval/pass@1"] = float("nan")
  agg1 = analysis.aggregate(config, entries)
  assert agg1["maxrl_n8_lr1"]["eval/pass@1"] == {
      "mean": entries["maxrl_n8_lr1"]["eval/pass@1"], "min": entries["maxrl_n8_lr1"][
          "eval/pass@1"], "max": entries["maxrl_n8_lr1"]["eval/pass@1"], "std": None}
  assert analysis.lr_sweep_summary(config, agg1)["runs"]["cross_entropy"][
      "best_learning_rate"] == 1.0
  assert one["maxrl_n8_lr1"]["eval/pass@1"]["std"] > 0


@pytest.mark.slow
def test_smoke_lr_sweep_trains_every_rate(data_dir, tmp_path):
  """Appendix D.2's sweep mechanism on the smoke runs: 2 rates x 2 runs, one command."""
  config = _smoke(data_dir)
  config.sweep_learning_rates = (0.03, 0.3)
  config.analysis.runs = ()
  summary = experiment.run(config, str(tmp_path / "sweep"), devices=_one_device())
  assert summary["complete"] and sorted(summary["runs"]) == [
      "cross_entropy_lr0.03", "cross_entropy_lr0.3", "maxrl_n8_lr0.03", "maxrl_n8_lr0.3"]
  for name, entry in summary["runs"].items():
    saved = json.loads((tmp_path / "sweep" / name / "config.json").read_text())
    assert saved["optim"]["learning_rate"] == entry["learning_rate"]
    assert entry["step"] == 12 and 0 < entry["eval/pass@1"] <= 1
  for name in ("cross_entropy", "maxrl_n8"):
    r = summary["lr_sweep"]["runs"][name]
    best = max((0.03, 0.3), key=lambda lr: summary["runs"][f"{name}_lr{lr:g}"]["eval/pass@1"])
    assert r["best_learning_rate"] == best
  assert os.path.exists(tmp_path / "sweep" / "figures" / "imagenet_lr_sweep.png")
  assert os.path.exists(tmp_path / "sweep" / analysis.LR_SWEEP_TABLE)


@pytest.mark.slow
def test_smoke_seeds_seed_zero_unchanged_and_figure8_on_the_first_seed(data_dir, tmp_path):
  config = _smoke(data_dir)
  config.runs = [config.runs[1]]  # maxrl_n8: its label sampling uses the seed's keys.
  config.analysis.runs = ("maxrl_n8",)
  single = experiment.run(config, str(tmp_path / "one"), devices=_one_device())
  assert list(single["runs"]) == ["maxrl_n8"]
  config.seeds = (0, 1)
  summary = experiment.run(config, str(tmp_path / "two"), devices=_one_device())
  assert summary["complete"] and list(summary["runs"]) == ["maxrl_n8_s0", "maxrl_n8_s1"]
  # Seed 0 of a multi-seed comparison trains exactly as the single-seed comparison did.
  a = evaluate.read_final_eval(tmp_path / "one" / "maxrl_n8")["logp_true"]
  b = evaluate.read_final_eval(tmp_path / "two" / "maxrl_n8_s0")["logp_true"]
  c = evaluate.read_final_eval(tmp_path / "two" / "maxrl_n8_s1")["logp_true"]
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert json.loads((tmp_path / "two" / "maxrl_n8_s1" / "config.json").read_text())["seed"] == 1
  agg = summary["aggregate"]["maxrl_n8"]
  assert agg["seeds"] == [0, 1] and agg["eval/pass@1"]["std"] is not None
  with open(tmp_path / "two" / "figures" / "imagenet_gradnorm.json", encoding="utf-8") as f:
    grad = json.load(f)
  assert grad["seed"] == 0 and [(p["run"], p["seed"]) for p in grad["panels"]] == [
      ("maxrl_n8", 0)]
  with open(tmp_path / "one" / "figures" / "imagenet_gradnorm.json", encoding="utf-8") as f:
    assert json.load(f)["panels"][0]["norms"] == grad["panels"][0]["norms"]


def _report_summary(ce, maxrl, seeds):
  """A comparison summary with per-seed pass@1 ``ce[i]`` / ``maxrl[i]`` (seed ``seeds[i]``)."""
  runs, agg = {}, {}
  for name, objective, n, values in (("cross_entropy", "cross_entropy", 1, ce),
                                     ("maxrl_n1024", "maxrl", 1024, maxrl)):
    dirs = [runs_lib.run_dir_name(name, s, len(seeds)) for s in seeds]
    for d, s, v in zip(dirs, seeds, values):
      runs[d] = {"objective": objective, "num_rollouts": n, "step": 10, "complete": True,
                 "run": name, "seed": s, "learning_rate": 0.1, "eval/pass@1": v,
                 "eval/pass@128": 0.9, "eval/top1": 0.5, "eval/mean_log_p": -2.0}
    agg[name] = {"seeds": list(seeds), "dirs": dirs}
  return {"complete": True, "dataset": "pattern_classes", "generated_data": True,
          "model": "resnet8", "runs": runs, "aggregate": agg, "figures": []}


def test_report_match_bar_is_95_percent_of_cross_entropy_from_seed_means(tmp_path):
  from experiments.imagenet import claims  # pylint: disable=g-import-not-at-top
  assert claims.IMAGENET_MATCH_BAR == 0.95
  row = lambda text: next(l for l in text.splitlines() if "matches cross-entropy" in l)
  # One seed: 0.96 of cross-entropy passes, 0.94 does not.
  text = claims.section(_report_summary([0.5], [0.48], (0,)), str(tmp_path), str(tmp_path))
  assert "at least 95% of cross-entropy's" in row(text) and row(text).endswith("**yes** |")
  assert "The match bar is 95% of cross-entropy's final validation pass@1." in text
  text = claims.section(_report_summary([0.5], [0.47], (0,)), str(tmp_path), str(tmp_path))
  assert "(ratio 0.94)" in row(text) and row(text).endswith("**no** |")
  # Seeds: the ratio of the seed means decides; the per-seed ratios are shown.
  summary = _report_summary([0.5, 0.6], [0.40, 0.63], (0, 1))  # 1.03 / 1.1 = 0.936; 0.8, 1.05
  text = claims.section(summary, str(tmp_path), str(tmp_path))
  assert "ratio 0.936; per-seed ratios 0.8 to 1.05" in row(text)
  assert row(text).endswith("**no** |") and "from seed means" in text
  assert "0.515 [0.4, 0.63]" in text  # the table: mean [min, max] over seeds


def test_report_puts_the_papers_numbers_beside_and_checks_grpo(tmp_path):
  from experiments.imagenet import claims  # pylint: disable=g-import-not-at-top
  summary = _report_summary([0.5, 0.7], [0.48, 0.66], (0, 1))
  for name, n, values in (("grpo_n128", 128, [0.01, 0.03]), ("grpo_n1024", 1024, [0.2, 0.4])):
    dirs = [runs_lib.run_dir_name(name, s, 2) for s in (0, 1)]
    for d, s, v in zip(dirs, (0, 1), values):
      summary["runs"][d] = {"objective": "grpo", "num_rollouts": n, "step": 10, "complete": True,
                            "run": name, "seed": s, "learning_rate": 0.1, "eval/pass@1": v,
                            "eval/pass@128": 0.9, "eval/top1": 0.5, "eval/mean_log_p": -2.0}
    summary["aggregate"][name] = {"seeds": [0, 1], "dirs": dirs}
  summary["num_classes"] = 500
  text = claims.section(summary, str(tmp_path), str(tmp_path))
  # Paper beside this run, in percent: seed mean [min, max].
  row = next(l for l in text.splitlines() if l.startswith("| maxrl_n1024 | 59.6 |"))
  assert row == "| maxrl_n1024 | 59.6 | 57 [48, 66] | 93.5 | 90 [90, 90] | ~70 | 50 [50, 50] |"
  assert "| grpo_n1024 | ~48 | 30 [20, 40] |" in text
  assert "the numbers are not" in text  # generated data: labelled as not comparable
  verdict = lambda key: next(l for l in text.splitlines() if key in l).rsplit("|", 2)[1].strip()
  assert verdict("GRPO below MaxRL at the same N=1024") == "**yes**"  # 0.3 < 0.57
  assert verdict("GRPO's validation pass@1 grows with N") == "**yes**"  # [.01, .03] < [.2, .4]
  assert verdict("GRPO with the most rollouts (N=1024) learns") == "**yes**"  # 0.3 > 3/500
  # Overlapping seed ranges do not show growth; a GRPO run at 1/C has not learned.
  for d, v in (("grpo_n1024_s0", 0.002), ("grpo_n1024_s1", 0.0021)):
    summary["runs"][d]["eval/pass@1"] = v
  summary["runs"]["grpo_n128_s1"]["eval/pass@1"] = 0.0015
  text2 = claims.section(summary, str(tmp_path), str(tmp_path))
  verdict2 = lambda key: next(l for l in text2.splitlines() if key in l).rsplit("|", 2)[1].strip()
  # [.0015, .01] vs [.002, .0021], and neither left 3/C: inconclusive.
  assert verdict2("GRPO's validation pass@1 grows with N") == "**inconclusive**"
  assert "disjoint seed ranges required); no GRPO run left 3/C" in text2
  assert verdict2("GRPO with the most rollouts (N=1024) learns") == "**no**"
  for d, v in (("grpo_n1024_s0", 0.2), ("grpo_n1024_s1", 0.4), ("grpo_n128_s1", 0.03)):
    summary["runs"][d]["eval/pass@1"] = v
  # The stand-alone writer refuses an incomplete comparison and writes a complete one, headed
  # by its command; main() publishes it with its figures beside the output name.
  files.write_json(tmp_path / "w" / "summary.json", dict(summary, complete=False))
  with pytest.raises(ValueError, match="no complete comparison summary"):
    claims.write_markdown(str(tmp_path / "w"), str(tmp_path / "out.md"))
  summary.update(preset="cpu_long", figures=["figures/imagenet_curves.png"])
  files.write_json(tmp_path / "w" / "summary.json", summary)
  files.write_bytes(tmp_path / "w" / "figures" / "imagenet_curves.png", b"png")
  out = claims.main([str(tmp_path / "w"), str(tmp_path / "docs" / "long.md")])
  text = open(out).read()
  assert text.startswith("# The ImageNet-style comparison `cpu_long`")
  assert "--config=experiments/imagenet/config.py:cpu_long --workdir=" in text
  assert "![imagenet_curves.png](figures/long_imagenet_curves.png)" in text
  assert (tmp_path / "docs" / "figures" / "long_imagenet_curves.png").read_bytes() == b"png"
  assert "| grpo_n1024 | ~48 | 30 [20, 40] |" in text


def test_lr_sweep_records_a_diverged_training_and_goes_on(data_dir, tmp_path, monkeypatch):
  """A sweep's non-finite training is recorded (diverged.json), never the best rate, not
  retrained by a rerun with the same config; outside a sweep it stops the experiment."""
  calls = []

  def stub(config, workdir, **kwargs):
    lr, seed = float(config.optim.learning_rate), int(config.seed)
    calls.append((config.run.name, lr, seed))
    if lr == 1.0 and (config.run.objective == "cross_entropy" or seed == 1):
      with logs.MetricWriter(workdir, enabled=True, tensorboard=False) as writer:
        writer.write_scalars(4, {"loss": 3.0, "train/pass_rate": 0.05})  # before it diverged
      raise NonFiniteError(6, "loss", float("nan"))
    return _stub_train_run(config, workdir, **kwargs)

  monkeypatch.setattr(train, "train_run", stub)
  config = _smoke(data_dir)
  config.seeds = (0, 1)
  config.sweep_learning_rates = (0.03, 0.3, 1.0)
  config.analysis.runs = ()
  workdir = tmp_path / "sweep"
  summary = experiment.run(config, str(workdir), devices=_one_device())
  assert summary["complete"] and len(calls) == 2 * 3 * 2
  assert summary["runs"]["cross_entropy_lr1_s0"]["diverged"] == {
      "step": 6, "metric": "loss", "value": "nan"}
  assert "eval/pass@1" not in summary["runs"]["cross_entropy_lr1_s0"]
  assert "diverged" not in summary["runs"]["maxrl_n8_lr1_s0"]
  record = json.loads((workdir / "maxrl_n8_lr1_s1" / experiment.DIVERGED_FILE).read_text())
  assert record["step"] == 6 and record["config"]["optim"]["learning_rate"] == 1.0
  agg = summary["aggregate"]
  assert agg["cross_entropy_lr1"]["diverged_seeds"] == [0, 1]
  assert agg["maxrl_n8_lr1"]["diverged_seeds"] == [1]
  assert np.isnan(agg["maxrl_n8_lr1"]["eval/pass@1"]["mean"])
  sweep = summary["lr_sweep"]["runs"]
  assert sweep["cross_entropy"]["diverged"] == ["1"] and sweep["maxrl_n8"]["diverged"] == ["1"]
  assert sweep["cross_entropy"]["best_learning_rate"] == 0.3  # 1.0 is never a candidate
  assert sweep["maxrl_n8"]["best_learning_rate"] == 0.3
  table = (workdir / analysis.LR_SWEEP_TABLE).read_text()
  assert table.count("| diverged |") == 2  # lr 1 of both runs: no mean over the seeds
  # A rerun with the same config does not train the diverged runs again.
  calls.clear()
  assert experiment.run(config, str(workdir), devices=_one_device())["complete"]
  diverged = {"cross_entropy_lr1_s0", "cross_entropy_lr1_s1", "maxrl_n8_lr1_s1"}
  assert len(calls) == 12 - 3 and not diverged & {c[0] for c in calls}
  # A changed run config trains them again.
  config.optim.momentum = 0.8
  calls.clear()
  experiment.run(config, str(workdir), devices=_one_device())
  assert diverged <= {c[0] for c in calls}
  # Outside a sweep a non-finite training stops the experiment.
  config.sweep_learning_rates = ()
  config.runs = [dict(name="cross_entropy", objective="cross_entropy", num_rollouts=1,
                      learning_rate=1.0)]
  with pytest.raises(NonFiniteError, match="non-finite loss=nan at step 6"):
    experiment.run(config, str(tmp_path / "plain"), devices=_one_device())


@pytest.mark.slow
def test_real_diverging_rate_is_recorded_by_the_sweep(data_dir, tmp_path):
  """Through the real training: a learning rate of 1e9 turns the loss non-finite."""
  config = _smoke(data_dir)
  config.sweep_learning_rates = (0.1, 1e9)
  config.runs = [dict(name="maxrl_n8", objective="maxrl", num_rollouts=8)]
  config.analysis.runs = ()
  summary = experiment.run(config, str(tmp_path / "w"), devices=_one_device())
  assert summary["complete"] and "diverged" not in summary["runs"]["maxrl_n8_lr0.1"]
  assert summary["runs"]["maxrl_n8_lr1e+09"]["diverged"]["metric"] in ("loss", "grad_norm")
  assert summary["lr_sweep"]["runs"]["maxrl_n8"]["best_learning_rate"] == 0.1
  assert "| diverged |" in (tmp_path / "w" / analysis.LR_SWEEP_TABLE).read_text()
