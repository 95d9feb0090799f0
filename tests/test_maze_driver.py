"""The maze driver on its smoke preset: SFT learns, the sweep runs, resumes and draws its figures.

Runs on the 8 fake CPU devices of tests/conftest.py, so the maze batches are really sharded.
"""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.maze import config as maze_config
from experiments.maze import data as maze_data
from experiments.maze import plots
from experiments.maze import runs
from experiments.maze import steps
from experiments.maze import experiment
from experiments.maze import train
from experiments.maze import validation
from maxrl_jax.models import transformer
from maxrl_jax.train import logs
from maxrl_jax.train import loop
from maxrl_jax.train.errors import ConfigError


def _smoke():
  return maze_config.get_config("smoke")


def test_presets_build_and_validate():
  for preset in maze_config.PRESETS:
    cfg = maze_config.get_config(preset)
    assert cfg.preset == preset
    validation.validate(cfg)
  paper = maze_config.get_config("paper")
  assert (paper.maze.size, paper.model.num_layers, paper.model.hidden_dim) == (17, 4, 256)
  assert (paper.sft.steps, paper.sft.batch_size, paper.sft.learning_rate) == (1500, 32, 5e-4)
  assert (paper.rl.max_grad_norm, paper.rl.weight_decay, paper.rl.loss_aggregation) == (
      1.0, 0.01, "microbatch_token_mean")
  # verl at maze_17.sh's shapes: 256 x 128 rollouts on 4 GPUs, micro-batches of 4,096.
  sweep_run = runs.rl_config(paper, "maxrl", 128)
  assert steps.loss_microbatch_size(sweep_run) == 4096
  assert steps.loss_microbatch_size(runs.rl_config(paper, "maxrl", 4)) == 256
  assert paper.model.dtype == "bfloat16" and steps.loss_scale_spec(paper) is None
  assert paper.maze.num_train == 1_000_000 and _smoke().maze.num_train == 0
  assert _smoke().rl.loss_aggregation == "token_mean"
  assert tuple(paper.sft.betas) == (0.9, 0.95) and paper.sft.max_grad_norm == 1.0
  assert paper.rl.estimator_options.grpo.std == "sample"
  table3 = maze_config.get_config("paper_table3")
  assert (table3.sweep.batch_size, tuple(table3.sweep.num_rollouts), table3.sweep.steps) == (
      32, (128,), 20000)
  # The authors' PKPO: algorithm.pass_k = 4 (maze/maze_17.sh), their re-centred variant.
  assert table3.rl.estimator_options.pkpo.to_dict() == {"k": 4, "variant": "authors"}
  assert steps.loss_microbatch_size(runs.rl_config(table3, "pkpo", 128)) == 1024
  assert tuple(paper.sweep.num_rollouts) == (4, 8, 16, 32, 64, 128)
  assert paper.sweep.batch_size == 256 and paper.sweep.steps >= 9000
  assert paper.eval.num_samples == 2048 and tuple(paper.eval.ks) == (1, 32, 128, 256, 1024, 2048)
  with pytest.raises(ValueError, match="unknown maze preset"):
    maze_config.get_config("nope")


@pytest.mark.parametrize("field,value,match", [
    ("sweep.estimators", ("maxrl", "not_a_method"), "config.rl.estimator"),
    ("sweep.batch_size", 12, "config.sweep.batch_size"),  # 8 devices do not divide 12
    ("sweep.num_rollouts", (0,), "config.rl.num_rollouts"),
    ("maze.size", 8, "config.maze.size"),
    ("model.max_len", 40, "config.model.max_len"),
    ("eval.during_num_samples", 64, "config.eval.during_num_samples"),
    ("model.dtype", "float64", "config.model.dtype"),
    ("maze.num_train", -1, "config.maze.num_train"),
    # verl's micro-batches (smoke: 8 mazes x N in {2, 4}, whole-batch accumulation chunks).
    ("rl.loss_data_parallel", 3, "config.rl.loss_data_parallel"),  # 16 sequences on 3 ranks
    ("rl.loss_microbatch_size", 6, "config.rl.loss_microbatch_size"),  # 6 does not divide 16
])
def test_config_errors_name_the_field(field, value, match):
  cfg = _smoke()
  cfg.rl.loss_aggregation = "microbatch_token_mean"
  cfg.rl.loss_data_parallel = 1
  cfg.rl.loss_microbatch_size = 8
  validation.validate(cfg)  # valid before the change
  section, name = field.split(".")
  cfg[section][name] = value
  with pytest.raises(ConfigError, match=match):
    validation.validate(cfg)


