"""Markdown pieces shared by the reproduction report's sections: tables, figure links, verdicts."""

from __future__ import annotations

import math
import os
import re
from typing import Any, Sequence

from maxrl_jax.train import files


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


def publish(report_path: str, dest: str, name: str, prefix: str = "") -> str:
  """Copies ``report_path`` and every figure it links into ``dest`` (``dest/figures/``).

  The copy is ``dest/<name>``, with its image links rewritten to the copied figures; used to put
  the latest report beside the README (``--publish=docs``). ``prefix`` starts every copied
  figure's name (to keep two reports' figures of the same name apart in one ``dest``).
  """
  src_dir = files.as_path(report_path).parent
  text = files.as_path(report_path).read_text()

  used: dict[str, str] = {}

  def _copy(match):
    alt, rel = match.group(1), match.group(2)
    name = os.path.basename(rel)
    if used.get(name, rel) != rel:  # the same file name from another experiment's figures
      name = f"{rel.split('/')[0]}_{name}"
    used[name] = rel
    target = os.path.join("figures", prefix + name)
    files.write_bytes(files.as_path(dest) / target, (src_dir / rel).read_bytes())
    return f"![{alt}]({target})"

  text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", _copy, text)
  out = os.path.join(dest, name)
  files.write_text(out, text)
  return out
