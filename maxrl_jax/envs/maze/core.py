"""Grid-maze navigation in pure JAX (paper section 6.2, appendices E.1 and L).

Everything here is a pure function of a PRNG key and a static maze size, so it can be jitted
and vmapped on any device: a training step generates its batch of mazes, tokenises them, and
scores sampled responses without leaving the accelerator. The choices follow the authors'
released code (``maze/generate_maze.py``, ``verl/utils/reward_score/maze.py`` and the tokenizer
of ``maze/ckpt-1500`` in github.com/tajwarfahim/maxrl).

Maze. A ``size x size`` grid (``size`` odd, ``>= 5``) of cell codes ``CELL_WALL``, ``CELL_PATH``,
``CELL_START``, ``CELL_GOAL``. With ``m = (size - 1) / 2`` the maze cells sit at odd coordinates
``(2i + 1, 2j + 1)``, ``0 <= i, j < m``; the grid point between two adjacent cells is a
*passage* (open) or a wall; points with two even coordinates (pillars) and the border are
always walls. Start is ``(1, 1)``, goal ``(size - 2, size - 2)``. ``generate`` has two variants:

* ``"from_start"`` (default, the authors' generator): randomised Prim's algorithm in its
  cell-frontier form grown from the start cell. The frontier is the set of cells outside the
  maze next to it; each step picks a uniformly random frontier cell and joins it to a uniformly
  random neighbouring cell already in the maze.
* ``"random_root"`` (the generator of earlier versions of this package): Prim's algorithm in
  its edge-frontier form grown from a uniformly random cell; each step opens a uniformly random
  wall between the maze and a cell outside it. Its mazes are measurably harder: on 17 x 17 the
  shortest path is the monotone 28 moves in about 55% of them against about 77% for
  ``"from_start"`` (mean shortest path about 30.5 against 29.0).

Both give perfect mazes (the open points form a tree), in ``O(m^2)`` time and memory per maze:
the frontier is an unordered array with O(1) swap-removal. ``extra_openings = k`` then opens
``k`` further passages chosen uniformly among the ``(m - 1)^2`` closed ones, creating loops.

Tokens (the authors' 32-token vocabulary, ``VOCAB``; ids match their tokenizer so checkpoints
interoperate). Prompt, ``prompt_length(size) = size (size + 1) + 4`` tokens (310 for 17 x 17)::

  <bos> GRID_START  c(0,0) ... c(0,size-1) NEWLINE  ...  c(size-1,size-1) NEWLINE  GRID_END PATH_START

with ``c`` one of ``WALL PATH START GOAL``. Response: moves ``UP DOWN LEFT RIGHT`` (one move = one
grid point: ``UP`` is row - 1, ``RIGHT`` is column + 1), then ``DONE <eos>``.

Reward (``reward``, ``outcome``), rule ``"first_arrival"`` (default, the authors' verifier). The
authors decode the response with ``skip_special_tokens=True`` and split it on whitespace, which
removes ``<pad> <bos> <eos> <unk>``, the newline-character token (id 17) and any id outside the
vocabulary; these ids are *skipped* here too. Of the remaining tokens take those before the first
``DONE``. The reward is 0 if there is no ``DONE`` or any of them is not a move; otherwise the
moves are walked from the start: the first move into a wall or off the grid gives 0, the first
time the walk enters the goal gives 1 (later moves are not looked at), and a walk that ends
elsewhere gives 0. Rule ``"end_on_goal"`` is the stricter verifier of earlier versions of this
package: nothing is skipped, every token before the first ``DONE`` must be a move, no move may
fail, and the walk must *end* on the goal. Both functions never raise, whatever the token ids.

Response length. A shortest path visits at most all ``m^2`` cells, i.e. at most
``2 m^2 - 2`` moves, so ``max_response_length(size) = 2 m^2`` tokens hold any BFS answer with
``DONE <eos>`` (128 for 17 x 17; the paper samples up to 180 tokens).

Train/test split (``train_mazes``, ``train_batch``, ``test_mazes``). Let ``h`` be a 32-bit
MurmurHash3 of the maze's open/wall bitmap and ``G^T`` the transposed maze (still a valid maze
with the same start and goal, and exactly as likely under both generators: transposition maps
the grid onto itself and fixes the start cell, and the generators treat rows and columns
alike). A maze is *held out* iff ``h(G) < h(G^T)``. Test mazes are held-out mazes drawn from their
own key stream (symmetric mazes, ``h(G) = h(G^T)``, are skipped, duplicates removed); the
training generator returns, for each index, the generated maze or its transpose, whichever is
*not* held out. So every training maze satisfies ``h(G) >= h(G^T)`` and every test maze
``h(G) < h(G^T)``: the two sets are disjoint by construction, for any seeds and any number of
training mazes, with no rejection loop. (The authors instead shuffle 1,000,000 generated mazes
and hold out the first 256, without deduplication.)
"""