def test_accumulation_chunks_must_hold_or_sit_in_verl_micro_batches():
  cfg = _smoke()
  cfg.sweep.num_rollouts = (3,)
  cfg.rl.loss_aggregation = "microbatch_token_mean"
  cfg.rl.loss_data_parallel, cfg.rl.loss_microbatch_size = 1, 8  # 24 sequences: 3 x 8
  validation.validate(cfg)
  cfg.rl.grad_mazes = 1  # chunks of 3 sequences straddle micro-batches of 8
  with pytest.raises(ConfigError, match="config.rl.grad_mazes"):
    validation.validate(cfg)


@pytest.mark.parametrize("field,value", [
    ("rl.temperature", 0.0), ("eval.temperature", -1.0), ("eval.ks", (0, 8)), ("seed", -1),
    ("rl.batch_size", 64),  # set per run by sweep.batch_size: an override would be ignored
    ("rl.grad_mazes", 3),  # must divide the batch of 8
])
def test_invalid_fields_fail_before_compiling(field, value):
  cfg = _smoke()
  if "." in field:
    section, name = field.split(".")
    cfg[section][name] = value
  else:
    cfg[field] = value
  with pytest.raises(ConfigError, match=f"config.{field}"):
    validation.validate(cfg)


def test_estimator_option_errors_name_the_field():
  cfg = _smoke()
  cfg.sweep.estimators = ("maxrl_truncated",)
  cfg.rl.estimator_options = {"maxrl_truncated": {"truncation": 8}}  # > N = 2, 4
  with pytest.raises(ConfigError, match="config.rl.estimator_options.maxrl_truncated"):
    validation.validate(cfg)


def test_data_is_a_function_of_the_step():
  from experiments.maze import data
  task = data.MazeTask.from_config(_smoke())
  a = task.chunk_grids("rl", 3, 2, 8)
  b = task.chunk_grids("rl", 4, 1, 8)
  assert a.shape == (2, 8, 7, 7)
  assert (a[1] == b[0]).all()
  # Data-scarce epochs visit every maze of the fixed set exactly once.
  idx = [task.rl_indices(s, 4, train_set_size=8) for s in range(4)]
  assert sorted(list(idx[0]) + list(idx[1])) == sorted(list(idx[2]) + list(idx[3]))
  assert len(set(list(idx[0]) + list(idx[1]))) == 8
  test = {g.tobytes() for g in task.test_grids()}
  assert not test & {g.tobytes() for g in task.train_grids(range(200))}
  # A fixed training file (maze.num_train): SFT and RL epochs over stream mazes [0, F).
  cfg = _smoke()
  cfg.maze.num_train = 12
  fixed = data.MazeTask.from_config(cfg)
  for stage_indices in ([fixed.sft_indices(s, 4) for s in range(6)],
                        [fixed.rl_indices(s, 4) for s in range(6)]):
    for epoch in (stage_indices[:3], stage_indices[3:]):
      assert sorted(np.concatenate(epoch)) == list(range(12))
  assert not np.array_equal(fixed.sft_indices(0, 12), fixed.rl_indices(0, 12))
  assert not np.array_equal(fixed.sft_indices(0, 12), fixed.sft_indices(0, 12, sft_seed=1))
  np.testing.assert_array_equal(fixed.chunk_grids("rl", 1, 1, 4)[0],
                                fixed.train_grids(fixed.rl_indices(1, 4)))


def test_sft_raises_the_pass_rate(tmp_path):
  cfg = _smoke()
  workdir = str(tmp_path / "sft")
  summary = train.sft(cfg, workdir).summary
  history = logs.read_metrics(workdir)
  start = history[0]
  assert start["step"] == 0 and "eval/test/pass@1" in start
  assert summary["complete"] and summary["step"] == cfg.sft.steps
  after = summary["eval"]
  assert after["eval/test/pass@1"] > start["eval/test/pass@1"] + 0.05
  assert after["eval/test/pass@1"] > 0.1
  # The teacher-forced probability of the BFS answer rises along the way.
  probs = [r["train/bfs_answer_prob"] for r in history if "train/bfs_answer_prob" in r]
  assert probs[-1] > 5 * probs[0]
  # A second call finds the finished stage and trains nothing.
  again = train.sft(cfg, workdir)
  assert again.state is not None and again.summary == json.load(
      open(os.path.join(workdir, "summary.json")))


