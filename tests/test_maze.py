"""Tests of the maze environment against independent plain-Python references."""

import collections
import functools
import hashlib
import itertools
import random
import subprocess
import sys

import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maxrl_jax.envs import maze as M
from maxrl_jax.envs.maze import generators as maze_generators

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
  """Reference of the earlier strict verifier (rule "end_on_goal"), token by token."""
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


# The authors' tokenizer (maze/ckpt-1500/tokenizer.json), written out independently.
AUTHORS_VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>", "GRID_START", "GRID_END", "PATH_START", "DONE",
                 "PATH", "WALL", "GOAL", "START", "NEWLINE", "UP", "DOWN", "LEFT", "RIGHT", "\n"]
AUTHORS_VOCAB += [f"RESERVED_{i}" for i in range(14)]
AUTHORS_SPECIAL = {"<pad>", "<bos>", "<eos>", "<unk>"}


def py_authors_decode(ids):
  """``tokenizer.decode(ids, skip_special_tokens=True)``: special and unknown ids vanish, the rest
  are joined by spaces (a WordLevel tokenizer without a decoder)."""
  names = [AUTHORS_VOCAB[i] for i in ids if 0 <= i < len(AUTHORS_VOCAB)]
  return " ".join(n for n in names if n not in AUTHORS_SPECIAL)


def py_authors_outcome(grid, ids):
  """The authors' judge_maze (verl/utils/reward_score/maze.py) on the decoded response, with the
  reason for a 0 (reward 1 iff "success")."""
  grid = np.asarray(grid)
  size = grid.shape[0]
  tokens = py_authors_decode([int(t) for t in ids]).strip().split()
  if "DONE" not in tokens:
    return "no_done"
  actions = tokens[:tokens.index("DONE")]
  if any(a not in MOVES for a in actions):
    return "invalid_token"
  r, c = 1, 1
  for a in actions:
    r, c = r + MOVES[a][0], c + MOVES[a][1]
    if not (0 <= r < size and 0 <= c < size):
      return "out_of_bounds"
    if grid[r][c] == 0:
      return "wall"
    if (r, c) == (size - 2, size - 2):
      return "success"
  return "wrong_end"


