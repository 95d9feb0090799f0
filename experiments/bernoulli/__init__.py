"""Toy Bernoulli policy driver: every MaxRL estimator against the exact truth (not in the paper)."""
