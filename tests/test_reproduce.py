"""experiments/reproduce.py end to end on the smoke presets: every section, figure and table."""

import json
import os
import re

from experiments import reproduce


def test_smoke_reproduction_writes_a_complete_report(tmp_path):
  workdir = str(tmp_path / "reproduce")
  path = reproduce.reproduce(workdir, preset="smoke")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  for heading in ("## Toy Bernoulli policy", "## ImageNet as binary-reward classification",
                  "## Maze navigation"):
    assert heading in text, heading
  assert "INCOMPLETE" not in text
  # Every figure the report links exists.
  figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
  assert len(figures) >= 8, figures
  for rel in figures:
    assert os.path.getsize(os.path.join(workdir, rel)) > 5_000, rel
  # Final-number tables and computed verdicts for each experiment.
  assert text.count("### Claims") == 4  # bernoulli, imagenet, maze sweep, maze data-scarce
  verdicts = re.findall(r"\| \*\*(yes|no|shown|contradicted|inconclusive)\*\* \|", text)
  assert len(verdicts) >= 7, verdicts
  assert "| run | objective | N | steps | seeds | pass@1 |" in text
  assert "| estimator | N | seeds | pass@1 |" in text
  assert "## Maze, data-scarce regime" in text
  # The data-scarce regime (smoke_scarce): pass@k on the training mazes and the test mazes.
  scarce = os.path.join(workdir, "maze_scarce")
  for name in ("maxrl_n4", "grpo_n4"):
    with open(os.path.join(scarce, "rl", name, "summary.json"), encoding="utf-8") as f:
      ev = json.load(f)["eval"]
    assert "eval/train/pass@1" in ev and "eval/test/pass@32" in ev
  assert os.path.getsize(os.path.join(scarce, "figures", "maze_scarce_passk_vs_steps.png")) > 10_000
  with open(os.path.join(scarce, "table.md"), encoding="utf-8") as f:
    assert "Training mazes" in f.read()
  timings = reproduce.load_timings(workdir)
  assert set(timings) == set(reproduce.EXPERIMENTS)
  assert all(t["complete"] and t["seconds"] > 0 for t in timings.values())
  # A second invocation skips the finished experiments and rewrites the same report sections.
  reproduce.reproduce(workdir, preset="smoke")
  with open(path, encoding="utf-8") as f:
    again = f.read()
  assert again.split("\n", 3)[3] == text.split("\n", 3)[3]
  assert reproduce.load_timings(workdir) == timings
