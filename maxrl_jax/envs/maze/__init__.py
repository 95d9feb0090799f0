"""Grid-maze navigation in pure JAX (paper section 6.2, appendices E.1 and L).

The environment lives in ``core`` and is re-exported here (``from maxrl_jax.envs import maze;
maze.reward(...)``). Pictures and the command line are in ``render``
(``python -m maxrl_jax.envs.maze.render``); ``maze.render`` is that module, and ``trace_path``,
``render_pair``, ``wrong_turn_rollout`` are loaded from it on first use, so importing the
environment never imports matplotlib.
"""

import importlib

from maxrl_jax.envs.maze.core import (  # noqa: F401
    BOS, CELL_GOAL, CELL_PATH, CELL_START, CELL_TOKENS, CELL_WALL, DONE, DOWN, EOS, GRID_DTYPE,
    ID_TO_TOKEN, LEFT, MOVE_TOKENS, NEWLINE_CHAR, OUTCOME_ID, OUTCOMES, PAD, RIGHT, RULES,
    SKIPPED_TOKENS, STOP_TOKENS, UNK, UP, VARIANTS, VOCAB, VOCAB_SIZE, check_rule, check_size,
    check_variant, decode, generate, goal_position, is_held_out, max_extra_openings,
    max_response_length, maze_hash, num_cells, outcome, prompt_length, prompt_tokens, reward,
    shortest_path, shortest_path_length, start_position, test_mazes, train_batch, train_mazes)

_FROM_RENDER = ("trace_path", "render_pair", "wrong_turn_rollout")


def __getattr__(name):
  if name == "render":
    return importlib.import_module("maxrl_jax.envs.maze.render")
  if name in _FROM_RENDER:
    return getattr(importlib.import_module("maxrl_jax.envs.maze.render"), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
