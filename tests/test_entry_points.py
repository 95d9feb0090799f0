"""The drivers' real entry points (``python -m experiments.<driver>.main``): SIGTERM then rerun,
SIGKILL then rerun, changed configs, a busy workdir, and one-line config errors."""

import ast
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_VOLATILE = ("wall", "time", "_s", "figures", "resumed", "table")


def _env():
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = REPO
  for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    env.pop(var, None)
  return env


def _cmd(module, preset, workdir, *extra):
  return [sys.executable, "-m", module, f"--config={REPO}/experiments/{module.split('.')[1]}"
          f"/config.py:{preset}", f"--workdir={workdir}", *extra]


def run(module, preset, workdir, *extra, timeout=600):
  # From a directory other than the repository: nothing may depend on the working directory.
  return subprocess.run(_cmd(module, preset, workdir, *extra), cwd="/", env=_env(),
                        capture_output=True, text=True, timeout=timeout)


def interrupt(module, preset, workdir, when, *extra, sig=signal.SIGTERM, timeout=600):
  """Starts the driver, sends ``sig`` once ``when()`` holds; returns (returncode, output, wait s)."""
  proc = subprocess.Popen(_cmd(module, preset, workdir, *extra), cwd="/", env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    t0 = time.time()
    while not when():
      assert proc.poll() is None, proc.communicate()[0]
      assert time.time() - t0 < timeout, "the run never reached the interruption point"
      time.sleep(0.2)
    proc.send_signal(sig)
    t1 = time.time()
    out = proc.communicate(timeout=timeout)[0]
    return proc.returncode, out, time.time() - t1
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.communicate()


def metrics_lines(path):
  try:
    with open(path) as f:
      return sum(1 for line in f if line.endswith("\n"))
  except FileNotFoundError:
    return 0


def stable(obj):
  """``obj`` without wall times, timestamps and paths that legitimately differ between runs."""
  if isinstance(obj, dict):
    return {k: stable(v) for k, v in obj.items() if not any(t in k for t in _VOLATILE)}
  if isinstance(obj, list):
    return [stable(v) for v in obj]
  return obj


def summary(workdir):
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


# ----------------------------------------------------------------------------- bernoulli

BERNOULLI = "experiments.bernoulli.main"
# Ten chunks, so that a signal after the first logged chunk lands in the middle of the run.
BERNOULLI_FLAGS = ("--config.chunk_steps=2", "--config.checkpoint_every=4")


@pytest.fixture(scope="module")
def bernoulli_reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("bernoulli_ref"))
  res = run(BERNOULLI, "smoke", workdir, *BERNOULLI_FLAGS)
  assert res.returncode == 0, res.stderr
  return workdir


@pytest.mark.parametrize("sig", [signal.SIGTERM,
                                 pytest.param(signal.SIGKILL, marks=pytest.mark.slow)])
def test_bernoulli_interrupted_then_rerun_equals_uninterrupted(tmp_path, bernoulli_reference,
                                                               sig):
  workdir = str(tmp_path / "run")
  metrics = os.path.join(workdir, "metrics.jsonl")
  code, out, waited = interrupt(BERNOULLI, "smoke", workdir, lambda: metrics_lines(metrics) >= 1,
                                *BERNOULLI_FLAGS, sig=sig)
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  if sig == signal.SIGTERM:
    assert code == 0, out
    assert waited < 60
    assert "preempted at step" in out, out
  res = run(BERNOULLI, "smoke", workdir, *BERNOULLI_FLAGS)
  assert res.returncode == 0, res.stderr
  assert stable(summary(workdir)) == stable(summary(bernoulli_reference))
  ref = np.load(os.path.join(bernoulli_reference, "curves.npz"))
  got = np.load(os.path.join(workdir, "curves.npz"))
  for key in ref.files:
    np.testing.assert_array_equal(got[key], ref[key], err_msg=key)


def test_bernoulli_changed_config_and_bad_fields_are_one_line_errors(tmp_path,
                                                                     bernoulli_reference):
  res = run(BERNOULLI, "smoke", bernoulli_reference, *BERNOULLI_FLAGS, "--config.seed=3")
  assert res.returncode == 2
  assert res.stderr.strip().splitlines()[-1].startswith("error: config.seed:"), res.stderr
  assert "Traceback" not in res.stderr
  res = run(BERNOULLI, "smoke", str(tmp_path / "x"), "--config.seed=-1")
  assert res.returncode == 2 and "config.seed" in res.stderr and "Traceback" not in res.stderr
  res = run(BERNOULLI, "smoke", str(tmp_path / "x"), "extra_positional")
  assert res.returncode == 2 and "unexpected arguments" in res.stderr
  # A complete workdir and the same config: returns at once, nothing retrained.
  res = run(BERNOULLI, "smoke", bernoulli_reference, *BERNOULLI_FLAGS)
  assert res.returncode == 0, res.stderr