from __future__ import annotations

import functools
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

# Outcome codes of `outcome` (reward 1 iff SUCCESS).
OUTCOMES = ("success", "no_done", "invalid_token", "wall", "out_of_bounds", "wrong_end")
OUTCOME_ID = {name: i for i, name in enumerate(OUTCOMES)}

# Reward rules and generator variants (module docstring); the first of each is the default.
RULES = ("first_arrival", "end_on_goal")
VARIANTS = ("from_start", "random_root")

_HASH_SEED = 0x9747B28C
_TRAIN_STREAM = 0x7472   # fold_in tags of the two key streams ("tr", "te").
_TEST_STREAM = 0x7465


def check_size(size: int) -> None:
  """Raises ``ValueError`` unless ``size`` is an odd int ``>= 5``."""
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 5 or size % 2 == 0:
    raise ValueError(f"maze size must be an odd integer >= 5, got {size!r}")


def check_rule(rule: str) -> None:
  """Raises ``ValueError`` unless ``rule`` is one of ``RULES``."""
  if rule not in RULES:
    raise ValueError(f"unknown maze reward rule {rule!r}; choose one of {RULES}")


def check_variant(variant: str) -> None:
  """Raises ``ValueError`` unless ``variant`` is one of ``VARIANTS``."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown maze generator variant {variant!r}; choose one of {VARIANTS}")


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
  """Static index arrays of the ``m x m`` cell graph (cell ``c = i m + j``).

  Returns cell coordinates ``[m^2, 2]``; per edge its two cells and its wall point; per cell and
  direction (up, down, left, right) the neighbouring cell (``m^2`` if none) and the edge
  between them (``num_edges`` if none).
  """
  m = num_cells(size)
  n = m * m
  cell_rc = np.array([(2 * i + 1, 2 * j + 1) for i in range(m) for j in range(m)], np.int32)
  ea, eb, wall_rc, edge_of = [], [], [], {}
  for i in range(m):
    for j in range(m):
      if j + 1 < m:  # Horizontal neighbour: wall point to the right of cell (i, j).
        edge_of[(i * m + j, i * m + j + 1)] = len(ea)
        ea.append(i * m + j), eb.append(i * m + j + 1), wall_rc.append((2 * i + 1, 2 * j + 2))
      if i + 1 < m:  # Vertical neighbour: wall point below cell (i, j).
        edge_of[(i * m + j, (i + 1) * m + j)] = len(ea)
        ea.append(i * m + j), eb.append((i + 1) * m + j), wall_rc.append((2 * i + 2, 2 * j + 1))
  num_edges = len(ea)
  nb = np.full((n, 4), n, np.int32)
  eid = np.full((n, 4), num_edges, np.int32)
  for i in range(m):
    for j in range(m):
      for d, (di, dj) in enumerate(_MOVE_DELTAS):
        if 0 <= i + di < m and 0 <= j + dj < m:
          a, b = i * m + j, (i + di) * m + j + dj
          nb[a, d] = b
          eid[a, d] = edge_of[(min(a, b), max(a, b))]
  return (cell_rc, np.array(ea, np.int32), np.array(eb, np.int32), np.array(wall_rc, np.int32),
          nb, eid)


def _check_extra_openings(size: int, extra_openings: int) -> None:
  if (isinstance(extra_openings, bool) or not isinstance(extra_openings, (int, np.integer))
      or not 0 <= extra_openings <= max_extra_openings(size)):
    raise ValueError(
        f"extra_openings must be an int in [0, {max_extra_openings(size)}] for size {size}, "
        f"got {extra_openings!r}")


def _below(bits: jax.Array, count: jax.Array) -> jax.Array:
  """``bits mod count`` as ``int32``: a uniform draw from ``[0, count)`` (bias ``< count / 2^32``)."""
  return (bits % jnp.maximum(count, 1).astype(jnp.uint32)).astype(jnp.int32)


# How the two Prim loops keep every step O(1). XLA updates an array of the loop state in place
# only if no value read from the array's previous version is still needed after the update; a
# read such as ``front[r]`` feeding both a later read and a later write is recomputed inside
# each consumer, which keeps the old version alive and costs a full copy of the array per step
# (O(cells) per step: one 401 x 401 maze took 0.66 s, 5x the per-cell time of a 65 x 65 one).
# So each step is split into a *write* phase that uses only scalars carried in the loop state
# and a *look* phase, at the end of the step, that reads from the arrays just written the
# scalars the next step needs: every array is written only from the carry and read only after
# its last write. A write that must not land goes to a free slot or rewrites the old value, so
# no ``mode="drop"`` scatter is needed: a scatter would also stop XLA:CPU from compiling the
# whole loop into one kernel (10x slower per step). One 401 x 401 maze now takes about 10 ms
# with either variant, 1001 x 1001 about 80 ms (BUILD_NOTES.md).

_OUTSIDE, _FRONTIER, _IN_TREE, _NO_CELL = 0, 1, 2, 3  # `_prim_from_start`'s cell states.


def _get(a: jax.Array, i: jax.Array) -> jax.Array:
  return jax.lax.dynamic_index_in_dim(a, i, keepdims=False)


def _put(a: jax.Array, i: jax.Array, v) -> jax.Array:
  return jax.lax.dynamic_update_index_in_dim(a, jnp.asarray(v, a.dtype), i, 0)


def _prim_from_start(bits: jax.Array, size: int) -> jax.Array:
  """The authors' Prim: cell frontier grown from cell 0 = (1, 1). Returns the carved edges.

  The frontier is kept as an unordered array ``front[:count]`` of distinct cells; picking the
  uniformly random entry ``r`` and moving the last entry into its slot removes it in O(1).
  ``state[c]`` is ``_OUTSIDE``, ``_FRONTIER`` or ``_IN_TREE``; ``state[n] = _NO_CELL`` stands
  for the missing neighbours of border cells.
  """
  _, ea_np, _, _, nb_np, eid_np = _layout(size)
  n, num_edges = nb_np.shape[0], ea_np.shape[0]
  nb, eid = jnp.asarray(nb_np), jnp.asarray(eid_np)
  bits = jnp.concatenate([bits, jnp.zeros((1, 2), bits.dtype)])  # The last look reads row n - 1.

  def push_neighbours(nbs, seen, state, front, count):
    """Appends the neighbours ``nbs`` of the new tree cell that are outside (``seen`` = their
    states before the step); the others are rewritten unchanged and their slot is reused."""
    for d in range(4):
      new = seen[d] == _OUTSIDE
      state = _put(state, nbs[d], jnp.where(new, _FRONTIER, seen[d]))
      front = _put(front, count, nbs[d])  # Slot `count` is free: harmless if not new.
      count = count + new.astype(jnp.int32)
    return state, front, count

  def look(t, state, front, count):
    """What step ``t`` reads: the pick, the cell, the last entry, the neighbours' states."""
    r = _below(bits[t, 0], count)
    cell = _get(front, r)
    seen = jnp.stack([_get(state, nb[cell, d]) for d in range(4)])
    return r, cell, _get(front, count - 1), seen

  state = jnp.full((n + 1,), _OUTSIDE, jnp.int8).at[n].set(_NO_CELL).at[0].set(_IN_TREE)
  state, front, count = push_neighbours(nb[0], state[nb[0]], state, jnp.zeros((n,), jnp.int32),
                                        jnp.int32(0))
  carved = jnp.zeros((num_edges,), bool)

  def step(t, carry):
    state, front, count, carved, (r, cell, last, seen) = carry
    front = _put(front, r, last)
    count = count - 1
    joinable = seen == _IN_TREE
    s = _below(bits[t, 1], jnp.sum(joinable, dtype=jnp.int32))
    d = jnp.argmax(joinable & (jnp.cumsum(joinable) == s + 1))
    carved = _put(carved, eid[cell, d], True)
    state = _put(state, cell, _IN_TREE)
    state, front, count = push_neighbours(nb[cell], seen, state, front, count)
    return state, front, count, carved, look(t + 1, state, front, count)

  carry = (state, front, count, carved, look(0, state, front, count))
  return jax.lax.fori_loop(0, n - 1, step, carry)[3]


