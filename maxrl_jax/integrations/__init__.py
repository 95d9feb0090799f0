"""Adapters that plug the estimators of :mod:`maxrl_jax.estimators` into other RL frameworks.

Submodules (each imports its framework only when you call it, never at ``import maxrl_jax``):
  tunix: registers every group estimator (MaxRL, paper section 3 and Algorithm 1, and the
         baselines) in google-tunix's advantage-estimator registry as ``"maxrl_jax/<name>"``.
         Needs the ``tunix`` extra: ``pip install 'maxrl_jax[tunix]'``.
"""

from __future__ import annotations
