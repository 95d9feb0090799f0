"""Grid-maze navigation in pure JAX (paper section 6.2, appendix E.1; SPEC section 4.3).

Everything here is a pure function of a PRNG key and a static maze size, so it can be jitted
and vmapped on any device: a training step generates its batch of mazes, tokenises them, and
scores sampled responses without leaving the accelerator.

Maze. A ``size x size`` grid (``size`` odd, ``>= 5``) of cell codes ``CELL_WALL``, ``CELL_PATH``,
``CELL_START``, ``CELL_GOAL``. With ``m = (size - 1) / 2`` the maze cells sit at odd coordinates
``(2i + 1, 2j + 1)``, ``0 <= i, j < m``; the grid point between two adjacent cells is a
*passage* (open) or a wall; points with two even coordinates (pillars) and the border are
always walls. ``generate`` runs randomised Prim's algorithm on the ``m x m`` cell graph: start
from a uniformly random cell, and ``m^2 - 1`` times pick a uniformly random wall between the
tree and a cell outside it and open it. The result is a perfect maze (the open points form a
tree). ``extra_openings = k`` then opens ``k`` further passages chosen uniformly among the
``(m - 1)^2`` closed ones, creating loops so that several paths may reach the goal. Start is
``(1, 1)``, goal ``(size - 2, size - 2)``.

Tokens (vocabulary of 32; ids in ``VOCAB``). Prompt, ``prompt_length(size) = size (size + 1) + 4``
tokens (310 for the paper's 17 x 17)::

  <bos> GRID_START  c(0,0) ... c(0,size-1) NEWLINE  ...  c(size-1,size-1) NEWLINE  GRID_END PATH_START

with ``c`` one of ``WALL PATH START GOAL``. Response: moves ``UP DOWN LEFT RIGHT`` (one move = one
grid point: ``UP`` is row - 1, ``RIGHT`` is column + 1), then ``DONE <eos>``. For the 7 x 7 example
of SPEC 4.3 the response ``RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DOWN DONE <eos>`` walks from
(1, 1) to (5, 5).

Reward (``reward``). Let ``t*`` be the position of the first ``DONE`` token. The reward is 1 iff

* a ``DONE`` exists,
* every token before ``t*`` is one of the four moves,
* no move enters a wall or leaves the grid, and
* the position after the last move before ``t*`` is the goal (the agent must *end* on the goal:
  passing over it and walking on gives 0; detours that end on the goal give 1).

Tokens after the first ``DONE`` (normally ``<eos>`` then padding) are ignored. The function never
raises, whatever the token ids (out-of-vocabulary ids count as non-move tokens).

Response length. A shortest path visits at most all ``m^2`` cells, i.e. at most
``2 m^2 - 2`` moves, so ``max_response_length(size) = 2 m^2`` tokens hold any BFS answer with
``DONE <eos>`` (128 for 17 x 17; the paper samples up to 180 tokens, which leaves room for
non-shortest successful paths).

Train/test split (``train_mazes``, ``train_batch``, ``test_mazes``). Let ``h`` be a 32-bit
MurmurHash3 of the maze's open/wall bitmap and ``G^T`` the transposed maze (still a valid maze
with the same start and goal, and exactly as likely under the generator, which treats rows and
columns alike). A maze is *held out* iff ``h(G) < h(G^T)``. Test mazes are held-out mazes drawn
from their own key stream (symmetric mazes, ``h(G) = h(G^T)``, are skipped, duplicates removed);
the training generator returns, for each index, the generated maze or its transpose, whichever
is *not* held out (``h >= h`` of the other). So every training maze satisfies
``h(G) >= h(G^T)`` and every test maze ``h(G) < h(G^T)``: the two sets are disjoint by
construction, for any seeds and any number of training mazes, with no rejection loop. The
training distribution is the generator's distribution conditioned on the non-held-out half
(``P(G) = P(G^T)``), and the split depends on a pseudo-random hash, not on maze structure.
"""

from __future__ import annotations

import argparse
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# ----------------------------------------------------------------------------------------------
# Vocabulary and constants.