def _prim_random_root(bits: jax.Array, root: jax.Array, size: int) -> jax.Array:
  """Earlier versions' Prim: edge frontier grown from cell ``root``. Returns the carved edges.

  The frontier edges are an unordered array ``front[:count]`` with ``pos[e]`` the slot of edge
  ``e``, so an edge that stops being a frontier edge is swap-removed in O(1). Both arrays have
  a spare last slot ``num_edges``; ``in_tree[n]`` (False) stands for missing neighbours.
  """
  _, ea_np, eb_np, _, nb_np, eid_np = _layout(size)
  n, num_edges = nb_np.shape[0], ea_np.shape[0]
  ea, eb, nb, eid = (jnp.asarray(a) for a in (ea_np, eb_np, nb_np, eid_np))
  spare = num_edges
  bits = jnp.concatenate([bits, jnp.zeros((1, 2), bits.dtype)])  # The last look reads row n - 1.

  def update_frontier(cell, inside, pos_of, tail, front, pos, count):
    """``cell`` just joined: its edges to the maze leave the frontier, the others enter it.

    Sequential, as the removals must see each other's swaps. The values read are those
    ``look`` took before the step (``pos_of[d]``: slot of the edge in direction ``d``;
    ``tail[k] = front[count - 1 - k]``), overridden by this step's own earlier writes.
    """
    count0, tail = count, jnp.stack(tail)
    front_log, pos_log = [], []

    def read(log, i, v):
      for j, w in log:
        v = jnp.where(i == j, w, v)
      return v

    def write(a, log, i, v):
      log.append((i, v))
      return _put(a, i, v)

    for d in range(4):
      edge, exists = eid[cell, d], nb[cell, d] < n
      remove, add = exists & inside[d], exists & ~inside[d]
      p = read(pos_log, edge, pos_of[d])
      i = jnp.maximum(count - 1, 0)
      last = read(front_log, i, tail[jnp.clip(count0 - 1 - i, 0, 3)])
      # Remove: front[p] = last, pos[last] = p. Add: front[count] = edge, pos[edge] = count.
      front = write(front, front_log, jnp.where(remove, p, jnp.where(add, count, spare)),
                    jnp.where(remove, last, edge))
      pos = write(pos, pos_log, jnp.where(remove, last, jnp.where(add, edge, spare)),
                  jnp.where(remove, p, count))
      count = count + add.astype(jnp.int32) - remove.astype(jnp.int32)
    return front, pos, count

  def look_around(cell, in_tree, front, pos, count):
    inside = tuple(_get(in_tree, nb[cell, d]) for d in range(4))
    pos_of = tuple(_get(pos, eid[cell, d]) for d in range(4))
    tail = tuple(_get(front, jnp.maximum(count - 1 - k, 0)) for k in range(4))
    return inside, pos_of, tail

  def look(t, in_tree, front, pos, count):
    """What step ``t`` reads: the edge picked, the cell it adds, and ``look_around`` it."""
    edge = _get(front, _below(bits[t, 0], count))
    a, b = ea[edge], eb[edge]
    cell = jnp.where(_get(in_tree, a), b, a)
    return (edge, cell) + look_around(cell, in_tree, front, pos, count)

  in_tree = jnp.zeros((n + 1,), bool).at[root].set(True)
  front = pos = jnp.zeros((num_edges + 1,), jnp.int32)
  front, pos, count = update_frontier(root, *look_around(root, in_tree, front, pos, 0), front,
                                      pos, jnp.int32(0))
  carved = jnp.zeros((num_edges,), bool)

  def step(t, carry):
    in_tree, front, pos, count, carved, (edge, cell, inside, pos_of, tail) = carry
    carved = _put(carved, edge, True)
    in_tree = _put(in_tree, cell, True)
    front, pos, count = update_frontier(cell, inside, pos_of, tail, front, pos, count)
    return in_tree, front, pos, count, carved, look(t + 1, in_tree, front, pos, count)

  carry = (in_tree, front, pos, count, carved, look(0, in_tree, front, pos, count))
  return jax.lax.fori_loop(0, n - 1, step, carry)[4]


