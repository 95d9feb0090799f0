"""Setuptools shim: ``pyproject.toml`` is the single source of the package's metadata.

``pip install .`` and ``pip install -e .`` build in an isolated environment with the setuptools
that ``pyproject.toml`` requires. Running this file directly (``python setup.py --version``) uses
the setuptools of the current environment, which must read PEP 639 license metadata (>= 77).
"""

import sys

import setuptools
from setuptools import setup

_MIN_SETUPTOOLS = 77

if int(setuptools.__version__.split(".")[0]) < _MIN_SETUPTOOLS:
  sys.exit(f"setup.py: setuptools {setuptools.__version__} cannot read pyproject.toml's license "
           f"metadata; run `pip install -U 'setuptools>={_MIN_SETUPTOOLS}'` (pip install . "
           "needs nothing: it builds with its own setuptools)")

setup()