def test_bernoulli_busy_workdir_is_refused(tmp_path):
  workdir = tmp_path / "busy"
  workdir.mkdir()
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
  try:
    (workdir / ".lock").write_text(json.dumps(
        {"host": os.uname().nodename, "pid": holder.pid, "since_unix": time.time()}))
    res = run(BERNOULLI, "smoke", str(workdir))
    assert res.returncode == 1, res.stderr
    assert f"pid {holder.pid}" in res.stderr and "Traceback" not in res.stderr
  finally:
    holder.kill()
    holder.wait()


# ----------------------------------------------------------------------------- maze

MAZE = "experiments.maze.main"


def _has_loss_line(path):
  try:
    with open(path) as f:
      return any('"loss"' in line for line in f if line.endswith("\n"))
  except FileNotFoundError:
    return False


@pytest.fixture(scope="module")
def maze_reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("maze_ref"))
  res = run(MAZE, "smoke", workdir)
  assert res.returncode == 0, res.stderr
  return workdir


def _maze_stable(workdir):
  out = stable(summary(workdir))
  out.pop("sft", None)
  return out, stable(summary(os.path.join(workdir, "sft")))


@pytest.mark.slow
@pytest.mark.parametrize("where", ["sft", "rl"])
def test_maze_sigterm_then_rerun_equals_uninterrupted(tmp_path, maze_reference, where):
  workdir = str(tmp_path / "run")
  target = (os.path.join(workdir, "sft", "metrics.jsonl") if where == "sft"
            else os.path.join(workdir, "rl", "maxrl_n2", "metrics.jsonl"))
  code, out, waited = interrupt(MAZE, "smoke", workdir, lambda: _has_loss_line(target))
  assert code == 0, out
  assert waited < 120 and "preempted" in out, out
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  if where == "sft":  # RL never starts from an incomplete SFT stage.
    assert not os.path.exists(os.path.join(workdir, "rl"))
  res = run(MAZE, "smoke", workdir)
  assert res.returncode == 0, res.stderr
  assert _maze_stable(workdir) == _maze_stable(maze_reference)
  table = lambda d: open(os.path.join(d, "table.md")).read()
  assert table(workdir) == table(maze_reference)


@pytest.mark.slow
def test_maze_changed_config_and_invalid_fields(tmp_path, maze_reference):
  res = run(MAZE, "smoke", maze_reference, "--config.sft.learning_rate=0.5")
  assert res.returncode == 2 and "error: config.sft.learning_rate:" in res.stderr, res.stderr
  for flag, field in (("--config.rl.temperature=0", "config.rl.temperature"),
                      ("--config.rl.batch_size=16", "config.rl.batch_size")):
    res = run(MAZE, "smoke", str(tmp_path / "x"), flag)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(f"error: {field}:"), res.stderr
    assert "Traceback" not in res.stderr


# ----------------------------------------------------------------------------- imagenet, reproduce

IMAGENET = "experiments.imagenet.main"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_imagenet_interrupted_then_rerun_equals_uninterrupted(tmp_path, sig):
  reference = str(tmp_path / "reference")
  res = run(IMAGENET, "smoke", reference)
  assert res.returncode == 0, res.stderr
  workdir = str(tmp_path / "run")
  first = os.path.join(workdir, "cross_entropy", "metrics.jsonl")
  code, out, _ = interrupt(IMAGENET, "smoke", workdir, lambda: _has_loss_line(first), sig=sig)
  if sig == signal.SIGTERM:
    assert code == 0 and "preempted" in out, out
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  res = run(IMAGENET, "smoke", workdir)
  assert res.returncode == 0, res.stderr
  assert stable(summary(workdir)["runs"]) == stable(summary(reference)["runs"])


@pytest.mark.slow
def test_reproduce_sigterm_in_maze_sft_then_rerun_equals_uninterrupted(tmp_path):
  """SIGTERM during maze SFT through ``experiments.reproduce``: exit 0, no report from partial
  results, and the rerun's report equals an uninterrupted one's (bar wall times)."""
  def cmd(workdir):
    return [sys.executable, "-m", "experiments.reproduce", "--preset=smoke",
            f"--workdir={workdir}"]

  reference = str(tmp_path / "reference")
  res = subprocess.run(cmd(reference), cwd="/", env=_env(), capture_output=True, text=True,
                       timeout=1800)
  assert res.returncode == 0, res.stderr
  workdir = str(tmp_path / "run")
  sft = os.path.join(workdir, "maze", "sft", "metrics.jsonl")
  proc = subprocess.Popen(cmd(workdir), cwd="/", env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  try:
    t0 = time.time()
    while not _has_loss_line(sft):
      assert proc.poll() is None, proc.communicate()[0]
      assert time.time() - t0 < 1800
      time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=600)[0]
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.communicate()
  assert proc.returncode == 0, out
  assert not os.path.exists(os.path.join(workdir, "report.md"))
  assert not os.path.exists(os.path.join(workdir, "maze", "rl"))
  res = subprocess.run(cmd(workdir), cwd="/", env=_env(), capture_output=True, text=True,
                       timeout=1800)
  assert res.returncode == 0, res.stderr

  def body(path):
    text = open(os.path.join(path, "report.md")).read()
    # Drop the header (date) and the wall-time table; keep every section and verdict.
    return text.split("\n## ", 1)[1]

  assert body(workdir) == body(reference)