# Batching. Under ``vmap`` every ``_put`` / ``_get`` has a per-maze index and becomes a scatter /
# gather over the batch, and XLA:CPU does not compile a loop whose body scatters into one kernel
# (see above): each step then runs some thirty separate kernels, a fixed 5-20 us per step
# whatever the batch, and the batch's arrays leave the cache once B x cells passes about 10^5.
# A batch of B mazes of n cells cost about n (0.15 us + 6 us / B) per maze, faster growth than
# n wherever B shrinks as n grows (257 x 257: 1.5 us per cell at B = 16, 1.9 at B = 4; random
# root 3.5 and 5.2; one maze alone 0.1-0.3 us). On CPU the batching rule below therefore runs
# the single-maze loop once per maze in sequence (``lax.map``: one kernel per maze, about 3 us
# of fixed cost per maze) unless the mazes are tiny and the batch large; other platforms keep
# the vectorised loop (on a GPU every step is a kernel launch either way). The mazes are the
# same: each is a function of its own bits only.


def _map_is_faster(batch: int, n: int) -> bool:
  """Whether ``lax.map`` beats the vectorised loop on CPU for ``batch`` mazes of ``n`` cells.

  Per cell, map against vectorised, on the 2-core build CPU under load: 9 x 9 at B = 16384 0.2
  / 0.16 us (random root 0.4 / 0.33); 17 x 17 at B = 128 0.2 / 0.2 us (random root at B = 256
  0.19 / 0.15), at B = 4096 0.15 / 0.15 us (0.16 / 0.3); 65 x 65 at B = 64 0.14 / 0.2 us
  (0.13 / 0.5); 257 x 257 at B = 4 0.2 / 1.9 us (0.12 / 5.2). Near the boundary the two are
  within 30% of each other.
  """
  return n >= 64 or batch < 2 * n


