"""The train/test split of the mazes (paper section 6.2, appendix E.1).

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

import jax
import jax.numpy as jnp
import numpy as np

from maxrl_jax.envs.maze.generators import _check_extra_openings, check_variant, generate
from maxrl_jax.envs.maze.tokens import CELL_WALL, check_size

_HASH_SEED = 0x9747B28C
_TRAIN_STREAM = 0x7472   # fold_in tags of the two key streams ("tr", "te").
_TEST_STREAM = 0x7465


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