_TOKEN_NAMES = (
    "<pad>", "<bos>", "<eos>", "GRID_START", "GRID_END", "NEWLINE",
    "WALL", "PATH", "START", "GOAL", "PATH_START",
    "UP", "DOWN", "LEFT", "RIGHT", "DONE",
)
VOCAB: dict[str, int] = {name: i for i, name in enumerate(_TOKEN_NAMES)}
# The paper's vocabulary has 32 entries; the ids past DONE are reserved and never produced.
VOCAB.update({f"<reserved_{i}>": i for i in range(len(_TOKEN_NAMES), 32)})
VOCAB_SIZE = len(VOCAB)
ID_TO_TOKEN: dict[int, str] = {i: name for name, i in VOCAB.items()}

PAD = VOCAB["<pad>"]
BOS = VOCAB["<bos>"]
EOS = VOCAB["<eos>"]
DONE = VOCAB["DONE"]
UP, DOWN, LEFT, RIGHT = VOCAB["UP"], VOCAB["DOWN"], VOCAB["LEFT"], VOCAB["RIGHT"]
MOVE_TOKENS = (UP, DOWN, LEFT, RIGHT)
# Sampling stops at <eos>; the reward only looks at the tokens before the first DONE.
STOP_TOKENS = (EOS,)

# Cell codes of a grid; the token of cell code c is c + VOCAB["WALL"].
CELL_WALL, CELL_PATH, CELL_START, CELL_GOAL = 0, 1, 2, 3
GRID_DTYPE = jnp.int8

# (row, column) displacement of UP, DOWN, LEFT, RIGHT.
_MOVE_DELTAS = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int32)

assert all(m == UP + i for i, m in enumerate(MOVE_TOKENS))
assert [VOCAB[n] - VOCAB["WALL"] for n in ("WALL", "PATH", "START", "GOAL")] == [
    CELL_WALL, CELL_PATH, CELL_START, CELL_GOAL]

# Outcome codes of `outcome` (reward 1 iff SUCCESS).
OUTCOMES = ("success", "no_done", "invalid_token", "wall", "out_of_bounds", "wrong_end")
OUTCOME_ID = {name: i for i, name in enumerate(OUTCOMES)}

_HASH_SEED = 0x9747B28C
_TRAIN_STREAM = 0x7472   # fold_in tags of the two key streams ("tr", "te").
_TEST_STREAM = 0x7465


def check_size(size: int) -> None:
  """Raises ``ValueError`` unless ``size`` is an odd int ``>= 5``."""
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 5 or size % 2 == 0:
    raise ValueError(f"maze size must be an odd integer >= 5, got {size!r}")


def num_cells(size: int) -> int:
  """``m = (size - 1) / 2``: the maze has ``m x m`` cells."""
  check_size(size)
  return (size - 1) // 2


def max_extra_openings(size: int) -> int:
  """Closed passages left in a perfect maze: ``2 m (m - 1) - (m^2 - 1) = (m - 1)^2``."""
  return (num_cells(size) - 1) ** 2


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
# Generation (randomised Prim's algorithm).


@functools.lru_cache(maxsize=None)
def _layout(size: int):
  """Static index arrays: cell coordinates and, per edge, its two cells and its wall point."""
  m = num_cells(size)
  cell_rc = np.array([(2 * i + 1, 2 * j + 1) for i in range(m) for j in range(m)], np.int32)
  ea, eb, wall_rc = [], [], []
  for i in range(m):
    for j in range(m):
      if j + 1 < m:  # Horizontal neighbour: wall point to the right of cell (i, j).
        ea.append(i * m + j), eb.append(i * m + j + 1), wall_rc.append((2 * i + 1, 2 * j + 2))
      if i + 1 < m:  # Vertical neighbour: wall point below cell (i, j).
        ea.append(i * m + j), eb.append((i + 1) * m + j), wall_rc.append((2 * i + 2, 2 * j + 1))
  return (cell_rc, np.array(ea, np.int32), np.array(eb, np.int32), np.array(wall_rc, np.int32))


def _check_extra_openings(size: int, extra_openings: int) -> None:
  if (isinstance(extra_openings, bool) or not isinstance(extra_openings, (int, np.integer))
      or not 0 <= extra_openings <= max_extra_openings(size)):
    raise ValueError(
        f"extra_openings must be an int in [0, {max_extra_openings(size)}] for size {size}, "
        f"got {extra_openings!r}")