@functools.lru_cache(maxsize=None)
def _batchable_prim(size: int, variant: str):
  """``(bits, root) -> carved`` of ``variant`` with the batching rule described above."""

  def single(bits, root):
    if variant == "from_start":
      return _prim_from_start(bits, size)
    return _prim_random_root(bits, root, size)

  prim = jax.custom_batching.custom_vmap(single)

  @prim.def_vmap
  def _rule(axis_size, in_batched, bits, root):
    if not any(in_batched):
      return single(bits, root), False
    bits, root = (x if b else jnp.broadcast_to(x, (axis_size,) + x.shape)
                  for x, b in zip((bits, root), in_batched))
    vectorised = jax.vmap(single)
    if not _map_is_faster(axis_size, num_cells(size) ** 2):
      return vectorised(bits, root), True
    mapped = lambda b, r: jax.lax.map(lambda a: prim(*a), (b, r))  # `prim`: nested vmaps too.
    return jax.lax.platform_dependent(bits, root, cpu=mapped, default=vectorised), True

  return prim


@functools.partial(jax.jit, static_argnames=("size", "extra_openings", "variant"))
def generate(key: jax.Array, size: int = 17, extra_openings: int = 0,
             variant: str = "from_start") -> jax.Array:
  """A random maze, ``int8 [size, size]`` of cell codes; deterministic per key.

  Args:
    key: a PRNG key.
    size: odd grid side ``>= 5`` (static).
    extra_openings: number of additional passages to open, ``0 <= k <= (m - 1)^2`` (static),
      uniformly without replacement among the closed ones.
    variant: ``"from_start"`` (the authors' generator: cell-frontier Prim grown from the start
      cell; paper section 6.2) or ``"random_root"`` (edge-frontier Prim grown from a uniformly
      random cell, the generator of earlier versions); see the module docstring (static).

  Returns:
    The grid: border and pillars ``CELL_WALL``, start ``(1, 1)`` ``CELL_START``, goal
    ``(size - 2, size - 2)`` ``CELL_GOAL``, other open points ``CELL_PATH``.
  """
  check_size(size)
  _check_extra_openings(size, extra_openings)
  check_variant(variant)
  cell_rc, ea, _, wall_rc, _, _ = _layout(size)
  m = num_cells(size)
  num_edges = ea.shape[0]
  k_root, k_prim, k_open = jax.random.split(key, 3)
  bits = jax.random.bits(k_prim, (m * m - 1, 2), jnp.uint32)
  root = jnp.int32(0) if variant == "from_start" else jax.random.randint(k_root, (), 0, m * m)
  carved = _batchable_prim(size, variant)(bits, root)
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

  ``L`` moves, then ``DONE <eos>``, then ``<pad>`` (the supervised targets of the paper's first
  stage). From each point the walk takes the first of ``UP, DOWN, LEFT, RIGHT`` whose neighbour
  is one step closer to the goal (BFS distances from the goal), so ties between equally short
  paths break deterministically. An unreachable goal gives ``DONE <eos>`` (reward 0). The length
  bound holds for mazes (pillars closed); for a grid whose shortest path is longer than
  ``2 m^2 - 2`` the sequence is truncated (no ``DONE``).
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


