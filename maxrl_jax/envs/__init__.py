"""Environments with verifiable binary rewards, written in pure JAX.

maze: grid mazes from randomised Prim's algorithm, the paper's tokenisation, a BFS oracle,
  the reward verifier and the train/test split (paper section 6.2; SPEC section 4.3).
  Import it as ``from maxrl_jax.envs import maze``.
"""