@functools.partial(jax.jit, static_argnames=("size", "extra_openings"))
def generate(key: jax.Array, size: int = 17, extra_openings: int = 0) -> jax.Array:
  """A random maze, ``int8 [size, size]`` of cell codes; deterministic per key.

  Randomised Prim's algorithm on the ``m x m`` cell graph (``m = (size - 1) / 2``): the tree
  starts at a uniformly random cell; each of the ``m^2 - 1`` steps opens a uniformly random
  frontier edge (one end in the tree, one outside; fresh randomness each step) and adds its
  outer cell. ``extra_openings`` then opens that many of the remaining closed passages,
  uniformly without replacement.

  Args:
    key: a PRNG key.
    size: odd grid side ``>= 5`` (static).
    extra_openings: number of additional passages to open, ``0 <= k <= (m - 1)^2`` (static).

  Returns:
    The grid: border and pillars ``CELL_WALL``, start ``(1, 1)`` ``CELL_START``, goal
    ``(size - 2, size - 2)`` ``CELL_GOAL``, other open points ``CELL_PATH``.
  """
  check_size(size)
  _check_extra_openings(size, extra_openings)
  cell_rc, ea, eb, wall_rc = _layout(size)
  m = num_cells(size)
  num_edges = ea.shape[0]
  # Cell-edge incidence matrix: the per-step gathers and scatters become two small matmuls,
  # which batch far better under vmap (exact: all values are 0, 1 or 2).
  incidence = np.zeros((m * m, num_edges), np.float32)
  incidence[ea, np.arange(num_edges)] = 1.0
  incidence[eb, np.arange(num_edges)] = 1.0
  incidence = jnp.asarray(incidence)
  k_root, k_prim, k_open = jax.random.split(key, 3)

  root = jax.random.randint(k_root, (), 0, m * m)
  in_tree = (jnp.arange(m * m) == root).astype(jnp.float32)
  carved = jnp.zeros((num_edges,), bool)
  # One uniform per step picks the step's frontier edge: the floor(u * count)-th one in edge order.
  u = jax.random.uniform(k_prim, (m * m - 1,))

  def prim_step(t, state):
    in_tree, carved = state
    frontier = (in_tree @ incidence) == 1.0  # Exactly one end in the tree.
    rank = jnp.cumsum(frontier.astype(jnp.int32))
    target = jnp.minimum((u[t] * rank[-1]).astype(jnp.int32), rank[-1] - 1)
    chosen = frontier & (rank == target + 1)  # One-hot over edges.
    in_tree = jnp.maximum(in_tree, incidence @ chosen.astype(jnp.float32))
    return in_tree, carved | chosen

  _, carved = jax.lax.fori_loop(0, m * m - 1, prim_step, (in_tree, carved))
  if extra_openings:
    score = jnp.where(carved, -1.0, jax.random.uniform(k_open, (num_edges,)))
    _, chosen = jax.lax.top_k(score, extra_openings)
    carved = carved.at[chosen].set(True)

  grid = jnp.full((size, size), CELL_WALL, GRID_DTYPE)
  grid = grid.at[cell_rc[:, 0], cell_rc[:, 1]].set(CELL_PATH)
  grid = grid.at[wall_rc[:, 0], wall_rc[:, 1]].set(
      jnp.where(carved, CELL_PATH, CELL_WALL).astype(GRID_DTYPE))
  grid = grid.at[1, 1].set(CELL_START)
  return grid.at[size - 2, size - 2].set(CELL_GOAL)


# ----------------------------------------------------------------------------------------------
# Tokenisation.


