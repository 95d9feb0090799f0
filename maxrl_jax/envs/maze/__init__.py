"""Grid-maze navigation in pure JAX (paper section 6.2, appendices E.1 and L).

Everything here is a pure function of a PRNG key and a static maze size, so it can be jitted
and vmapped on any device: a training step generates its batch of mazes, tokenises them, and
scores sampled responses without leaving the accelerator. The choices follow the authors'
released code (``maze/generate_maze.py``, ``verl/utils/reward_score/maze.py`` and the tokenizer
of ``maze/ckpt-1500`` in github.com/tajwarfahim/maxrl).

The environment is split by concern, each module importing only the ones above it in this list:
``tokens`` (vocabulary, grid geometry, prompt/response layout, ``decode``; the bottom layer),
``generators`` (the authors' Prim's algorithm from the start cell and the ``random_root``
variant), ``verify`` (BFS shortest path, ``outcome`` and ``reward``), ``split`` (held-out hash,
``train_mazes``, ``train_batch``, ``test_mazes``). Their public names are re-exported here
(``from maxrl_jax.envs import maze; maze.reward(...)``). Pictures and the command line are in
``render`` (``python -m maxrl_jax.envs.maze.render``); ``maze.render`` is that module, and
``trace_path``, ``render_pair``, ``wrong_turn_rollout`` are loaded from it on first use, so
importing the environment never imports matplotlib.
"""

import importlib

from maxrl_jax.envs.maze.generators import (  # noqa: F401
    VARIANTS, check_variant, generate, max_extra_openings)
from maxrl_jax.envs.maze.split import (  # noqa: F401
    is_held_out, maze_hash, test_mazes, train_batch, train_mazes)
from maxrl_jax.envs.maze.tokens import (  # noqa: F401
    BOS, CELL_GOAL, CELL_PATH, CELL_START, CELL_TOKENS, CELL_WALL, DONE, DOWN, EOS, GRID_DTYPE,
    ID_TO_TOKEN, LEFT, MOVE_TOKENS, NEWLINE_CHAR, PAD, RIGHT, SKIPPED_TOKENS, STOP_TOKENS, UNK, UP,
    VOCAB, VOCAB_SIZE, check_size, decode, goal_position, max_response_length, num_cells,
    prompt_length, prompt_tokens, start_position)
from maxrl_jax.envs.maze.verify import (  # noqa: F401
    OUTCOME_ID, OUTCOMES, RULES, check_rule, outcome, reward, shortest_path,
    shortest_path_length)

_FROM_RENDER = ("trace_path", "render_pair", "wrong_turn_rollout")


def __getattr__(name):
  if name == "render":
    return importlib.import_module("maxrl_jax.envs.maze.render")
  if name in _FROM_RENDER:
    return getattr(importlib.import_module("maxrl_jax.envs.maze.render"), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
