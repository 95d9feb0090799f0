"""Re-executes the notebooks in place, from a fresh kernel each, and saves their outputs.

  python notebooks/regenerate.py                      # every notebook
  python notebooks/regenerate.py own_rl_loop maze_sweep   # some of them (names without .ipynb)

The committed outputs (figures included) are what a repository page renders; run this after
changing a notebook or the code it calls. Each notebook runs on the CPU with its default,
notebook-sized configuration (see the notebook's first cells) and writes its scratch files to a
temporary directory. The repository root is put on the kernel's PYTHONPATH so that a checkout
works even without `pip install -e .`; the notebooks themselves only import the installed
packages (``maxrl_jax``, ``experiments``).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import nbclient
import nbformat

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
NOTEBOOKS = ("own_rl_loop", "bernoulli", "maze_sweep", "imagenet")


def kernel_env() -> dict[str, str]:
  """Environment for the kernels: CPU, one device, repository importable, inline figures."""
  env = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
  path = os.environ.get("PYTHONPATH", "")
  env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
  return env


def execute(name: str, timeout: int = 600, save: bool = True) -> float:
  """Runs ``notebooks/<name>.ipynb`` top to bottom; writes it back with outputs if ``save``."""
  path = HERE / f"{name}.ipynb"
  nb = nbformat.read(path, as_version=4)
  saved = {k: os.environ.get(k) for k in kernel_env()}
  os.environ.update(kernel_env())
  os.environ.pop("MPLBACKEND", None)  # the kernel draws inline
  try:
    t0 = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(HERE)}}).execute()
    elapsed = time.perf_counter() - t0
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  if save:
    nbformat.write(nb, path)
  return elapsed


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("names", nargs="*", default=list(NOTEBOOKS), help="notebook names")
  parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
  args = parser.parse_args(argv)
  for name in args.names:
    name = name.removesuffix(".ipynb")
    if name not in NOTEBOOKS:
      parser.error(f"unknown notebook {name!r}; choose from {NOTEBOOKS}")
    print(f"{name}: executing ...", flush=True)
    print(f"{name}: done in {execute(name, args.timeout):.1f} s, outputs saved", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
