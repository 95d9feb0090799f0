"""The BFS oracle and the verifiable reward of the mazes (paper section 6.2, appendix E.1).

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

``shortest_path`` is a BFS answer in the response layout of ``tokens`` (the supervised targets).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from maxrl_jax.envs.maze.tokens import (_MOVE_DELTAS, CELL_WALL, DONE, EOS, PAD, RIGHT,
                                        SKIPPED_TOKENS, UP, VOCAB_SIZE, check_size,
                                        goal_position, max_response_length, start_position)

# Outcome codes of `outcome` (reward 1 iff SUCCESS).
OUTCOMES = ("success", "no_done", "invalid_token", "wall", "out_of_bounds", "wrong_end")
OUTCOME_ID = {name: i for i, name in enumerate(OUTCOMES)}

# Reward rules (module docstring); the first is the default.
RULES = ("first_arrival", "end_on_goal")


def check_rule(rule: str) -> None:
  """Raises ``ValueError`` unless ``rule`` is one of ``RULES``."""
  if rule not in RULES:
    raise ValueError(f"unknown maze reward rule {rule!r}; choose one of {RULES}")


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
