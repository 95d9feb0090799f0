"""Tests of the maze environment against independent plain-Python references."""

import collections
import itertools

import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maxrl_jax.envs import maze as M

MOVES = {"UP": (-1, 0), "DOWN": (1, 0), "LEFT": (0, -1), "RIGHT": (0, 1)}
NAME_OF = {v: k for k, v in M.VOCAB.items()}


# ---------------------------------------------------------------------------------------------
# Plain-Python references (no JAX, no code shared with the module).


def py_bfs_length(grid):
  """Moves of a shortest start-to-goal path over open points, -1 if none."""
  grid = np.asarray(grid)
  size = grid.shape[0]
  start, goal = (1, 1), (size - 2, size - 2)
  dist = {start: 0}
  queue = collections.deque([start])
  while queue:
    r, c = queue.popleft()
    if (r, c) == goal:
      return dist[(r, c)]
    for dr, dc in MOVES.values():
      nr, nc = r + dr, c + dc
      if 0 <= nr < size and 0 <= nc < size and grid[nr][nc] != 0 and (nr, nc) not in dist:
        dist[(nr, nc)] = dist[(r, c)] + 1
        queue.append((nr, nc))
  return -1


def py_outcome(grid, tokens):
  """Reference verifier, token by token."""
  grid = np.asarray(grid)
  size = grid.shape[0]
  r, c = 1, 1
  for t in tokens:
    name = NAME_OF.get(int(t))
    if name == "DONE":
      return "success" if (r, c) == (size - 2, size - 2) else "wrong_end"
    if name not in MOVES:
      return "invalid_token"
    r, c = r + MOVES[name][0], c + MOVES[name][1]
    if not (0 <= r < size and 0 <= c < size):
      return "out_of_bounds"
    if grid[r][c] == 0:
      return "wall"
  return "no_done"