# ----------------------------------------------------------------------------- --help

# Driver -> (console script, module, text only that driver's --help shows, config file or None).
_HELP = {
    "bernoulli": ("maxrl-bernoulli", "experiments.bernoulli.main",
                  "runs/bernoulli/<preset>", "experiments/bernoulli/config.py"),
    "imagenet": ("maxrl-imagenet", "experiments.imagenet.main",
                 "runs/imagenet/<preset>", "experiments/imagenet/config.py"),
    "maze": ("maxrl-maze", "experiments.maze.main", "runs/maze/<preset>",
             "experiments/maze/config.py"),
    "reproduce": ("maxrl-reproduce", "experiments.reproduce", "--[no]report_only", None),
}


def _docstring_first_line(module):
  path = os.path.join(REPO, *module.split(".")) + ".py"
  with open(path, encoding="utf-8") as f:
    return ast.get_docstring(ast.parse(f.read())).splitlines()[0]


def _presets(config_file):
  """The presets ``--help`` must list, each checked to be accepted by ``get_config``."""
  from maxrl_jax.train import entry
  path = os.path.join(REPO, config_file)
  names = entry.config_presets(path)
  assert {"paper", "cpu", "smoke"} <= set(names), (config_file, names)
  spec = importlib.util.spec_from_file_location("_help_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for name in names:
    assert module.get_config(name) is not None, name
  return names


def _check_help(res, driver):
  _, module, specific, config_file = _HELP[driver]
  assert res.returncode == 0, res.stdout + res.stderr
  out = res.stdout
  assert _docstring_first_line(module) in out, out
  assert specific in out, out  # a flag of this driver
  for shared in ("--[no]allow_config_change", "--profile_steps"):  # entry.py's flags
    assert shared in out, out
  if config_file is not None:
    assert "--config" in out
    assert f"presets of --config ({os.path.join(REPO, config_file)}):" in out, out
    listed = out.split("presets of --config", 1)[1]
    for name in _presets(config_file):
      assert re.search(rf"[ ,]{name}(,|\n)", listed), (name, listed)
  else:  # experiments.reproduce: --preset picks one preset of every experiment's config.
    assert "presets (--preset=<name>): smoke, cpu, paper." in out, out
    assert "maze_scarce (<name>_scarce):" in out, out
    for config in ("bernoulli", "imagenet", "maze"):
      assert os.path.join(REPO, "experiments", config, "config.py") in out
      for name in _presets(f"experiments/{config}/config.py"):
        assert name in out, name


@pytest.mark.parametrize("driver", sorted(_HELP))
def test_console_script_help_explains_itself(driver):
  script = os.path.join(os.path.dirname(sys.executable), _HELP[driver][0])
  if not os.path.exists(script):
    pytest.skip(f"{_HELP[driver][0]} is not installed next to {sys.executable} (pip install -e .)")
  env = _env()
  env.pop("PYTHONPATH")  # the installed package, from any directory
  res = subprocess.run([script, "--help"], cwd="/", env=env, capture_output=True, text=True,
                       timeout=300)
  _check_help(res, driver)


@pytest.mark.parametrize("driver", sorted(_HELP))
def test_python_m_help_explains_itself(driver):
  res = subprocess.run([sys.executable, "-m", _HELP[driver][1], "-?"], cwd="/", env=_env(),
                       capture_output=True, text=True, timeout=300)
  _check_help(res, driver)


def test_helpfull_adds_every_module_and_still_the_presets():
  res = subprocess.run([sys.executable, "-m", "experiments.maze.main", "--helpfull"], cwd="/",
                       env=_env(), capture_output=True, text=True, timeout=300)
  _check_help(res, "maze")
  assert "absl.logging:" in res.stdout and "--verbosity" in res.stdout


def test_config_presets_read_the_source_without_running_it(tmp_path):
  from maxrl_jax.train import entry
  listed = tmp_path / "listed.py"
  listed.write_text("raise RuntimeError('never executed')\n"
                    "PRESETS = {'b': None, 'a': None}\n")
  assert entry.config_presets(listed) == ("b", "a")
  compared = tmp_path / "compared.py"
  compared.write_text("def get_config(p='x'):\n"
                      "  if p not in ('x', 'y'):\n    raise ValueError(p)\n"
                      "  if p == 'y' or p == 'z_scarce':\n    pass\n")
  assert entry.config_presets(compared) == ("x", "y", "z_scarce")
  none = tmp_path / "none.py"
  none.write_text("def get_config():\n  return {}\n")
  assert entry.config_presets(none) == ()