def _first(mask: jax.Array) -> jax.Array:
  """Index of the first True of a 1-D mask, its length if none."""
  return jnp.where(jnp.any(mask), jnp.argmax(mask), mask.shape[0])


def _walk(grid: jax.Array, tokens: jax.Array, moving: jax.Array):
  """Positions after each token when the tokens where ``moving`` are walked from the start.

  Returns, per token, whether it is a walked move that leaves the grid, one that enters a wall
  point, and one that enters the goal. Only events up to the first failure are meaningful.
  """
  size = grid.shape[-1]
  deltas = jnp.asarray(_MOVE_DELTAS)[jnp.clip(tokens - UP, 0, 3)]
  deltas = jnp.where(moving[:, None], deltas, 0)
  positions = jnp.array(start_position(size), jnp.int32) + jnp.cumsum(deltas, axis=0)
  inside = jnp.all((positions >= 0) & (positions < size), axis=1)
  clipped = jnp.clip(positions, 0, size - 1)
  wall = grid[clipped[:, 0], clipped[:, 1]] == CELL_WALL
  goal = jnp.all(positions == jnp.array(goal_position(size), jnp.int32), axis=1)
  return moving & ~inside, moving & inside & wall, moving & goal, positions


def _outcome_first_arrival(grid: jax.Array, tokens: jax.Array) -> jax.Array:
  """The authors' verifier (module docstring), as an outcome code."""
  n = tokens.shape[-1]
  idx = jnp.arange(n)
  skipped = (tokens < 0) | (tokens >= VOCAB_SIZE)
  for s in SKIPPED_TOKENS:
    skipped = skipped | (tokens == s)
  first_done = _first(tokens == DONE)
  before = idx < first_done
  is_move = (tokens >= UP) & (tokens <= RIGHT)
  bad = jnp.any(before & ~skipped & ~is_move)
  out, wall, goal, _ = _walk(grid, tokens, before & is_move)
  first_out, first_wall, first_goal = _first(out), _first(wall), _first(goal)
  first_fail = jnp.minimum(first_out, first_wall)
  walk_code = jnp.where(
      first_goal < first_fail, OUTCOME_ID["success"],
      jnp.where(first_fail == n, OUTCOME_ID["wrong_end"],
                jnp.where(first_out < first_wall, OUTCOME_ID["out_of_bounds"], OUTCOME_ID["wall"])))
  code = jnp.where(first_done == n, OUTCOME_ID["no_done"],
                   jnp.where(bad, OUTCOME_ID["invalid_token"], walk_code))
  return code.astype(jnp.int32)