@jax.jit
def prompt_tokens(grid: jax.Array) -> jax.Array:
  """The prompt of SPEC 4.3, ``int32 [prompt_length(size)]``.

  ``<bos> GRID_START``, each row's cells as ``WALL/PATH/START/GOAL`` followed by ``NEWLINE``,
  then ``GRID_END PATH_START``.
  """
  size = grid.shape[-1]
  check_size(size)
  cells = grid.astype(jnp.int32) + VOCAB["WALL"]
  rows = jnp.concatenate([cells, jnp.full((size, 1), VOCAB["NEWLINE"], jnp.int32)], axis=1)
  return jnp.concatenate([
      jnp.array([BOS, VOCAB["GRID_START"]], jnp.int32),
      rows.reshape(-1),
      jnp.array([VOCAB["GRID_END"], VOCAB["PATH_START"]], jnp.int32),
  ])


def decode(tokens: Sequence[int]) -> str:
  """Space-separated token names (ids outside the vocabulary as ``<id>``)."""
  return " ".join(ID_TO_TOKEN.get(int(t), f"<{int(t)}>") for t in np.asarray(tokens).reshape(-1))


# ----------------------------------------------------------------------------------------------
# BFS oracle.


def _distances_from(grid: jax.Array, source: tuple[int, int]) -> jax.Array:
  """BFS distance (moves) from ``source`` to every point, ``size^2`` where unreachable or wall.

  Synchronous wavefront relaxation ``d <- min(d, 1 + min_neighbours d)`` on open points until a
  fixed point (at most ``longest shortest path + 1`` sweeps).
  """
  size = grid.shape[-1]
  inf = size * size
  is_open = grid != CELL_WALL
  d0 = jnp.full((size, size), inf, jnp.int32).at[source].set(0)
  d0 = jnp.where(is_open, d0, inf)

  def sweep(state):
    d, _ = state
    p = jnp.pad(d, 1, constant_values=inf)
    nb = jnp.minimum(jnp.minimum(p[:-2, 1:-1], p[2:, 1:-1]), jnp.minimum(p[1:-1, :-2], p[1:-1, 2:]))
    new = jnp.where(is_open, jnp.minimum(d, nb + 1), inf)
    return new, jnp.any(new != d)

  d, _ = jax.lax.while_loop(lambda s: s[1], sweep, (d0, jnp.array(True)))
  return d


@jax.jit
def shortest_path_length(grid: jax.Array) -> jax.Array:
  """Number of moves of a shortest start-to-goal path (``int32``), ``-1`` if unreachable."""
  size = grid.shape[-1]
  check_size(size)
  d = _distances_from(grid, goal_position(size))[start_position(size)]
  return jnp.where(d >= size * size, -1, d)


@jax.jit
def shortest_path(grid: jax.Array) -> jax.Array:
  """A BFS shortest path as a response, ``int32 [max_response_length(size)]``.

  ``L`` moves, then ``DONE <eos>``, then ``<pad>``. From each point the walk takes the first of
  ``UP, DOWN, LEFT, RIGHT`` whose neighbour is one step closer to the goal (BFS distances from
  the goal), so ties between equally short paths break deterministically. An unreachable goal
  gives ``DONE <eos>`` (reward 0). The length bound holds for mazes (pillars closed); for a grid
  whose shortest path is longer than ``2 m^2 - 2`` the sequence is truncated (no ``DONE``).
  """
  size = grid.shape[-1]
  check_size(size)
  length = max_response_length(size)
  inf = size * size
  dist = _distances_from(grid, goal_position(size))
  padded = jnp.pad(dist, 1, constant_values=inf)
  num_moves = dist[start_position(size)]
  num_moves = jnp.where(num_moves >= inf, 0, num_moves)
  deltas = jnp.asarray(_MOVE_DELTAS)

  def step(pos, t):
    here = padded[pos[0] + 1, pos[1] + 1]
    nbs = pos[None, :] + deltas
    closer = padded[nbs[:, 0] + 1, nbs[:, 1] + 1] == here - 1
    direction = jnp.argmax(closer)
    moving = t < num_moves
    token = jnp.where(moving, UP + direction,
                      jnp.where(t == num_moves, DONE, jnp.where(t == num_moves + 1, EOS, PAD)))
    return jnp.where(moving, nbs[direction], pos), token.astype(jnp.int32)

  _, tokens = jax.lax.scan(step, jnp.array(start_position(size), jnp.int32), jnp.arange(length))
  return tokens


# ----------------------------------------------------------------------------------------------
# Verifier.


