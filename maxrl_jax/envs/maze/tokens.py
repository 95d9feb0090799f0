"""Vocabulary, grid geometry and the prompt/response layout of the mazes (paper section 6.2,
appendices E.1 and L).

The bottom layer of ``maxrl_jax.envs.maze``: the other modules (``generators``, ``verify``,
``split``) import from here and never the other way round.

Maze. A ``size x size`` grid (``size`` odd, ``>= 5``) of cell codes ``CELL_WALL``, ``CELL_PATH``,
``CELL_START``, ``CELL_GOAL``. With ``m = (size - 1) / 2`` the maze cells sit at odd coordinates
``(2i + 1, 2j + 1)``, ``0 <= i, j < m``; the grid point between two adjacent cells is a
*passage* (open) or a wall; points with two even coordinates (pillars) and the border are
always walls. Start is ``(1, 1)``, goal ``(size - 2, size - 2)``.

Tokens (the authors' 32-token vocabulary, ``VOCAB``; ids match their tokenizer so checkpoints
interoperate). Prompt, ``prompt_length(size) = size (size + 1) + 4`` tokens (310 for 17 x 17)::

  <bos> GRID_START  c(0,0) ... c(0,size-1) NEWLINE  ...  c(size-1,size-1) NEWLINE  GRID_END PATH_START

with ``c`` one of ``WALL PATH START GOAL``. Response: moves ``UP DOWN LEFT RIGHT`` (one move = one
grid point: ``UP`` is row - 1, ``RIGHT`` is column + 1), then ``DONE <eos>``.

Response length. A shortest path visits at most all ``m^2`` cells, i.e. at most
``2 m^2 - 2`` moves, so ``max_response_length(size) = 2 m^2`` tokens hold any BFS answer with
``DONE <eos>`` (128 for 17 x 17; the paper samples up to 180 tokens).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# ----------------------------------------------------------------------------------------------
# Vocabulary and constants.

# The authors' tokenizer (maze/ckpt-1500/tokenizer.json): id i is _TOKEN_NAMES[i]. Id 17 is a
# newline character, distinct from the NEWLINE token that ends each grid row.
_TOKEN_NAMES = (
    "<pad>", "<bos>", "<eos>", "<unk>", "GRID_START", "GRID_END", "PATH_START", "DONE",
    "PATH", "WALL", "GOAL", "START", "NEWLINE", "UP", "DOWN", "LEFT", "RIGHT", "\n",
) + tuple(f"RESERVED_{i}" for i in range(14))
VOCAB: dict[str, int] = {name: i for i, name in enumerate(_TOKEN_NAMES)}
VOCAB_SIZE = len(VOCAB)
ID_TO_TOKEN: dict[int, str] = {i: name for name, i in VOCAB.items()}

PAD = VOCAB["<pad>"]
BOS = VOCAB["<bos>"]
EOS = VOCAB["<eos>"]
UNK = VOCAB["<unk>"]
DONE = VOCAB["DONE"]
NEWLINE_CHAR = VOCAB["\n"]
UP, DOWN, LEFT, RIGHT = VOCAB["UP"], VOCAB["DOWN"], VOCAB["LEFT"], VOCAB["RIGHT"]
MOVE_TOKENS = (UP, DOWN, LEFT, RIGHT)
# Ids the authors' decoding removes before judging (special tokens, and the whitespace token
# that str.split drops); ids outside the vocabulary are removed as well.
SKIPPED_TOKENS = (PAD, BOS, EOS, UNK, NEWLINE_CHAR)
# The paper's rollouts stop at <eos>.
STOP_TOKENS = (EOS,)

# Cell codes of a grid and the token of each.
CELL_WALL, CELL_PATH, CELL_START, CELL_GOAL = 0, 1, 2, 3
CELL_TOKENS = (VOCAB["WALL"], VOCAB["PATH"], VOCAB["START"], VOCAB["GOAL"])
GRID_DTYPE = jnp.int8

# (row, column) displacement of UP, DOWN, LEFT, RIGHT.
_MOVE_DELTAS = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int32)

assert VOCAB_SIZE == 32
assert all(m == UP + i for i, m in enumerate(MOVE_TOKENS))


def check_size(size: int) -> None:
  """Raises ``ValueError`` unless ``size`` is an odd int ``>= 5``."""
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 5 or size % 2 == 0:
    raise ValueError(f"maze size must be an odd integer >= 5, got {size!r}")


def num_cells(size: int) -> int:
  """``m = (size - 1) / 2``: the maze has ``m x m`` cells."""
  check_size(size)
  return (size - 1) // 2


def prompt_length(size: int) -> int:
  """``<bos> GRID_START`` + ``size`` rows of ``size`` cells and a NEWLINE + ``GRID_END PATH_START``."""
  check_size(size)
  return size * (size + 1) + 4


def max_response_length(size: int) -> int:
  """Length of ``shortest_path``: longest possible shortest path ``2 m^2 - 2``, + ``DONE <eos>``."""
  return 2 * num_cells(size) ** 2


def start_position(size: int) -> tuple[int, int]:
  check_size(size)
  return (1, 1)


def goal_position(size: int) -> tuple[int, int]:
  check_size(size)
  return (size - 2, size - 2)


# ----------------------------------------------------------------------------------------------
# Tokenisation.


@jax.jit
def prompt_tokens(grid: jax.Array) -> jax.Array:
  """The prompt (paper appendix E.1), ``int32 [prompt_length(size)]``.

  ``<bos> GRID_START``, each row's cells as ``WALL/PATH/START/GOAL`` followed by ``NEWLINE``,
  then ``GRID_END PATH_START``.
  """
  size = grid.shape[-1]
  check_size(size)
  cells = jnp.asarray(CELL_TOKENS, jnp.int32)[grid.astype(jnp.int32)]
  rows = jnp.concatenate([cells, jnp.full((size, 1), VOCAB["NEWLINE"], jnp.int32)], axis=1)
  return jnp.concatenate([
      jnp.array([BOS, VOCAB["GRID_START"]], jnp.int32),
      rows.reshape(-1),
      jnp.array([VOCAB["GRID_END"], VOCAB["PATH_START"]], jnp.int32),
  ])


def decode(tokens: Sequence[int]) -> str:
  """Space-separated token names (the newline character as ``\\n``, other ids as ``<id>``)."""
  names = {**ID_TO_TOKEN, NEWLINE_CHAR: "\\n"}
  return " ".join(names.get(int(t), f"<{int(t)}>") for t in np.asarray(tokens).reshape(-1))