def py_prim_from_start(size, rng):
  """The authors' generator (maze/generate_maze.py, MazeGenerator.prim), 0 = wall here."""
  grid = [[0] * size for _ in range(size)]
  steps = [(0, 2), (2, 0), (0, -2), (-2, 0)]
  grid[1][1] = 1
  frontier = [(1 + dr, 1 + dc) for dr, dc in steps if 0 < 1 + dr < size - 1 and 0 < 1 + dc < size - 1]
  while frontier:
    fr, fc = frontier.pop(rng.randint(0, len(frontier) - 1))
    joined = [(fr + dr, fc + dc) for dr, dc in steps
              if 0 <= fr + dr < size and 0 <= fc + dc < size and grid[fr + dr][fc + dc]]
    nr, nc = rng.choice(joined)
    grid[(fr + nr) // 2][(fc + nc) // 2] = 1
    grid[fr][fc] = 1
    for dr, dc in steps:
      q = (fr + dr, fc + dc)
      if 0 < q[0] < size - 1 and 0 < q[1] < size - 1 and not grid[q[0]][q[1]] and q not in frontier:
        frontier.append(q)
  grid[1][1], grid[size - 2][size - 2] = 2, 3
  return np.array(grid, np.int8)


def py_prim_random_root(size, rng):
  """Edge-frontier Prim from a uniformly random cell (the earlier generator), 0 = wall."""
  m = (size - 1) // 2
  grid = [[0] * size for _ in range(size)]
  root = (2 * rng.randrange(m) + 1, 2 * rng.randrange(m) + 1)
  grid[root[0]][root[1]] = 1
  inside = {root}

  def edges(cell):
    return [(cell, (cell[0] + dr, cell[1] + dc)) for dr, dc in ((0, 2), (2, 0), (0, -2), (-2, 0))
            if 0 < cell[0] + dr < size - 1 and 0 < cell[1] + dc < size - 1]

  frontier = [e for e in edges(root)]
  while frontier:
    a, b = frontier[rng.randrange(len(frontier))]
    grid[(a[0] + b[0]) // 2][(a[1] + b[1]) // 2] = 1
    grid[b[0]][b[1]] = 1
    inside.add(b)
    frontier = [e for e in frontier if e[1] != b] + [e for e in edges(b) if e[1] not in inside]
  grid[1][1], grid[size - 2][size - 2] = 2, 3
  return np.array(grid, np.int8)


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


def test_vocab_is_the_authors_tokenizer():
  assert len(M.VOCAB) == M.VOCAB_SIZE == 32
  assert [M.ID_TO_TOKEN[i] for i in range(32)] == AUTHORS_VOCAB
  assert (M.PAD, M.BOS, M.EOS, M.UNK, M.DONE, M.NEWLINE_CHAR) == (0, 1, 2, 3, 7, 17)
  assert M.MOVE_TOKENS == (13, 14, 15, 16)
  assert M.CELL_TOKENS == tuple(M.VOCAB[n] for n in ("WALL", "PATH", "START", "GOAL")) == (9, 8, 11, 10)
  assert M.STOP_TOKENS == (M.VOCAB["<eos>"],)
  assert set(M.SKIPPED_TOKENS) == {0, 1, 2, 3, 17}


def test_package_import_leaves_out_matplotlib():
  code = ("import sys; from maxrl_jax.envs import maze; maze.reward; "
          "assert 'matplotlib' not in sys.modules; maze.trace_path; "
          "assert 'matplotlib' not in sys.modules; print('ok')")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "ok"


def test_unknown_rule_and_variant_raise():
  with pytest.raises(ValueError, match="rule"):
    M.reward(jnp.zeros((5, 5), jnp.int8), jnp.zeros((3,), jnp.int32), rule="nope")
  with pytest.raises(ValueError, match="variant"):
    M.generate(jax.random.key(0), 7, variant="nope")


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


# The 7x7 example of the paper's appendix E.1 (the box "7*7 Maze Example Model Input and Output
# Format"), its printed input grid row by row. The printed output, RIGHT RIGHT RIGHT RIGHT DOWN DOWN
# DOWN DOWN DONE <eos>, is misprinted: its first move walks into the wall at (1, 2). The grid is
# a perfect maze whose only shortest answer is DOWN DOWN RIGHT RIGHT RIGHT RIGHT DOWN DOWN.
PAPER_7X7_INPUT = (
    "<bos> GRID_START WALL WALL WALL WALL WALL WALL WALL NEWLINE WALL START WALL PATH PATH PATH "
    "WALL NEWLINE WALL PATH WALL PATH WALL WALL WALL NEWLINE WALL PATH PATH PATH PATH PATH WALL "
    "NEWLINE WALL PATH WALL WALL WALL PATH WALL NEWLINE WALL PATH WALL PATH PATH GOAL WALL NEWLINE "
    "WALL WALL WALL WALL WALL WALL WALL NEWLINE GRID_END PATH_START")
PAPER_7X7 = np.array([[0] * 7,
                      [0, 2, 0, 1, 1, 1, 0],
                      [0, 1, 0, 1, 0, 0, 0],
                      [0, 1, 1, 1, 1, 1, 0],
                      [0, 1, 0, 0, 0, 1, 0],
                      [0, 1, 0, 1, 1, 3, 0],
                      [0] * 7], np.int8)
PAPER_7X7_PRINTED_ANSWER = "RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DOWN DONE <eos>"
PAPER_7X7_ANSWER = "DOWN DOWN RIGHT RIGHT RIGHT RIGHT DOWN DOWN DONE <eos>"


def test_paper_example_7x7():
  """Appendix E.1's example: our prompt is the printed input token for token; the corrected
  shortest answer is the BFS answer and earns 1, the printed one hits a wall."""
  grid = PAPER_7X7
  check_structure(grid, 0)
  prompt = np.asarray(M.prompt_tokens(jnp.asarray(grid)))
  assert prompt.shape == (M.prompt_length(7),) and prompt.dtype == np.int32
  assert M.decode(prompt) == PAPER_7X7_INPUT
  sp = np.asarray(M.shortest_path(jnp.asarray(grid)))
  assert M.decode(sp[:10]) == PAPER_7X7_ANSWER
  assert (sp[10:] == M.PAD).all() and sp.shape == (M.max_response_length(7),)
  assert int(M.shortest_path_length(grid)) == 8 == py_bfs_length(grid)
  for rule in M.RULES:
    assert float(M.reward(grid, tokens_of(PAPER_7X7_ANSWER), rule)) == 1.0
    printed = tokens_of(PAPER_7X7_PRINTED_ANSWER)
    assert M.OUTCOMES[int(M.outcome(grid, printed, rule))] == "wall"
    assert float(M.reward(grid, printed, rule)) == 0.0


def test_prompt_tokens_layout():
  grids = M.train_mazes(3, jnp.arange(4), 9)
  prompts = np.asarray(jax.vmap(M.prompt_tokens)(grids))
  assert prompts.shape == (4, M.prompt_length(9))
  body = prompts[:, 2:-2].reshape(4, 9, 10)
  np.testing.assert_array_equal(body[:, :, -1], M.VOCAB["NEWLINE"])
  np.testing.assert_array_equal(body[:, :, :-1], np.array(M.CELL_TOKENS)[np.asarray(grids)])
  assert (prompts[:, :2] == [M.BOS, M.VOCAB["GRID_START"]]).all()
  assert (prompts[:, -2:] == [M.VOCAB["GRID_END"], M.VOCAB["PATH_START"]]).all()


# ---------------------------------------------------------------------------------------------
# Generator.


@pytest.mark.parametrize("variant", M.VARIANTS)
@pytest.mark.parametrize("size,extra", [(5, 0), (9, 0), (17, 0), (5, 1), (11, 3), (17, 49)])
def test_generated_mazes_are_valid(size, extra, variant):
  keys = jax.random.split(jax.random.key(size * 100 + extra), 200)
  grids = np.asarray(jax.vmap(lambda k: M.generate(k, size, extra, variant))(keys))
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


# sha256 (first 16 hex digits) of the int8 bytes of generate(k, size, extra, variant) for the
# four keys split(key(size), 4), recorded with the generator as it was before its loops were
# rewritten to do O(1) work per step. Published test sets are drawn from these mazes, so every
# rewrite must reproduce them bit for bit (sizes 5 to 129 were compared in full when it changed).
_GENERATOR_HASHES = {
    (9, 0, "from_start"): "e1114ebe1b211756",
    (33, 0, "from_start"): "cc2b98516ac3d5b8",
    (17, 3, "random_root"): "1119a7dbb450ffec",
}


@pytest.mark.parametrize("size,extra,variant", list(_GENERATOR_HASHES))
def test_generator_output_is_unchanged(size, extra, variant):
  keys = jax.random.split(jax.random.key(size), 4)
  grids = np.stack([np.asarray(M.generate(k, size, extra, variant)) for k in keys])
  assert grids.dtype == np.int8 and grids.shape == (4, size, size)
  digest = hashlib.sha256(grids.tobytes()).hexdigest()[:16]
  assert digest == _GENERATOR_HASHES[size, extra, variant]


@pytest.mark.parametrize("branch", ["map", "vectorised"])
@pytest.mark.parametrize("size,extra,variant", list(_GENERATOR_HASHES))
def test_batched_generator_output_is_unchanged(size, extra, variant, branch, monkeypatch):
  """``vmap(generate)`` gives the same mazes through both branches of its batching rule (on
  CPU ``lax.map`` over the single-maze loop, or the vectorised loop other platforms use)."""
  chosen = []

  def choose(batch, n):
    chosen.append((batch, n))
    return branch == "map"

  monkeypatch.setattr(maze_generators, "_map_is_faster", choose)
  jax.clear_caches()  # The batched jaxpr of `generate` is cached with the branch it took.
  try:
    keys = jax.random.split(jax.random.key(size), 4)
    grids = np.asarray(jax.jit(jax.vmap(lambda k: M.generate(k, size, extra, variant)))(keys))
  finally:
    jax.clear_caches()  # Later tests choose with the real rule.
  assert chosen == [(4, M.num_cells(size) ** 2)]  # The rule ran, on the whole batch.
  assert grids.dtype == np.int8 and grids.shape == (4, size, size)
  digest = hashlib.sha256(grids.tobytes()).hexdigest()[:16]
  assert digest == _GENERATOR_HASHES[size, extra, variant]


@pytest.mark.parametrize("variant", M.VARIANTS)
def test_generator_covers_every_perfect_7x7_maze(variant):
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
  sampled = np.asarray(M.train_mazes(0, jnp.arange(20000), 7, 0, variant))
  sampled_set = {g.tobytes() for g in sampled}
  assert sampled_set == train_expected
  held = np.asarray(M.test_mazes(num=192 - len(train_expected), size=7, variant=variant))
  held_set = {g.tobytes() for g in held}
  assert held_set == all_mazes - train_expected


_DIST_N = 3000


@pytest.mark.parametrize("variant,reference", [("from_start", py_prim_from_start),
                                               ("random_root", py_prim_random_root)])
def test_generator_distribution_matches_python_reference(variant, reference):
  """Over 3,000 17x17 mazes: fraction whose shortest path is the monotone 28 moves, and mean
  shortest path, agree with a plain-Python run of the same algorithm (the authors' for
  "from_start") within sampling error (4.5 standard errors of the difference)."""
  rng = random.Random(12345)
  ref = np.array([py_bfs_length(reference(17, rng)) for _ in range(_DIST_N)])
  ours = np.asarray(_batched_len(M.train_mazes(5, jnp.arange(_DIST_N), 17, 0, variant)))
  assert (ours >= 28).all() and (ref >= 28).all()
  p_ref, p_ours = (ref == 28).mean(), (ours == 28).mean()
  p = (p_ref + p_ours) / 2
  assert abs(p_ours - p_ref) < 4.5 * np.sqrt(2 * p * (1 - p) / _DIST_N), (p_ours, p_ref)
  se = np.sqrt((ref.var() + ours.var()) / _DIST_N)
  assert abs(ours.mean() - ref.mean()) < 4.5 * se, (ours.mean(), ref.mean())
  # The two generators differ measurably (paper: ~77% / ~29.1 from (1, 1)).
  if variant == "from_start":
    assert 0.74 < p_ours < 0.81 and 28.8 < ours.mean() < 29.4
  else:
    assert 0.51 < p_ours < 0.60 and 30.1 < ours.mean() < 30.9


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


_HAND_GRID = np.array(
    [[0] * 7, [0, 2, 1, 1, 1, 1, 0], [0, 1, 0, 0, 0, 1, 0], [0, 1, 1, 1, 0, 1, 0],
     [0, 1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 3, 0], [0] * 7], np.int8)
_HAND_ANSWER = "RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DOWN"


def _check_cases(grid, cases, rule, reference):
  width = 16  # Padding after a DONE changes nothing, so those cases share one compiled shape.
  for text, expected in cases.items():
    toks = tokens_of(text)
    if M.DONE in toks:
      toks = np.pad(toks, (0, width - len(toks)), constant_values=M.PAD)
    assert reference(grid, toks) == expected, text
    assert M.OUTCOMES[int(M.outcome(grid, toks, rule))] == expected, text
    assert float(M.reward(grid, toks, rule)) == float(expected == "success"), text
    assert M.trace_path(grid, toks, rule)[1] == expected, text


def test_verifier_hand_cases_first_arrival():
  """The authors' rule: special tokens skipped, the first arrival at the goal decides."""
  a = _HAND_ANSWER
  cases = {
      f"{a} DONE <eos>": "success",
      f"{a} DONE": "success",
      f"{a} DONE UP <bos> <eos>": "success",  # Tokens after the first DONE are ignored.
      f"DOWN UP {a} DONE <eos>": "success",  # Detours are fine.
      # The walk stops at the first arrival: leaving the goal, even into a wall, still wins.
      f"{a} UP DONE <eos>": "success",
      f"{a} RIGHT DONE <eos>": "success",
      f"{a} UP UP LEFT LEFT DONE <eos>": "success",
      # ... but a non-move anywhere before DONE loses, even after the goal.
      f"{a} GOAL DONE <eos>": "invalid_token",
      f"{a} RESERVED_0 UP DONE <eos>": "invalid_token",
      "UP RESERVED_3 DONE": "invalid_token",  # Checked before the walk.
      # Special tokens and the newline character are dropped before judging.
      "RIGHT RIGHT <pad> RIGHT RIGHT <bos> DOWN \n DOWN <unk> DOWN DOWN DONE": "success",
      f"<eos> {a} DONE": "success",
      f"{a} <eos> DONE": "success",
      f"{a} <eos>": "no_done",
      "RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DONE <eos>": "wrong_end",
      "DONE <eos>": "wrong_end",
      "RIGHT RIGHT UP": "no_done",  # No DONE decides first, even before a wall.
      "RIGHT RIGHT UP DONE": "wall",
      "DOWN DOWN RIGHT RIGHT RIGHT RIGHT DOWN DOWN DONE <eos>": "wall",
      "UP DONE <eos>": "wall",
  }
  _check_cases(_HAND_GRID, cases, "first_arrival", py_authors_outcome)
  # Ids outside the vocabulary vanish in the authors' decoding, so they are skipped too.
  for ids in ([-1, M.DONE], [32, M.DONE], [2**31 - 1, M.DONE], [-2**31, M.DONE]):
    toks = np.array(ids, np.int32)
    assert M.OUTCOMES[int(M.outcome(_HAND_GRID, toks))] == "wrong_end" == py_authors_outcome(
        _HAND_GRID, toks)
  toks = np.array([16, 16, 40, 16, 16, -5, 14, 14, 14, 14, M.DONE], np.int32)
  assert float(M.reward(_HAND_GRID, toks)) == 1.0


def test_verifier_hand_cases_end_on_goal():
  """The earlier strict rule: every token before DONE a move, the walk must end on the goal."""
  a = _HAND_ANSWER
  cases = {
      f"{a} DONE <eos>": "success",
      f"{a} DONE": "success",
      f"{a} DONE UP <bos> <eos>": "success",
      f"DOWN UP {a} DONE <eos>": "success",
      f"{a} UP DONE <eos>": "wrong_end",
      "RIGHT RIGHT RIGHT RIGHT DOWN DOWN DOWN DONE <eos>": "wrong_end",
      "DONE <eos>": "wrong_end",
      f"{a} <eos>": "invalid_token",
      "RIGHT RIGHT UP": "wall",
      a: "no_done",
      "DOWN DOWN RIGHT RIGHT RIGHT RIGHT DOWN DOWN DONE <eos>": "wall",
      "UP DONE <eos>": "wall",
      "RIGHT RIGHT RIGHT RIGHT <pad> DOWN DOWN DOWN DOWN DONE <eos>": "invalid_token",
      "RIGHT RIGHT RIGHT RIGHT GOAL DOWN DOWN DOWN DOWN DONE <eos>": "invalid_token",
      f"<eos> {a} DONE": "invalid_token",
  }
  _check_cases(_HAND_GRID, cases, "end_on_goal", py_outcome)
  for bad in ([-1, M.DONE], [32, M.DONE], [2**31 - 1, M.DONE], [-2**31, M.DONE]):
    toks = np.array(bad, np.int32)
    assert M.OUTCOMES[int(M.outcome(_HAND_GRID, toks, "end_on_goal"))] == "invalid_token"
    assert float(M.reward(_HAND_GRID, toks, "end_on_goal")) == 0.0


def test_verifier_out_of_bounds():
  """With an open border point the walk can step off the grid."""
  grid = np.zeros((5, 5), np.int8)
  grid[1, 1:4] = 1
  grid[1:4, 3] = 1
  grid[1, 1], grid[3, 3] = 2, 3
  grid[0, 1] = 1  # Open border point above the start.
  g = jnp.asarray(grid)
  for rule, ref in (("first_arrival", py_authors_outcome), ("end_on_goal", py_outcome)):
    for text, expected in (("UP UP DOWN DONE", "out_of_bounds"),
                           ("UP DOWN RIGHT RIGHT DOWN DOWN DONE", "success")):
      assert M.OUTCOMES[int(M.outcome(g, tokens_of(text), rule))] == expected == ref(
          grid, tokens_of(text))
    assert float(M.reward(g, tokens_of("UP UP DOWN DONE"), rule)) == 0.0


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
_fuzz_outcome = jax.jit(functools.partial(M.outcome, rule="end_on_goal"))
_token = st.one_of(st.sampled_from(M.MOVE_TOKENS + (M.DONE, M.EOS, M.PAD)),
                   st.integers(-3, 40))


@hypothesis.settings(max_examples=400, deadline=None, derandomize=True)
@hypothesis.given(index=st.integers(0, 63), mode=st.sampled_from(["random", "mutate"]),
                  data=st.data())
def test_end_on_goal_fuzz_against_python(index, mode, data):
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


def _fuzz_responses(grids, paths, num, length, seed):
  """``num`` responses of ``length`` ids on random grids of the batch, built to hit every branch
  of the authors' verifier: BFS answers with mutations, walks that reach the goal and go on
  (often into walls), random moves, junk and special tokens, missing or early DONE."""
  rng = np.random.default_rng(seed)
  which = rng.integers(0, len(grids), num)
  specials = np.array([M.PAD, M.BOS, M.EOS, M.UNK, M.NEWLINE_CHAR])
  junk = rng.integers(-3, 40, (num, length))
  moves = rng.integers(M.UP, M.RIGHT + 1, (num, length))
  out = np.where(rng.random((num, length)) < 0.9, moves, junk)
  kind = rng.integers(0, 4, num)
  # Kinds 1-3 start with the BFS answer (moves only), then go on with random moves.
  answers = paths[which]
  num_moves = ((answers >= M.UP) & (answers <= M.RIGHT)).sum(1)
  col = np.arange(length)[None, :]
  prefix = (kind[:, None] >= 1) & (col < num_moves[:, None])
  out = np.where(prefix, np.pad(answers, ((0, 0), (0, max(0, length - answers.shape[1]))))[:, :length],
                 out)
  # Cut: kind 1 stops exactly at the goal, others at a random place, then DONE (usually).
  cut = np.where(kind == 1, num_moves, rng.integers(0, length, num))
  cut = np.where(kind == 3, np.minimum(num_moves + rng.integers(0, 8, num), length - 1), cut)
  has_done = rng.random(num) < 0.85
  out = np.where((col == cut[:, None]) & has_done[:, None], M.DONE, out)
  # Flip a move of the answer in some, sprinkle special and junk tokens in others.
  flip = (rng.random((num, length)) < 0.03) & prefix
  out = np.where(flip, M.UP + (out - M.UP + 1) % 4, out)
  sprinkle = rng.random((num, length)) < np.where(rng.random(num) < 0.5, 0.0, 0.1)[:, None]
  out = np.where(sprinkle, specials[rng.integers(0, len(specials), (num, length))], out)
  rare = rng.random((num, length)) < 0.005
  out = np.where(rare, junk, out)
  return which, out.astype(np.int32)


def test_first_arrival_agrees_with_authors_judge_on_100k_fuzzed_responses():
  size, length, num = 9, 48, 100_000
  grids = np.asarray(M.train_mazes(21, jnp.arange(256), size, 3))
  paths = np.asarray(_batched_sp(jnp.asarray(grids)))
  which, responses = _fuzz_responses(grids, paths, num, length, seed=0)
  got = np.asarray(jax.jit(jax.vmap(M.outcome))(jnp.asarray(grids[which]), jnp.asarray(responses)))
  rewards = np.asarray(_batched_reward(jnp.asarray(grids[which]), jnp.asarray(responses)))
  expected = [py_authors_outcome(grids[w], r) for w, r in zip(which, responses.tolist())]
  expected_ids = np.array([M.OUTCOME_ID[e] for e in expected])
  bad = np.nonzero(got != expected_ids)[0]
  assert bad.size == 0, [(M.decode(responses[i]), expected[i], M.OUTCOMES[got[i]]) for i in bad[:5]]
  np.testing.assert_array_equal(rewards, expected_ids == M.OUTCOME_ID["success"])
  counts = collections.Counter(expected)
  # Every branch is exercised (off the grid needs an open border: test_verifier_out_of_bounds).
  assert all(counts[name] >= 1000 for name in M.OUTCOMES if name != "out_of_bounds"), counts
  # Successes that walk on past the goal (the case the two rules disagree on) are frequent.
  strict = np.asarray(jax.jit(jax.vmap(functools.partial(M.reward, rule="end_on_goal")))(
      jnp.asarray(grids[which]), jnp.asarray(responses)))
  assert ((rewards == 1) & (strict == 0)).sum() >= 1000
  # trace_path gives the same names (on a slice; it is a host loop).
  for i in range(0, num, 97):
    assert M.trace_path(grids[which[i]], responses[i])[1] == expected[i]


def test_reward_vmaps_over_rollouts_and_compiles_once():
  grids = M.train_mazes(0, jnp.arange(3), 9)
  paths = _batched_sp(grids)
  rollouts = jnp.stack([paths, paths.at[:, 0].set(M.UP), jnp.zeros_like(paths)], axis=1)  # UP: wall

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
  assert M.trace_path(grid, bad)[1] == py_authors_outcome(grid, bad)
  assert M.render.trace_path is M.trace_path


# ---------------------------------------------------------------------------------------------
# The driver's view of the task (experiments/maze/data.py).


def test_maze_task_reads_the_protocol_from_the_presets():
  from experiments.maze import config as maze_config  # pylint: disable=g-import-not-at-top
  from experiments.maze import data  # pylint: disable=g-import-not-at-top

  paper = data.MazeTask.from_config(maze_config.get_config("paper"))
  assert (paper.reward_rule, paper.generator) == ("first_arrival", "from_start")
  # The authors stop at DONE or <eos> (maze/ckpt-1500/generation_config.json: eos ids 2, 7).
  assert paper.max_response_length == 180 and paper.stop_tokens == (M.DONE, M.EOS)
  assert paper.prompt_length + paper.max_response_length <= 512
  for preset in ("cpu", "smoke"):
    task = data.MazeTask.from_config(maze_config.get_config(preset))
    assert (task.reward_rule, task.generator) == ("first_arrival", "from_start")
    assert task.max_response_length == M.max_response_length(task.size)
    assert task.stop_tokens == (M.DONE, M.EOS)
  with pytest.raises(ValueError, match="rule"):
    data.MazeTask(size=9, reward_rule="nope")
  with pytest.raises(ValueError, match="variant"):
    data.MazeTask(size=9, generator="nope")
  with pytest.raises(ValueError, match="response_budget"):
    data.MazeTask(size=17, response_budget=100)
  with pytest.raises(ValueError, match="stop"):
    data.MazeTask(size=9, stop=("EOS",))
  # Rewards follow the task's rule: a walk past the goal wins only under "first_arrival".
  grid = jnp.asarray(_HAND_GRID)[None]
  resp = jnp.asarray(tokens_of(f"{_HAND_ANSWER} UP DONE <eos>"))[None, None]
  assert float(data.MazeTask(size=7).rewards(grid, resp)[0, 0]) == 1.0
  assert float(data.MazeTask(size=7, reward_rule="end_on_goal").rewards(grid, resp)[0, 0]) == 0.0
  strict = data.MazeTask(size=9, generator="random_root")
  assert strict.train_grids(np.arange(3)).shape == (3, 9, 9)
