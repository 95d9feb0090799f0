"""Random mazes: randomised Prim's algorithm in pure JAX (paper section 6.2, appendix E.1).

``generate`` has two variants (grid layout in ``tokens``):

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
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from maxrl_jax.envs.maze.tokens import (_MOVE_DELTAS, CELL_GOAL, CELL_PATH, CELL_START,
                                        CELL_WALL, GRID_DTYPE, check_size, num_cells)

# Generator variants (module docstring); the first is the default.
VARIANTS = ("from_start", "random_root")


def check_variant(variant: str) -> None:
  """Raises ``ValueError`` unless ``variant`` is one of ``VARIANTS``."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown maze generator variant {variant!r}; choose one of {VARIANTS}")


def max_extra_openings(size: int) -> int:
  """Closed passages left in a perfect maze: ``2 m (m - 1) - (m^2 - 1) = (m - 1)^2``."""
  return (num_cells(size) - 1) ** 2


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
