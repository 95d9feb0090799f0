"""Markdown pieces shared by the reproduction report's sections: tables, figure links, verdicts."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence


def verdict_cell(ok: bool | str | None) -> str:
  """A verdict: yes/no for exact checks; shown/contradicted/inconclusive where the numbers
  carry sampling uncertainty."""
  if ok is None:
    return "n/a"
  if isinstance(ok, str):
    return f"**{ok}**"
  return "**yes**" if ok else "**no**"


def fmt(x: Any, digits: int = 4) -> str:
  if x is None:
    return "-"
  if isinstance(x, str):
    return x
  x = float(x)
  if math.isnan(x):
    return "nan"
  if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
    return f"{x:.2e}"
  return f"{x:.{digits}g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub-flavoured Markdown table; numbers formatted with :func:`fmt`."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
  return "\n".join(lines)


def resolve(path: str, base: str) -> str:
  """``path`` as written by a driver: absolute, relative to the cwd, or relative to ``base``."""
  if os.path.isabs(path) or os.path.exists(path):
    return os.path.abspath(path)
  return os.path.join(base, path)


def figures(paths: Sequence[str], base: str, report_dir: str) -> str:
  """Markdown images for figure paths relative to ``base`` (or absolute)."""
  out = []
  for p in paths:
    full = resolve(p, base)
    rel = os.path.relpath(full, report_dir)
    out.append(f"![{os.path.basename(p)}]({rel})")
  return "\n".join(out)


def claims_table(rows: Sequence[tuple[str, str, str, bool | None]]) -> str:
  return markdown_table(["claim", "paper / theory", "this run", "shown here?"],
                        [(c, p, t, verdict_cell(ok)) for c, p, t, ok in rows])