def _trace(grid: jax.Array, tokens: jax.Array):
  """Vectorised walk of a response; returns the pieces ``reward`` and ``outcome`` need."""
  size = grid.shape[-1]
  check_size(size)
  tokens = jnp.asarray(tokens).astype(jnp.int32)
  n = tokens.shape[-1]
  idx = jnp.arange(n)
  is_done = tokens == DONE
  has_done = jnp.any(is_done)
  first_done = jnp.where(has_done, jnp.argmax(is_done), n)
  before = idx < first_done
  is_move = (tokens >= UP) & (tokens <= RIGHT)
  bad_token = jnp.any(before & ~is_move)
  # Only the leading run of moves matters; the first non-move already decides the outcome.
  first_bad_token = jnp.where(bad_token, jnp.argmax(before & ~is_move), n)
  walking = idx < jnp.minimum(first_done, first_bad_token)
  deltas = jnp.asarray(_MOVE_DELTAS)[jnp.clip(tokens - UP, 0, 3)]
  deltas = jnp.where(walking[:, None], deltas, 0)
  positions = jnp.array(start_position(size), jnp.int32) + jnp.cumsum(deltas, axis=0)
  inside = jnp.all((positions >= 0) & (positions < size), axis=1)
  clipped = jnp.clip(positions, 0, size - 1)
  wall = grid[clipped[:, 0], clipped[:, 1]] == CELL_WALL
  out_step = walking & ~inside
  wall_step = walking & inside & wall
  # The first failing move decides between wall and out_of_bounds.
  first_out = jnp.where(jnp.any(out_step), jnp.argmax(out_step), n)
  first_wall = jnp.where(jnp.any(wall_step), jnp.argmax(wall_step), n)
  final = positions[-1]
  at_goal = jnp.all(final == jnp.array(goal_position(size), jnp.int32))
  return dict(has_done=has_done, first_done=first_done, first_bad_token=first_bad_token,
              first_out=first_out, first_wall=first_wall, at_goal=at_goal)


@jax.jit
def reward(grid: jax.Array, response_tokens: jax.Array) -> jax.Array:
  """1.0 iff the moves before the first ``DONE`` walk from start to goal on open points.

  ``float32`` scalar; 0.0 if there is no ``DONE``, a non-move token before it, a move into a
  wall or off the grid, or the walk ends elsewhere than the goal. Jittable and vmappable; never
  raises.

  Args:
    grid: ``[size, size]`` cell codes.
    response_tokens: ``int [R]`` response token ids (any ids; any ``R >= 1``).
  """
  return (outcome(grid, response_tokens) == OUTCOME_ID["success"]).astype(jnp.float32)


@jax.jit
def outcome(grid: jax.Array, response_tokens: jax.Array) -> jax.Array:
  """Why a response earns its reward: an index into ``OUTCOMES`` (``int32`` scalar).

  Read token by token, the first event decides: a non-move before any ``DONE`` is
  ``invalid_token``, a move onto a wall point ``wall``, off the grid ``out_of_bounds``; if the
  walk reaches the first ``DONE`` unharmed it is ``success`` on the goal and ``wrong_end``
  elsewhere; a clean walk of moves with no ``DONE`` at all is ``no_done``.
  """
  tr = _trace(grid, response_tokens)
  first_fail = jnp.minimum(jnp.minimum(tr["first_bad_token"], tr["first_out"]), tr["first_wall"])
  failed = first_fail < tr["first_done"]
  fail_code = jnp.where(
      first_fail == tr["first_bad_token"], OUTCOME_ID["invalid_token"],
      jnp.where(first_fail == tr["first_out"], OUTCOME_ID["out_of_bounds"], OUTCOME_ID["wall"]))
  code = jnp.where(
      failed, fail_code,
      jnp.where(~tr["has_done"], OUTCOME_ID["no_done"],
                jnp.where(tr["at_goal"], OUTCOME_ID["success"], OUTCOME_ID["wrong_end"])))
  return code.astype(jnp.int32)


# ----------------------------------------------------------------------------------------------
# Hash and the train/test split.


def _rotl32(x: jax.Array, r: int) -> jax.Array:
  return (x << jnp.uint32(r)) | (x >> jnp.uint32(32 - r))


