"""Toy Bernoulli policy driver: every MaxRL estimator against the exact truth (SPEC 4.1)."""