def test_smoke_sweep_end_to_end_with_interruption(tmp_path, capsys):
  cfg = _smoke()
  workdir = str(tmp_path / "sweep")
  names = [r.name for r in runs.grid_runs(cfg)]
  assert names == ["maxrl_n2", "maxrl_n4", "rloo_n2", "rloo_n4"]

  # 1st invocation: SFT and the first run only.
  out = experiment.run_sweep(cfg, workdir, max_new_runs=1)
  assert not out["complete"] and list(out["runs"]) == ["maxrl_n2"]
  first_summary = os.path.join(experiment.run_dir(workdir, "maxrl_n2"), "summary.json")
  first_mtime = os.stat(first_summary).st_mtime_ns

  # 2nd invocation: the second run is preempted (as by SIGTERM) after 2 of its 4 steps.
  class StopAtStep2(loop.PreemptionGuard):
    def should_stop(self, step=None):
      if step is not None and step >= 2:
        self.request()
      return self.requested

  loop.install(StopAtStep2())
  try:
    out = experiment.run_sweep(cfg, workdir)
  finally:
    loop.install(None)
  assert not out["complete"] and out["preempted"]
  assert list(out["runs"]) == ["maxrl_n2"]  # stopped at the preempted run, nothing after it
  second = experiment.run_dir(workdir, "maxrl_n4")
  assert train.read_summary(second) is None
  assert os.path.isdir(os.path.join(second, "checkpoints", "2"))
  capsys.readouterr()

  # 3rd invocation: finished runs are skipped, the interrupted one resumes, the rest run.
  out = experiment.run_sweep(cfg, workdir)
  printed = capsys.readouterr().out
  assert "[maze rl maxrl N=2] complete at step 4" in printed
  assert f"resumed from step 2 in {second}" in printed
  assert out["complete"]
  assert os.stat(first_summary).st_mtime_ns == first_mtime
  for name in names:
    s = train.read_summary(experiment.run_dir(workdir, name))
    assert s is not None and s["step"] == cfg.sweep.steps
    assert set(s["eval"]) >= {"eval/test/pass@1", "eval/test/pass@32"}
    assert all(0.0 <= v <= 1.0 for v in s["eval"].values())
    assert s["eval"]["eval/test/best@32"] <= s["eval"]["eval/test/pass@32"] + 1e-12
  resumed = logs.read_metrics(second)
  assert [r["step"] for r in resumed if "loss" in r] == [1, 2, 3, 4]
  # Every run starts from the shared SFT evaluation at step 0.
  sft_eval = json.load(open(os.path.join(workdir, "sft", "summary.json")))["eval"]
  assert resumed[0]["step"] == 0
  assert resumed[0]["eval/test/pass@1"] == pytest.approx(sft_eval["eval/test/pass@1"])

  for fig in (plots.FIG3, plots.FIG17):
    path = os.path.join(workdir, "figures", fig)
    assert os.path.getsize(path) > 10_000, path
  table = open(os.path.join(workdir, plots.TABLE)).read()
  pass_table, best_table = table.split("best@k")
  assert pass_table.count("\n| maxrl |") == 2 and pass_table.count("\n| rloo |") == 2
  assert best_table.count("\n| maxrl |") == 2 and "best@32" in best_table
  assert "pass@32" in table and "SFT (start)" in table
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert summary["complete"] and set(summary["runs"]) == set(names)

  # A 4th invocation has nothing left to train and redraws the figures from the files.
  out = experiment.run_sweep(cfg, workdir)
  assert out["complete"] and "resumed" not in capsys.readouterr().out

  # A workdir written before the fields of maze_config.FIELDS_ADDED existed (their config.json
  # files lack them) is still complete for this release at those fields' old values, and is
  # refused, naming the field, at another value.
  for root, _, fnames in os.walk(workdir):
    if "config.json" in fnames:
      path = os.path.join(root, "config.json")
      saved = json.load(open(path))
      for field in maze_config.FIELDS_ADDED:
        section, name = field.split(".")
        saved[section].pop(name)
      json.dump(saved, open(path, "w"))
  out = experiment.run_sweep(cfg, workdir)
  printed = capsys.readouterr().out
  assert out["complete"] and "resumed" not in printed and "[maze sft] complete" in printed
  cfg.maze.num_train = 64
  with pytest.raises(ConfigError, match=r"config\.maze\.num_train: .*0.*64"):
    experiment.run_sweep(cfg, workdir)


