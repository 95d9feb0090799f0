"""Throughput of the maze environment: mazes generated, solved and verified per second.

Every kernel is jitted and vmapped over a batch; the plain-Python verifier of the tests runs on
a slice of the same batch in the same process, so the ratio column compares like with like.

  python benchmarks/maze_env.py                       # sizes 17 and 9, batch 4096
  python benchmarks/maze_env.py --sizes=17 --batch=65536 --repeats=5
  python benchmarks/maze_env.py --sizes= --gen_sizes=17,33,65,129,201,1001

Prints one JSON object: per size, items/s for
  generate        train_mazes (the authors' Prim + train/test orientation), per maze
  prompt_tokens   tokenisation, per maze
  shortest_path   BFS answer, per maze
  verify          reward of one response of the paper's 180 tokens, per rollout
  python_verify   the same rollouts checked by a token-by-token Python loop, per rollout
and verify_speedup_over_python = verify / python_verify; and per generator size (``--gen_sizes``)
the seconds to compile and to generate a batch of mazes with each generator variant, the
mazes per second and the microseconds per cell (the generator costs O(m^2) per maze, m^2 =
cells, so us_per_cell should stay about flat across sizes; the batch shrinks as the size grows,
which is what used to make the vectorised loop superlinear, see ``maze.generators._map_is_faster``).
"""

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from maxrl_jax.envs import maze as M

_MOVES = {M.UP: (-1, 0), M.DOWN: (1, 0), M.LEFT: (0, -1), M.RIGHT: (0, 1)}


def _python_reward(grid, tokens):
  """The authors' verifier: skipped ids dropped, moves before the first DONE, first arrival wins."""
  size = grid.shape[0]
  kept = [t for t in tokens if 0 <= t < M.VOCAB_SIZE and t not in M.SKIPPED_TOKENS]
  if M.DONE not in kept:
    return 0.0
  moves = kept[:kept.index(M.DONE)]
  if any(t not in _MOVES for t in moves):
    return 0.0
  r, c = 1, 1
  for t in moves:
    r, c = r + _MOVES[t][0], c + _MOVES[t][1]
    if not (0 <= r < size and 0 <= c < size) or grid[r][c] == M.CELL_WALL:
      return 0.0
    if (r, c) == (size - 2, size - 2):
      return 1.0
  return 0.0


def _rate(fn, args, count, repeats):
  """Items per second of ``fn(*args)`` (compiled first), median over ``repeats`` runs."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return count / statistics.median(times)


def bench_size(size, batch, repeats, response_len=180, python_count=2000):
  indices = jnp.arange(batch, dtype=jnp.int32)
  gen = jax.jit(lambda i: M.train_mazes(0, i, size))
  grids = jax.block_until_ready(gen(indices))
  prompts = jax.jit(jax.vmap(M.prompt_tokens))
  solve = jax.jit(jax.vmap(M.shortest_path))
  paths = jax.block_until_ready(solve(grids))
  # Rollouts of the paper's response length: the BFS answer with one move flipped at a random
  # place in half of them (so about half succeed), padded with <pad>.
  rng = np.random.default_rng(0)
  rollouts = np.full((batch, response_len), M.PAD, np.int32)
  rollouts[:, :paths.shape[1]] = np.asarray(paths)
  lengths = np.asarray(jax.vmap(M.shortest_path_length)(grids))
  flip = rng.random(batch) < 0.5
  where = (rng.random(batch) * np.maximum(lengths, 1)).astype(int)
  rows = np.nonzero(flip)[0]
  rollouts[rows, where[rows]] = M.UP + (rollouts[rows, where[rows]] - M.UP + 1) % 4
  rollouts = jnp.asarray(rollouts)
  verify = jax.jit(jax.vmap(M.reward))

  result = {
      "batch": batch,
      "generate_per_s": _rate(gen, (indices,), batch, repeats),
      "prompt_tokens_per_s": _rate(prompts, (grids,), batch, repeats),
      "shortest_path_per_s": _rate(solve, (grids,), batch, repeats),
      "verify_per_s": _rate(verify, (grids, rollouts), batch, repeats),
  }
  n = min(python_count, batch)
  g_np, r_np = np.asarray(grids[:n]), np.asarray(rollouts[:n]).tolist()
  t0 = time.perf_counter()
  py = [_python_reward(g_np[i], r_np[i]) for i in range(n)]
  result["python_verify_per_s"] = n / (time.perf_counter() - t0)
  jax_r = np.asarray(verify(grids, rollouts))[:n]
  if not np.array_equal(jax_r, np.array(py)):
    raise AssertionError("JAX and Python verifiers disagree")
  result["success_fraction"] = float(jax_r.mean())
  result["verify_speedup_over_python"] = result["verify_per_s"] / result["python_verify_per_s"]
  return result


def bench_generator(size, batch, repeats):
  """Compile and run times of ``generate`` (both variants) on a batch of ``batch`` keys."""
  keys = jax.random.split(jax.random.key(0), batch)
  out = {"batch": batch}
  for variant in M.VARIANTS:
    gen = jax.jit(jax.vmap(lambda k, v=variant: M.generate(k, size, 0, v)))
    t0 = time.perf_counter()
    jax.block_until_ready(gen(keys))
    first = time.perf_counter() - t0
    rate = _rate(gen, (keys,), batch, repeats)
    out[variant] = {"first_call_s": first, "batch_s": batch / rate, "mazes_per_s": rate,
                    "us_per_cell": 1e6 / (rate * M.num_cells(size) ** 2)}
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="17,9", help="comma-separated odd maze sizes")
  parser.add_argument("--batch", type=int, default=4096)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--gen_sizes", default="17,33,65",
                      help="comma-separated sizes for the generator-only timings")
  parser.add_argument("--gen_cells", type=int, default=1 << 18,
                      help="batch of the generator timings: about this many cells in all")
  args = parser.parse_args()
  out = {
      "benchmark": "maze_env",
      "backend": jax.default_backend(),
      "device": str(jax.devices()[0].device_kind),
      "jax": jax.__version__,
      "sizes": {},
  }
  for size in (int(s) for s in args.sizes.split(",") if s):
    out["sizes"][str(size)] = bench_size(size, args.batch, args.repeats)
  out["generator"] = {}
  for size in (int(s) for s in args.gen_sizes.split(",") if s):
    batch = max(1, args.gen_cells // M.num_cells(size) ** 2)
    out["generator"][str(size)] = bench_generator(size, batch, min(args.repeats, 3))
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
