"""Environments with verifiable binary rewards, written in pure JAX.

maze: grid mazes from randomised Prim's algorithm, the authors' tokenisation, a BFS oracle,
  the authors' reward verifier and a train/test split (paper section 6.2, appendices E.1 and L).
  Import it as ``from maxrl_jax.envs import maze``; its pictures are in ``maze.render``.
"""