@pytest.mark.slow
def test_table3_methods_run_in_the_maze_driver(tmp_path):
  """PKPO, Differential Smoothing and GRPO + entropy bonus train through the driver's RL step."""
  cfg = _smoke()
  cfg.sweep.estimators = ("grpo+entropy", "dsgrpo", "pkpo")
  cfg.sweep.num_rollouts = (4,)
  cfg.rl.estimator_options.pkpo = {"k": 2}
  cfg.rl.entropy_coef = 0.01
  validation.validate(cfg)
  out = experiment.run_sweep(cfg, str(tmp_path / "t3"))
  assert out["complete"] and set(out["runs"]) == {"grpo+entropy_n4", "dsgrpo_n4", "pkpo_n4"}
  hist = logs.read_metrics(experiment.run_dir(str(tmp_path / "t3"), "grpo+entropy_n4"))
  ent = [r["train/entropy_per_token"] for r in hist if "train/entropy_per_token" in r]
  assert ent and all(e > 0 for e in ent)
  cfg.rl.entropy_coef = 0.0
  with pytest.raises(ConfigError, match="config.rl.entropy_coef"):
    validation.validate(cfg)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_maze_main(workdir, *flags):
  """``python -m experiments.maze.main`` on the smoke preset, one CPU device, from ``/``."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    env.pop(var, None)
  cmd = [sys.executable, "-m", "experiments.maze.main",
         f"--config={REPO}/experiments/maze/config.py:smoke", f"--workdir={workdir}", *flags]
  return subprocess.run(cmd, cwd="/", env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_init_from_hf_through_the_entry_point(tmp_path):
  """``--config.sft.init_from_hf=<dir>``: stage 1 trains 0 steps and keeps the imported
  parameters exactly, RL starts from them; a checkpoint of another architecture is a one-line
  config error (exit 2) before anything is written."""
  pytest.importorskip("safetensors")
  from maxrl_jax.models import hf_qwen2  # pylint: disable=g-import-not-at-top
  cfg = _smoke()
  model_cfg = steps.decoder_config(cfg, maze_data.MazeTask.from_config(cfg))
  # Not steps.init_params: parameters a fresh SFT stage could not have started from.
  exported = transformer.init_params(jax.random.key(7), model_cfg)
  ckpt = str(tmp_path / "hf")
  hf_qwen2.save_hf(ckpt, model_cfg, exported)

  workdir = str(tmp_path / "run")
  # One N (one RL program): both estimators still run.
  res = _run_maze_main(workdir, f"--config.sft.init_from_hf={ckpt}",
                       "--config.sweep.num_rollouts=(2,)")
  assert res.returncode == 0, res.stderr
  out = json.load(open(os.path.join(workdir, "summary.json")))
  assert out["complete"] and out["sft"]["complete"]
  assert out["sft"]["step"] == 0 and out["sft"]["init_from_hf"] == ckpt
  assert "eval/test/pass@1" in out["sft"]["eval"]
  assert set(out["runs"]) == {"maxrl_n2", "rloo_n2"}
  assert all(r["complete"] and r["step"] == cfg.sweep.steps for r in out["runs"].values())
  # The finished stage 1, restored from its checkpoint, holds exactly the exported parameters.
  cfg.sft.init_from_hf = ckpt
  cfg.sweep.num_rollouts = (2,)
  done = train.sft(runs.sft_config(cfg, 0), experiment.sft_dir(workdir))
  assert done.complete and done.step == 0
  got, want = jax.tree.leaves(done.state.params), jax.tree.leaves(exported)
  assert len(got) == len(want)
  for a, b in zip(got, want):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  # A checkpoint whose config.json disagrees with config.model.
  other = str(tmp_path / "hf_other")
  wide = dataclasses.replace(model_cfg, mlp_dim=2 * model_cfg.mlp_dim)
  hf_qwen2.save_hf(other, wide, transformer.init_params(jax.random.key(0), wide))
  cfg.sft.init_from_hf = other
  with pytest.raises(ConfigError, match="config.sft.init_from_hf: .*'intermediate_size'"):
    validation.validate(cfg)
  bad = str(tmp_path / "bad")
  res = _run_maze_main(bad, f"--config.sft.init_from_hf={other}")
  assert res.returncode == 2, res.stderr
  last = res.stderr.strip().splitlines()[-1]
  assert last.startswith("error: config.sft.init_from_hf: ") and "'intermediate_size'" in last
  assert "Traceback" not in res.stderr
  assert not os.path.exists(os.path.join(bad, "config.json"))
  res = _run_maze_main(bad, f"--config.sft.init_from_hf={tmp_path / 'missing'}")
  assert res.returncode == 2 and "error: config.sft.init_from_hf:" in res.stderr, res.stderr