def py_murmur3(grid):
  """MurmurHash3_x86_32 (seed 0x9747b28c) of the row-major open bitmap packed in LE words."""
  bits = [int(v != 0) for v in np.asarray(grid).reshape(-1)]
  bits += [0] * (-len(bits) % 32)
  mask = 0xFFFFFFFF
  rotl = lambda x, r: ((x << r) | (x >> (32 - r))) & mask
  h = 0x9747B28C
  for w in range(len(bits) // 32):
    k = sum(b << i for i, b in enumerate(bits[32 * w:32 * w + 32]))
    k = rotl((k * 0xCC9E2D51) & mask, 15) * 0x1B873593 & mask
    h = (rotl(h ^ k, 13) * 5 + 0xE6546B64) & mask
  h ^= len(bits) // 8
  h ^= h >> 16
  h = (h * 0x85EBCA6B) & mask
  h ^= h >> 13
  h = (h * 0xC2B2AE35) & mask
  return h ^ (h >> 16)


def check_structure(grid, extra_openings):
  """Border walls, pillars walls, start/goal, connectivity, edge count, no 2x2 open block."""
  g = np.asarray(grid)
  size = g.shape[0]
  assert g.dtype == np.int8 and g.shape == (size, size)
  assert set(np.unique(g)) <= {0, 1, 2, 3}
  assert (g[0] == 0).all() and (g[-1] == 0).all() and (g[:, 0] == 0).all() and (g[:, -1] == 0).all()
  assert g[1, 1] == M.CELL_START and g[size - 2, size - 2] == M.CELL_GOAL
  assert (g == M.CELL_START).sum() == 1 and (g == M.CELL_GOAL).sum() == 1
  assert (g[0::2, 0::2] == 0).all()  # Pillars.
  assert (g[1::2, 1::2] != 0).all()  # Every cell is open.
  is_open = g != 0
  two_by_two = is_open[:-1, :-1] & is_open[1:, :-1] & is_open[:-1, 1:] & is_open[1:, 1:]
  assert not two_by_two.any()
  nodes = int(is_open.sum())
  edges = int((is_open[:, :-1] & is_open[:, 1:]).sum() + (is_open[:-1] & is_open[1:]).sum())
  assert edges == nodes - 1 + extra_openings
  # Connectivity by flood fill.
  open_pts = {tuple(p) for p in np.argwhere(is_open)}
  seen, stack = {(1, 1)}, [(1, 1)]
  while stack:
    r, c = stack.pop()
    for dr, dc in MOVES.values():
      q = (r + dr, c + dc)
      if q in open_pts and q not in seen:
        seen.add(q)
        stack.append(q)
  assert seen == open_pts


def tokens_of(names):
  return np.array([M.VOCAB[n] for n in names.split()], np.int32)


_batched_reward = jax.jit(jax.vmap(M.reward))
_batched_outcome = jax.jit(jax.vmap(M.outcome))
_batched_sp = jax.jit(jax.vmap(M.shortest_path))
_batched_len = jax.jit(jax.vmap(M.shortest_path_length))


# ---------------------------------------------------------------------------------------------
# Vocabulary, sizes, tokenisation.


def test_vocab():
  assert len(M.VOCAB) == M.VOCAB_SIZE == 32
  assert sorted(M.VOCAB.values()) == list(range(32))
  for name in ("<pad>", "<bos>", "<eos>", "GRID_START", "GRID_END", "NEWLINE", "WALL", "PATH",
               "START", "GOAL", "PATH_START", "UP", "DOWN", "LEFT", "RIGHT", "DONE"):
    assert name in M.VOCAB
  assert M.MOVE_TOKENS == tuple(M.VOCAB[n] for n in ("UP", "DOWN", "LEFT", "RIGHT"))
  assert M.STOP_TOKENS == (M.VOCAB["<eos>"],)


@pytest.mark.parametrize("size", [4, 3, 1, 0, -7, 16, 18, 2.0, 17.0, True, "17"])
def test_bad_sizes_raise(size):
  with pytest.raises(ValueError):
    M.generate(jax.random.key(0), size)
  with pytest.raises(ValueError):
    M.prompt_length(size)


def test_bad_extra_openings_raise():
  with pytest.raises(ValueError):
    M.generate(jax.random.key(0), 7, extra_openings=5)  # (m - 1)^2 = 4 for size 7.
  with pytest.raises(ValueError):
    M.generate(jax.random.key(0), 7, extra_openings=-1)
  with pytest.raises(ValueError):
    M.test_mazes(num=3, size=5)  # 5x5 has 4 perfect mazes, 2 of them held out.


def test_lengths():
  assert M.prompt_length(17) == 310 <= 320  # The paper's max prompt.
  assert M.max_response_length(17) == 128 <= 180  # The paper's max response.
  assert M.max_response_length(7) == 18
  assert M.max_extra_openings(17) == 49


def test_paper_example_7x7():
  """SPEC 4.3's 7x7 example: RIGHT x4, DOWN x4 reaches the goal."""
  grid = np.array([[0] * 7, [0, 2, 1, 1, 1, 1, 0], [0, 1, 0, 0, 0, 1, 0], [0, 1, 1, 1, 0, 1, 0],
                   [0, 1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 3, 0], [0] * 7], np.int8)
  answer = "RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DOWN DONE <eos>"
  sp = np.asarray(M.shortest_path(jnp.asarray(grid)))
  assert M.decode(sp[:10]) == answer
  assert (sp[10:] == M.PAD).all() and sp.shape == (M.max_response_length(7),)
  assert float(M.reward(grid, tokens_of(answer))) == 1.0
  prompt = np.asarray(M.prompt_tokens(jnp.asarray(grid)))
  assert prompt.shape == (M.prompt_length(7),) and prompt.dtype == np.int32
  text = M.decode(prompt)
  assert text.startswith("<bos> GRID_START WALL WALL WALL WALL WALL WALL WALL NEWLINE "
                         "WALL START PATH PATH PATH PATH WALL NEWLINE ")
  assert text.endswith("WALL PATH WALL PATH WALL GOAL WALL NEWLINE "
                       "WALL WALL WALL WALL WALL WALL WALL NEWLINE GRID_END PATH_START")


def test_prompt_tokens_layout():
  grids = M.train_mazes(3, jnp.arange(4), 9)
  prompts = np.asarray(jax.vmap(M.prompt_tokens)(grids))
  assert prompts.shape == (4, M.prompt_length(9))
  body = prompts[:, 2:-2].reshape(4, 9, 10)
  np.testing.assert_array_equal(body[:, :, -1], M.VOCAB["NEWLINE"])
  np.testing.assert_array_equal(body[:, :, :-1], np.asarray(grids) + M.VOCAB["WALL"])
  assert (prompts[:, :2] == [M.BOS, M.VOCAB["GRID_START"]]).all()
  assert (prompts[:, -2:] == [M.VOCAB["GRID_END"], M.VOCAB["PATH_START"]]).all()


# ---------------------------------------------------------------------------------------------
# Generator.


@pytest.mark.parametrize("size,extra", [(5, 0), (9, 0), (17, 0), (5, 1), (11, 3), (17, 49)])
def test_generated_mazes_are_valid(size, extra):
  keys = jax.random.split(jax.random.key(size * 100 + extra), 200)
  grids = np.asarray(jax.vmap(lambda k: M.generate(k, size, extra))(keys))
  for g in grids:
    check_structure(g, extra)


def test_generate_deterministic_jit_vmap_consistent():
  key = jax.random.key(42)
  a = M.generate(key, 9)
  b = M.generate(key, 9)
  np.testing.assert_array_equal(a, b)
  keys = jax.random.split(key, 5)
  batched = jax.vmap(lambda k: M.generate(k, 9))(keys)
  for i in range(5):
    np.testing.assert_array_equal(batched[i], M.generate(keys[i], 9))
  assert not np.array_equal(batched[0], batched[1])
  # Also works on legacy raw uint32 keys.
  raw = M.generate(jax.random.PRNGKey(1), 9)
  check_structure(raw, 0)


def test_generate_compiles_once_per_size():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def gen(key):
    return M.generate(key, 11)

  for i in range(4):
    gen(jax.random.key(i)).block_until_ready()


def test_generator_covers_every_perfect_7x7_maze():
  """All 192 spanning trees of the 3x3 cell grid appear, and the split is exactly the hash rule."""
  m = 3
  cells = [(i, j) for i in range(m) for j in range(m)]
  edges = [((i, j), (i, j + 1)) for i in range(m) for j in range(m - 1)]
  edges += [((i, j), (i + 1, j)) for i in range(m - 1) for j in range(m)]
  all_mazes = set()
  for subset in itertools.combinations(edges, m * m - 1):
    parent = {c: c for c in cells}

    def find(c):
      while parent[c] != c:
        c = parent[c]
      return c

    acyclic = True
    for a, b in subset:
      ra, rb = find(a), find(b)
      if ra == rb:
        acyclic = False
        break
      parent[ra] = rb
    if not acyclic:
      continue
    g = np.zeros((7, 7), np.int8)
    for i, j in cells:
      g[2 * i + 1, 2 * j + 1] = 1
    for (i, j), (k, l) in subset:
      g[i + k + 1, j + l + 1] = 1
    g[1, 1], g[5, 5] = 2, 3
    all_mazes.add(g.tobytes())
  assert len(all_mazes) == 192  # Kirchhoff's count for the 3x3 grid graph.
  train_expected = {b for b in all_mazes
                    if py_murmur3(np.frombuffer(b, np.int8).reshape(7, 7))
                    >= py_murmur3(np.frombuffer(b, np.int8).reshape(7, 7).T)}
  sampled = np.asarray(M.train_mazes(0, jnp.arange(20000), 7))
  sampled_set = {g.tobytes() for g in sampled}
  assert sampled_set == train_expected
  held = np.asarray(M.test_mazes(num=192 - len(train_expected), size=7))
  held_set = {g.tobytes() for g in held}
  assert held_set == all_mazes - train_expected


# ---------------------------------------------------------------------------------------------
# BFS oracle and verifier.


@pytest.mark.parametrize("size,extra,num", [(5, 0, 300), (9, 3, 1000), (17, 0, 1000),
                                            (17, 20, 300)])
def test_shortest_path_is_rewarded_and_shortest(size, extra, num):
  grids = M.train_mazes(size + extra, jnp.arange(num), size, extra)
  paths = _batched_sp(grids)
  assert paths.shape == (num, M.max_response_length(size)) and paths.dtype == jnp.int32
  np.testing.assert_array_equal(_batched_reward(grids, paths), 1.0)
  lengths = np.asarray(_batched_len(grids))
  grids, paths = np.asarray(grids), np.asarray(paths)
  for g, p, n in zip(grids, paths, lengths):
    assert n == py_bfs_length(g)
    assert all(t in M.MOVE_TOKENS for t in p[:n])
    assert p[n] == M.DONE and p[n + 1] == M.EOS and (p[n + 2:] == M.PAD).all()
    assert py_outcome(g, p) == "success"


def test_verifier_hand_cases():
  grid = jnp.asarray(np.array(
      [[0] * 7, [0, 2, 1, 1, 1, 1, 0], [0, 1, 0, 0, 0, 1, 0], [0, 1, 1, 1, 0, 1, 0],
       [0, 1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 3, 0], [0] * 7], np.int8))
  cases = {
      "RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DOWN DONE <eos>": "success",
      "RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DOWN DONE": "success",
      # Tokens after the first DONE are ignored.
      "RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DOWN DONE UP <bos> <eos>": "success",
      # A detour that ends on the goal succeeds.
      "DOWN UP RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DOWN DONE <eos>": "success",
      # Passing the goal and leaving it fails; so does stopping short.
      "RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DOWN UP DONE <eos>": "wrong_end",
      "RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DONE <eos>": "wrong_end",
      "DONE <eos>": "wrong_end",
      "RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DOWN <eos>": "invalid_token",
      "RIGHT RIGHT UP": "wall",
      "RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DOWN": "no_done",
      "DOWN DOWN RIGHT RIGHT RIGHT RIGHT DOWN DOWN DONE <eos>": "wall",
      "UP DONE <eos>": "wall",
      "RIGHT RIGHT RIGHT RIGHT <pad> DOWN DOWN DOWN DOWN DONE <eos>": "invalid_token",
      "RIGHT RIGHT RIGHT RIGHT GOAL DOWN DOWN DOWN DOWN DONE <eos>": "invalid_token",
      "<eos> RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DOWN DONE": "invalid_token",
  }
  # Padding after a DONE changes nothing, so those cases share one compiled shape.
  width = 16
  for text, expected in cases.items():
    toks = tokens_of(text)
    if M.DONE in toks:
      toks = np.pad(toks, (0, width - len(toks)), constant_values=M.PAD)
    assert py_outcome(grid, toks) == expected, text
    assert M.OUTCOMES[int(M.outcome(grid, toks))] == expected, text
    assert float(M.reward(grid, toks)) == float(expected == "success"), text
  # Out-of-vocabulary ids never raise and count as junk.
  for bad in ([-1, M.DONE], [32, M.DONE], [2**31 - 1, M.DONE], [-2**31, M.DONE]):
    toks = np.array(bad, np.int32)
    assert M.OUTCOMES[int(M.outcome(grid, toks))] == "invalid_token"
    assert float(M.reward(grid, toks)) == 0.0


def test_verifier_out_of_bounds():
  """With an open border point the walk can step off the grid."""
  grid = np.zeros((5, 5), np.int8)
  grid[1, 1:4] = 1
  grid[1:4, 3] = 1
  grid[1, 1], grid[3, 3] = 2, 3
  grid[0, 1] = 1  # Open border point above the start.
  g = jnp.asarray(grid)
  assert M.OUTCOMES[int(M.outcome(g, tokens_of("UP UP DOWN DONE")))] == "out_of_bounds"
  assert py_outcome(grid, tokens_of("UP UP DOWN DONE")) == "out_of_bounds"
  assert M.OUTCOMES[int(M.outcome(g, tokens_of("UP DOWN RIGHT RIGHT DOWN DOWN DONE")))] == "success"
  assert float(M.reward(g, tokens_of("UP UP DOWN DONE"))) == 0.0


def test_unreachable_goal_gives_done_only():
  grid = np.zeros((5, 5), np.int8)
  grid[1, 1], grid[3, 3] = 2, 3
  g = jnp.asarray(grid)
  assert int(M.shortest_path_length(g)) == -1 == py_bfs_length(grid)
  sp = np.asarray(M.shortest_path(g))
  assert sp[0] == M.DONE and sp[1] == M.EOS and float(M.reward(g, sp)) == 0.0


_FUZZ_SIZE, _FUZZ_LEN = 7, 24
_FUZZ_GRIDS = np.asarray(M.train_mazes(11, jnp.arange(64), _FUZZ_SIZE, 2))
_FUZZ_PATHS = np.asarray(_batched_sp(jnp.asarray(_FUZZ_GRIDS)))
_fuzz_outcome = jax.jit(M.outcome)
_token = st.one_of(st.sampled_from(M.MOVE_TOKENS + (M.DONE, M.EOS, M.PAD)),
                   st.integers(-3, 40))


@hypothesis.settings(max_examples=400, deadline=None, derandomize=True)
@hypothesis.given(index=st.integers(0, 63), mode=st.sampled_from(["random", "mutate"]),
                  data=st.data())
def test_verifier_fuzz_against_python(index, mode, data):
  grid = _FUZZ_GRIDS[index]
  if mode == "random":
    toks = data.draw(st.lists(_token, min_size=_FUZZ_LEN, max_size=_FUZZ_LEN))
  else:
    toks = list(np.pad(_FUZZ_PATHS[index], (0, _FUZZ_LEN - _FUZZ_PATHS.shape[1])))
    edits = data.draw(st.lists(st.tuples(st.integers(0, _FUZZ_LEN - 1), _token), max_size=3))
    for pos, tok in edits:
      toks[pos] = tok
  toks = np.array(toks, np.int32)
  expected = py_outcome(grid, toks)
  got = M.OUTCOMES[int(_fuzz_outcome(jnp.asarray(grid), jnp.asarray(toks)))]
  assert got == expected, (M.decode(toks), grid)


def test_reward_vmaps_over_rollouts_and_compiles_once():
  grids = M.train_mazes(0, jnp.arange(3), 9)
  paths = _batched_sp(grids)
  rollouts = jnp.stack([paths, jnp.roll(paths, 1, axis=1), jnp.zeros_like(paths)], axis=1)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def score(g, r):
    return jax.vmap(jax.vmap(M.reward, (None, 0)))(g, r)

  r = score(grids, rollouts)
  r2 = score(grids, rollouts[:, ::-1])
  chex.assert_shape(r, (3, 3))
  np.testing.assert_array_equal(r, [[1, 0, 0]] * 3)
  np.testing.assert_array_equal(r2, [[0, 0, 1]] * 3)


# ---------------------------------------------------------------------------------------------
# Dataset split.


def test_maze_hash_matches_python_murmur3():
  for size in (5, 9, 33):
    for i in range(3):
      g = np.asarray(M.generate(jax.random.key(i), size))
      assert int(M.maze_hash(jnp.asarray(g))) == py_murmur3(g)
      assert int(M.maze_hash(jnp.asarray(g.T))) == py_murmur3(g.T)


def test_train_batch_is_deterministic_by_step():
  a = M.train_batch(7, 3, 8, 9)
  b = M.train_batch(7, 3, 8, 9)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a, M.train_mazes(7, jnp.arange(24, 32), 9))
  assert not np.array_equal(a, M.train_batch(7, 4, 8, 9))
  assert not np.array_equal(a, M.train_batch(8, 3, 8, 9))
  for g in np.asarray(a):
    check_structure(g, 0)