def _outcome_end_on_goal(grid: jax.Array, tokens: jax.Array) -> jax.Array:
  """The earlier strict verifier: token by token, the walk must end on the goal at ``DONE``."""
  size = grid.shape[-1]
  n = tokens.shape[-1]
  idx = jnp.arange(n)
  first_done = _first(tokens == DONE)
  is_move = (tokens >= UP) & (tokens <= RIGHT)
  first_bad_token = _first((idx < first_done) & ~is_move)
  walking = idx < jnp.minimum(first_done, first_bad_token)
  out, wall, _, positions = _walk(grid, tokens, walking)
  first_out, first_wall = _first(out), _first(wall)
  at_goal = jnp.all(positions[-1] == jnp.array(goal_position(size), jnp.int32))
  first_fail = jnp.minimum(jnp.minimum(first_bad_token, first_out), first_wall)
  fail_code = jnp.where(
      first_fail == first_bad_token, OUTCOME_ID["invalid_token"],
      jnp.where(first_fail == first_out, OUTCOME_ID["out_of_bounds"], OUTCOME_ID["wall"]))
  code = jnp.where(
      first_fail < first_done, fail_code,
      jnp.where(first_done == n, OUTCOME_ID["no_done"],
                jnp.where(at_goal, OUTCOME_ID["success"], OUTCOME_ID["wrong_end"])))
  return code.astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("rule",))
def outcome(grid: jax.Array, response_tokens: jax.Array, rule: str = "first_arrival") -> jax.Array:
  """Why a response earns its reward: an index into ``OUTCOMES`` (``int32`` scalar).

  Rule ``"first_arrival"`` (the authors' verifier; paper section 6.2), checked in this order:
  ``no_done`` (no ``DONE`` among the judged tokens), ``invalid_token`` (a judged token before it
  is not a move), then the walk: ``success`` if it enters the goal before any failing move,
  otherwise ``wall`` / ``out_of_bounds`` for the first failing move, or ``wrong_end``. Judged
  tokens: all but ``SKIPPED_TOKENS`` and ids outside the vocabulary.

  Rule ``"end_on_goal"`` (earlier versions): read token by token, the first event decides: a
  non-move before any ``DONE`` is ``invalid_token``, a move onto a wall point ``wall``, off the
  grid ``out_of_bounds``; a walk that reaches the first ``DONE`` unharmed is ``success`` if it
  ends on the goal and ``wrong_end`` otherwise; a clean walk of moves without ``DONE`` is
  ``no_done``.

  Args:
    grid: ``[size, size]`` cell codes.
    response_tokens: ``int [R]`` response token ids (any ids; any ``R >= 1``).
    rule: ``"first_arrival"`` or ``"end_on_goal"`` (static).
  """
  check_rule(rule)
  size = grid.shape[-1]
  check_size(size)
  tokens = jnp.asarray(response_tokens).astype(jnp.int32)
  if rule == "first_arrival":
    return _outcome_first_arrival(grid, tokens)
  return _outcome_end_on_goal(grid, tokens)


@functools.partial(jax.jit, static_argnames=("rule",))
def reward(grid: jax.Array, response_tokens: jax.Array, rule: str = "first_arrival") -> jax.Array:
  """The verifiable binary reward of a response, ``float32`` scalar in ``{0, 1}``.

  Default rule ``"first_arrival"`` (the authors' verifier): 1 iff the judged tokens (all but
  ``<pad> <bos> <eos> <unk>``, the newline character and ids outside the vocabulary) contain a
  ``DONE``, the ones before it are all moves, and their walk from the start enters the goal
  before any move into a wall or off the grid. ``rule="end_on_goal"``: the stricter verifier of
  earlier versions (see ``outcome``). Jittable and vmappable; never raises.

  Args:
    grid: ``[size, size]`` cell codes.
    response_tokens: ``int [R]`` response token ids (any ids; any ``R >= 1``).
    rule: ``"first_arrival"`` or ``"end_on_goal"`` (static).
  """
  return (outcome(grid, response_tokens, rule) == OUTCOME_ID["success"]).astype(jnp.float32)


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


