"""``python -m maxrl_jax.envs.maze`` is ``python -m maxrl_jax.envs.maze.render``."""

from maxrl_jax.envs.maze.render import main

main()