def _fmix32(h: jax.Array) -> jax.Array:
  h = h ^ (h >> jnp.uint32(16))
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> jnp.uint32(13))
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> jnp.uint32(16))


@jax.jit
def maze_hash(grid: jax.Array) -> jax.Array:
  """32-bit MurmurHash3 (x86_32, seed 0x9747b28c) of the maze's open-point bitmap (``uint32``).

  The bitmap ``grid != CELL_WALL`` is read row-major, packed little-endian into 32-bit words
  (bit ``k`` of word ``w`` is point ``32 w + k``, zero-padded), and hashed word by word.
  """
  bits = (grid != CELL_WALL).reshape(-1).astype(jnp.uint32)
  num_words = -(-bits.shape[0] // 32)
  bits = jnp.pad(bits, (0, 32 * num_words - bits.shape[0]))
  words = jnp.sum(bits.reshape(num_words, 32) << jnp.arange(32, dtype=jnp.uint32), axis=1,
                  dtype=jnp.uint32)

  def absorb(h, k):
    k = _rotl32(k * jnp.uint32(0xCC9E2D51), 15) * jnp.uint32(0x1B873593)
    h = _rotl32(h ^ k, 13) * jnp.uint32(5) + jnp.uint32(0xE6546B64)
    return h, None

  h, _ = jax.lax.scan(absorb, jnp.uint32(_HASH_SEED), words)
  return _fmix32(h ^ jnp.uint32(4 * num_words))


@jax.jit
def is_held_out(grid: jax.Array) -> jax.Array:
  """True iff the maze belongs to the held-out (test) half: ``h(G) < h(G^T)``."""
  return maze_hash(grid) < maze_hash(grid.T)


def _stream_key(seed, stream: int) -> jax.Array:
  return jax.random.fold_in(jax.random.key(seed), stream)


@functools.partial(jax.jit, static_argnames=("size", "extra_openings"))
def train_mazes(seed, indices: jax.Array, size: int = 17, extra_openings: int = 0) -> jax.Array:
  """Training mazes number ``indices`` of the stream ``seed``: ``int8 [*indices.shape, size, size]``.

  Maze ``i`` is ``generate(fold_in(key_train(seed), i))`` or its transpose, whichever is not held
  out, so it never equals a test maze (module docstring). Deterministic per ``(seed, i)``.
  Indices are ``int32``, so one stream holds ``2^31`` mazes.
  """
  key = _stream_key(seed, _TRAIN_STREAM)
  indices = jnp.asarray(indices, jnp.int32)

  def one(i):
    g = generate(jax.random.fold_in(key, i), size, extra_openings)
    return jnp.where(is_held_out(g), g.T, g)

  flat = jax.vmap(one)(indices.reshape(-1))
  return flat.reshape(indices.shape + (size, size))


@functools.partial(jax.jit, static_argnames=("batch_size", "size", "extra_openings"))
def train_batch(seed, step, batch_size: int, size: int = 17, extra_openings: int = 0) -> jax.Array:
  """The training batch of ``step``: mazes ``step * batch_size + [0, batch_size)`` of the stream.

  A resumed run regenerates exactly the same batch from the step number.
  """
  start = jnp.asarray(step, jnp.int32) * batch_size
  return train_mazes(seed, start + jnp.arange(batch_size, dtype=jnp.int32), size, extra_openings)


@functools.partial(jax.jit, static_argnames=("size", "extra_openings"))
def _test_candidates(seed, indices, size, extra_openings):
  key = _stream_key(seed, _TEST_STREAM)

  def one(i):
    g = generate(jax.random.fold_in(key, i), size, extra_openings)
    h, ht = maze_hash(g), maze_hash(g.T)
    return jnp.where(h < ht, g, g.T), h != ht

  return jax.vmap(one)(indices)


def test_mazes(num: int = 256, size: int = 17, seed: int = 0, extra_openings: int = 0,
               max_candidates: int = 1 << 20) -> jax.Array:
  """``num`` distinct held-out mazes, ``int8 [num, size, size]``; deterministic per arguments.

  Candidates ``generate(fold_in(key_test(seed), j))`` for ``j = 0, 1, ...`` are oriented into the
  held-out half (the one of ``G, G^T`` with the smaller hash), symmetric ones dropped, and the
  first ``num`` distinct ones kept. Host function (run once per experiment).

  Raises:
    ValueError: if fewer than ``num`` distinct held-out mazes turn up among ``max_candidates``
      candidates (small sizes have few mazes: 7 x 7 has 192 perfect mazes in all).
  """
  check_size(size)
  _check_extra_openings(size, extra_openings)
  if num < 1:
    raise ValueError(f"num must be >= 1, got {num}")
  chunk = 4096
  seen: dict[bytes, None] = {}
  out = []
  for begin in range(0, max_candidates, chunk):
    grids, valid = _test_candidates(seed, jnp.arange(begin, begin + chunk, dtype=jnp.int32),
                                    size, extra_openings)
    grids, valid = np.asarray(grids), np.asarray(valid)
    for g, ok in zip(grids, valid):
      b = g.tobytes()
      if ok and b not in seen:
        seen[b] = None
        out.append(g)
        if len(out) == num:
          return jnp.asarray(np.stack(out))
  raise ValueError(
      f"only {len(out)} distinct held-out {size}x{size} mazes (extra_openings={extra_openings}) "
      f"among {max_candidates} candidates; need num={num}")


# Keep pytest from collecting `test_mazes` as a test when a test module imports it by name.
test_mazes.__test__ = False


# ----------------------------------------------------------------------------------------------
# Pictures (paper Figure 10).


def trace_path(grid, tokens) -> tuple[np.ndarray, str]:
  """Host-side walk for plotting: visited points (start first) and the outcome name.

  The walk stops at the first ``DONE``, the first non-move token, or the first failing move
  (whose target point is included, so a plot shows where the rollout broke).
  """
  grid = np.asarray(grid)
  tokens = np.asarray(tokens).reshape(-1)
  size = grid.shape[-1]
  pos = np.array(start_position(size))
  points = [pos.copy()]
  for t in tokens:
    if t == DONE:
      name = "success" if tuple(pos) == goal_position(size) else "wrong_end"
      return np.array(points), name
    if not UP <= t <= RIGHT:
      return np.array(points), "invalid_token"
    pos = pos + _MOVE_DELTAS[t - UP]
    points.append(pos.copy())
    if not (0 <= pos[0] < size and 0 <= pos[1] < size):
      return np.array(points), "out_of_bounds"
    if grid[pos[0], pos[1]] == CELL_WALL:
      return np.array(points), "wall"
  return np.array(points), "no_done"


def render(grid, moves=None, ax=None, title: str | None = None):
  """Draws a maze (walls dark, start green, goal red) and, if given, a rollout's trajectory.

  Args:
    grid: ``[size, size]`` cell codes.
    moves: optional response token ids; the path up to ``DONE`` is drawn, and a failing move is
      marked with a red cross.
    ax: optional matplotlib axes to draw on (a new figure otherwise).
    title: axes title; defaults to the rollout's outcome and reward.

  Returns:
    The matplotlib figure.
  """
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib.colors import ListedColormap  # pylint: disable=g-import-not-at-top

  grid = np.asarray(grid)
  if ax is None:
    _, ax = plt.subplots(figsize=(4, 4))
  cmap = ListedColormap(["#263238", "#fafafa", "#43a047", "#e53935"])
  ax.imshow(grid, cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
  if moves is not None:
    points, name = trace_path(grid, moves)
    ok = name == "success"
    ax.plot(points[:, 1], points[:, 0], color="#1e88e5" if ok else "#fb8c00", lw=2.5,
            solid_capstyle="round")
    if name in ("wall", "out_of_bounds", "wrong_end", "invalid_token", "no_done"):
      ax.plot(points[-1, 1], points[-1, 0], marker="x", color="#d50000", ms=12, mew=3)
    if title is None:
      title = f"{name} (reward {1.0 if ok else 0.0:.0f}), {len(points) - 1} moves"
  ax.set_xticks([])
  ax.set_yticks([])
  if title:
    ax.set_title(title, fontsize=10)
  return ax.figure


def wrong_turn_rollout(grid, branch_fraction: float = 0.3) -> np.ndarray:
  """A plausible failed rollout for pictures: the BFS path, one wrong turn, a dead end, a wall.

  Follows the shortest path for about ``branch_fraction`` of its length, turns into the first
  side branch after that point, keeps walking (never straight back) until a dead end, and then
  moves into the wall ahead; followed by ``DONE <eos>``. Falls back to a move into the first
  wall beside the start if the path has no side branch.
  """
  grid = np.asarray(grid)
  size = grid.shape[-1]
  best = np.asarray(shortest_path(jnp.asarray(grid)))
  moves = [int(t) for t in best if UP <= t <= RIGHT]
  on_path = {tuple(p) for p in trace_path(grid, best)[0]}
  pos = np.array(start_position(size))
  opposite = {UP: DOWN, DOWN: UP, LEFT: RIGHT, RIGHT: LEFT}

  def open_at(p):
    return 0 <= p[0] < size and 0 <= p[1] < size and grid[p[0], p[1]] != CELL_WALL

  out = []
  for k, mv in enumerate(moves):
    if k >= branch_fraction * len(moves):
      side = [t for t in MOVE_TOKENS if t != mv and (not out or t != opposite[out[-1]])
              and open_at(pos + _MOVE_DELTAS[t - UP])
              and tuple(pos + _MOVE_DELTAS[t - UP]) not in on_path]
      if side:
        heading = side[0]
        while True:
          out.append(heading)
          pos = pos + _MOVE_DELTAS[heading - UP]
          nxt = [t for t in MOVE_TOKENS if t != opposite[heading]
                 and open_at(pos + _MOVE_DELTAS[t - UP])]
          if not nxt:
            out.append(heading)  # Bump into the dead end's wall.
            return np.array(out + [DONE, EOS], np.int32)
          heading = nxt[0]
    out.append(mv)
    pos = pos + _MOVE_DELTAS[mv - UP]
  wall_dir = next(t for t in MOVE_TOKENS if not open_at(np.array(start_position(size))
                                                         + _MOVE_DELTAS[t - UP]))
  return np.array([wall_dir, DONE, EOS], np.int32)


def render_pair(path: str, size: int = 17, seed: int = 0, extra_openings: int = 0):
  """Writes the paper's Figure 10 to ``path``: a successful and a failed rollout side by side.

  Left: the BFS answer on training maze 0 of stream ``seed`` (reward 1). Right: a wrong-turn
  rollout (``wrong_turn_rollout``) on training maze 1 (reward 0). Returns the figure.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  del matplotlib
  grids = np.asarray(train_mazes(seed, jnp.arange(2), size, extra_openings))
  good = np.asarray(shortest_path(jnp.asarray(grids[0])))
  bad = wrong_turn_rollout(grids[1])
  fig, axes = plt.subplots(1, 2, figsize=(8, 4.4))
  for ax, g, resp, label in ((axes[0], grids[0], good, "successful rollout"),
                             (axes[1], grids[1], bad, "failed rollout")):
    r = float(reward(jnp.asarray(g), jnp.asarray(resp)))
    _, name = trace_path(g, resp)
    render(g, resp, ax=ax, title=f"{label}: {name}, reward {r:.0f}")
  fig.suptitle(f"{size}x{size} Prim mazes: start (green) to goal (red)", fontsize=11)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  return fig


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description="Maze environment utilities.")
  parser.add_argument("--render", default="docs/figures/maze_example.png",
                      help="where to write the success/failure picture (paper Figure 10)")
  parser.add_argument("--size", type=int, default=17)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--extra_openings", type=int, default=0)
  parser.add_argument("--show", action="store_true", help="also print maze 0 and its answer")
  args = parser.parse_args(argv)
  render_pair(args.render, args.size, args.seed, args.extra_openings)
  print(f"wrote {args.render}")
  if args.show:
    g = train_mazes(args.seed, jnp.arange(1), args.size, args.extra_openings)[0]
    print(decode(prompt_tokens(g)).replace(" NEWLINE ", "\n"))
    print(decode(shortest_path(g)))


if __name__ == "__main__":
  main()