@functools.partial(jax.jit, static_argnames=("size", "extra_openings", "variant"))
def train_mazes(seed, indices: jax.Array, size: int = 17, extra_openings: int = 0,
                variant: str = "from_start") -> jax.Array:
  """Training mazes number ``indices`` of the stream ``seed``: ``int8 [*indices.shape, size, size]``.

  Maze ``i`` is ``generate(fold_in(key_train(seed), i), size, extra_openings, variant)`` or its
  transpose, whichever is not held out, so it never equals a test maze (module docstring).
  Deterministic per ``(seed, i)``. Indices are ``int32``, so one stream holds ``2^31`` mazes.
  """
  key = _stream_key(seed, _TRAIN_STREAM)
  indices = jnp.asarray(indices, jnp.int32)

  def one(i):
    g = generate(jax.random.fold_in(key, i), size, extra_openings, variant)
    return jnp.where(is_held_out(g), g.T, g)

  flat = jax.vmap(one)(indices.reshape(-1))
  return flat.reshape(indices.shape + (size, size))


@functools.partial(jax.jit, static_argnames=("batch_size", "size", "extra_openings", "variant"))
def train_batch(seed, step, batch_size: int, size: int = 17, extra_openings: int = 0,
                variant: str = "from_start") -> jax.Array:
  """The training batch of ``step``: mazes ``step * batch_size + [0, batch_size)`` of the stream.

  A resumed run regenerates exactly the same batch from the step number.
  """
  start = jnp.asarray(step, jnp.int32) * batch_size
  return train_mazes(seed, start + jnp.arange(batch_size, dtype=jnp.int32), size,
                     extra_openings, variant)


@functools.partial(jax.jit, static_argnames=("size", "extra_openings", "variant"))
def _test_candidates(seed, indices, size, extra_openings, variant):
  key = _stream_key(seed, _TEST_STREAM)

  def one(i):
    g = generate(jax.random.fold_in(key, i), size, extra_openings, variant)
    h, ht = maze_hash(g), maze_hash(g.T)
    return jnp.where(h < ht, g, g.T), h != ht

  return jax.vmap(one)(indices)


def test_mazes(num: int = 256, size: int = 17, seed: int = 0, extra_openings: int = 0,
               max_candidates: int = 1 << 20, variant: str = "from_start") -> jax.Array:
  """``num`` distinct held-out mazes, ``int8 [num, size, size]``; deterministic per arguments.

  Candidates ``generate(fold_in(key_test(seed), j), ...)`` for ``j = 0, 1, ...`` are oriented
  into the held-out half (the one of ``G, G^T`` with the smaller hash), symmetric ones dropped,
  and the first ``num`` distinct ones kept. Host function (run once per experiment).

  Raises:
    ValueError: if fewer than ``num`` distinct held-out mazes turn up among ``max_candidates``
      candidates (small sizes have few mazes: 7 x 7 has 192 perfect mazes in all).
  """
  check_size(size)
  _check_extra_openings(size, extra_openings)
  check_variant(variant)
  if num < 1:
    raise ValueError(f"num must be >= 1, got {num}")
  chunk = 4096
  seen: dict[bytes, None] = {}
  out = []
  for begin in range(0, max_candidates, chunk):
    grids, valid = _test_candidates(seed, jnp.arange(begin, begin + chunk, dtype=jnp.int32),
                                    size, extra_openings, variant)
    grids, valid = np.asarray(grids), np.asarray(valid)
    for g, ok in zip(grids, valid):
      b = g.tobytes()
      if ok and b not in seen:
        seen[b] = None
        out.append(g)
        if len(out) == num:
          return jnp.asarray(np.stack(out))
  raise ValueError(
      f"only {len(out)} distinct held-out {size}x{size} mazes (extra_openings={extra_openings}, "
      f"variant={variant!r}) among {max_candidates} candidates; need num={num}")


# Keep pytest from collecting `test_mazes` as a test when a test module imports it by name.
test_mazes.__test__ = False
