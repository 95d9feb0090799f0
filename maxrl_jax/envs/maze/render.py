"""Pictures of mazes and rollouts (paper Figure 10), and the command line that draws them.

  python -m maxrl_jax.envs.maze.render --render=docs/figures/maze_example.png [--show]

Host-side (NumPy and matplotlib); matplotlib is imported only when a figure is drawn. The
environment itself is ``maxrl_jax.envs.maze`` (``tokens``, ``generators``, ``verify``, ``split``).
"""

from __future__ import annotations

import argparse
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from maxrl_jax.envs.maze.generators import VARIANTS
from maxrl_jax.envs.maze.split import train_mazes
from maxrl_jax.envs.maze.tokens import (CELL_WALL, DONE, DOWN, EOS, LEFT, MOVE_TOKENS, RIGHT,
                                        SKIPPED_TOKENS, UP, VOCAB_SIZE, decode, goal_position,
                                        prompt_tokens, start_position)
from maxrl_jax.envs.maze.verify import check_rule, reward, shortest_path

_DELTAS = {UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1)}


def _walk(grid, moves, stop_at_goal):
  """Walks ``moves`` from the start; returns the points (start first) and how the walk ended.

  Ends at the first non-move (``"invalid_token"``), the first failing move (its target point is
  included, so a plot shows where the rollout broke), or, if ``stop_at_goal``, the first entry
  into the goal (``"success"``); ``None`` if all moves were walked.
  """
  size = grid.shape[-1]
  pos = np.array(start_position(size))
  goal = goal_position(size)
  points = [pos.copy()]
  for t in moves:
    if t not in _DELTAS:
      return np.array(points), "invalid_token"
    pos = pos + _DELTAS[t]
    points.append(pos.copy())
    if not (0 <= pos[0] < size and 0 <= pos[1] < size):
      return np.array(points), "out_of_bounds"
    if grid[pos[0], pos[1]] == CELL_WALL:
      return np.array(points), "wall"
    if stop_at_goal and tuple(pos) == goal:
      return np.array(points), "success"
  return np.array(points), None


def trace_path(grid, tokens, rule: str = "first_arrival") -> tuple[np.ndarray, str]:
  """Host-side walk for plotting: visited points (start first) and the outcome name.

  The name is the one ``maze.outcome(grid, tokens, rule)`` gives. The points follow the walk of
  the judged moves up to the first non-move, the first failing move (included), or (rule
  ``"first_arrival"``) the first arrival at the goal.
  """
  check_rule(rule)
  grid = np.asarray(grid)
  tokens = [int(t) for t in np.asarray(tokens).reshape(-1)]
  size = grid.shape[-1]
  if rule == "first_arrival":
    judged = [t for t in tokens if 0 <= t < VOCAB_SIZE and t not in SKIPPED_TOKENS]
    has_done = DONE in judged
    moves = judged[:judged.index(DONE)] if has_done else judged
    points, end = _walk(grid, moves, stop_at_goal=True)
    if not has_done:
      return points, "no_done"
    if any(t not in _DELTAS for t in moves):
      return points, "invalid_token"
    return points, end or "wrong_end"
  moves = tokens[:tokens.index(DONE)] if DONE in tokens else tokens
  points, end = _walk(grid, moves, stop_at_goal=False)
  if end is not None:
    return points, end
  if DONE not in tokens:
    return points, "no_done"
  return points, "success" if tuple(points[-1]) == goal_position(size) else "wrong_end"


def render(grid, moves=None, ax=None, title: str | None = None, rule: str = "first_arrival"):
  """Draws a maze (walls dark, start green, goal red) and, if given, a rollout's trajectory.

  Args:
    grid: ``[size, size]`` cell codes.
    moves: optional response token ids; the walk of ``trace_path`` is drawn, and a rollout that
      fails is marked with a red cross where it stopped.
    ax: optional matplotlib axes to draw on (a new figure otherwise).
    title: axes title; defaults to the rollout's outcome and reward.
    rule: reward rule used to judge ``moves`` (``maze.RULES``).

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
    points, name = trace_path(grid, moves, rule)
    ok = name == "success"
    ax.plot(points[:, 1], points[:, 0], color="#1e88e5" if ok else "#fb8c00", lw=2.5,
            solid_capstyle="round")
    if not ok:
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

  def step(p, t):
    return p + np.array(_DELTAS[t])

  out = []
  for k, mv in enumerate(moves):
    if k >= branch_fraction * len(moves):
      side = [t for t in MOVE_TOKENS if t != mv and (not out or t != opposite[out[-1]])
              and open_at(step(pos, t)) and tuple(step(pos, t)) not in on_path]
      if side:
        heading = side[0]
        while True:
          out.append(heading)
          pos = step(pos, heading)
          nxt = [t for t in MOVE_TOKENS if t != opposite[heading] and open_at(step(pos, t))]
          if not nxt:
            out.append(heading)  # Bump into the dead end's wall.
            return np.array(out + [DONE, EOS], np.int32)
          heading = nxt[0]
    out.append(mv)
    pos = step(pos, mv)
  start = np.array(start_position(size))
  wall_dir = next(t for t in MOVE_TOKENS if not open_at(step(start, t)))
  return np.array([wall_dir, DONE, EOS], np.int32)


def render_pair(path: str, size: int = 17, seed: int = 0, extra_openings: int = 0,
                variant: str = "from_start"):
  """Writes the paper's Figure 10 to ``path``: a successful and a failed rollout side by side.

  Left: the BFS answer on training maze 0 of stream ``seed`` (reward 1). Right: a wrong-turn
  rollout (``wrong_turn_rollout``) on training maze 1 (reward 0). Returns the figure.
  """
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  grids = np.asarray(train_mazes(seed, jnp.arange(2), size, extra_openings, variant))
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
  parser = argparse.ArgumentParser(description="Draw maze rollouts (paper Figure 10).")
  parser.add_argument("--render", default="docs/figures/maze_example.png",
                      help="where to write the success/failure picture (paper Figure 10)")
  parser.add_argument("--size", type=int, default=17)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--extra_openings", type=int, default=0)
  parser.add_argument("--variant", default="from_start", choices=VARIANTS)
  parser.add_argument("--show", action="store_true", help="also print maze 0 and its answer")
  args = parser.parse_args(argv)
  render_pair(args.render, args.size, args.seed, args.extra_openings, args.variant)
  print(f"wrote {args.render}")
  if args.show:
    g = train_mazes(args.seed, jnp.arange(1), args.size, args.extra_openings, args.variant)[0]
    print(decode(prompt_tokens(g)).replace(" NEWLINE ", "\n"))
    print(decode(shortest_path(g)))


if __name__ == "__main__":
  main()