def test_test_mazes_are_held_out_distinct_and_deterministic():
  t = M.test_mazes(num=256, size=17, seed=0)
  assert t.shape == (256, 17, 17) and t.dtype == jnp.int8
  np.testing.assert_array_equal(t, M.test_mazes(num=256, size=17, seed=0))
  t = np.asarray(t)
  assert len({g.tobytes() for g in t}) == 256
  for g in t[:32]:
    check_structure(g, 0)
    assert py_murmur3(g) < py_murmur3(g.T)
  assert bool(jnp.all(jax.vmap(M.is_held_out)(jnp.asarray(t))))


def _check_train_stream_disjoint(num, size=17, chunk=20000):
  test_sets = {g.tobytes() for seed in (0, 1) for g in np.asarray(M.test_mazes(256, size, seed))}
  held_out = jax.jit(jax.vmap(M.is_held_out))
  seen = set()
  for begin in range(0, num, chunk):
    grids = M.train_mazes(0, jnp.arange(begin, begin + chunk), size)
    assert not bool(jnp.any(held_out(grids)))
    packed = np.packbits(np.asarray(grids) != 0, axis=(1)).reshape(chunk, -1)
    for row in packed:
      b = row.tobytes()
      assert b not in seen  # Distinct training mazes.
      seen.add(b)
    for g in np.asarray(grids[:50]):
      assert py_murmur3(g) >= py_murmur3(g.T)
    assert not test_sets & {g.tobytes() for g in np.asarray(grids)}
  assert len(seen) == num


def test_first_100k_training_mazes_distinct_and_disjoint_from_test():
  _check_train_stream_disjoint(100_000)


@pytest.mark.slow
def test_first_million_training_mazes_distinct_and_disjoint_from_test():
  _check_train_stream_disjoint(1_000_000)


# ---------------------------------------------------------------------------------------------
# Pictures.


def test_render_pair_writes_png(tmp_path):
  path = tmp_path / "maze.png"
  fig = M.render_pair(str(path), size=9, seed=0)
  assert path.stat().st_size > 1000
  titles = [ax.get_title() for ax in fig.axes]
  assert "reward 1" in titles[0] and "reward 0" in titles[1]
  grid = M.train_mazes(0, jnp.arange(2), 9)[1]
  bad = M.wrong_turn_rollout(grid)
  assert float(M.reward(grid, jnp.asarray(bad))) == 0.0
  assert M.trace_path(grid, bad)[1] == py_outcome(grid, bad)
