"""The README's "Use the estimators in your own loop" code runs as printed and does what it says."""

import contextlib
import io
import os
import re

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _section_code(heading):
  text = open(README, encoding="utf-8").read()
  section = text.split(heading, 1)[1].split("\n## ", 1)[0]
  return re.findall(r"```python\n(.*?)```", section, re.S)


def test_own_loop_example_trains_maxrl_past_grpo():
  (code,) = _section_code("## Use the estimators in your own loop")
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(code, "README.md", "exec"), {})  # pylint: disable=exec-used
  result = eval(out.getvalue().strip().splitlines()[-1])  # pylint: disable=eval-used
  assert result["maxrl"] > 0.5 > 0.1 > result["grpo"], result


def test_estimator_example():
  (code,) = _section_code("## Estimators")
  exec(compile(code, "README.md", "exec"), {})  # pylint: disable=exec-used
