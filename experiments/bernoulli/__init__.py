"""Toy Bernoulli policy driver: every MaxRL estimator against the exact truth (not in the paper).

Its experiments in the reproduction (:mod:`experiments.common.drivers`): ``{name: preset}``.
"""

EXPERIMENTS = {"bernoulli": "{preset}"}
