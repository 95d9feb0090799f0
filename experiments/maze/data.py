"""The maze task as the driver sees it: which mazes each step trains on, prompts, targets, rewards.

A thin, hashable view of ``maxrl_jax.envs.maze`` (so it can be a static argument of ``jax.jit``)
that fixes the maze size, the seed and the index ranges of the training stream:

* SFT step ``s`` trains on stream mazes ``SFT_SEED_STRIDE sft_seed + s B + [0, B)`` (a repeat
  of SFT with another seed sees other mazes);
* RL with infinite data (``train_set_size = 0``) uses the disjoint range starting at
  ``RL_OFFSET = 2^30``: step ``s`` takes mazes ``RL_OFFSET + s B + [0, B)``, so RL never sees an
  SFT maze (as long as SFT uses fewer than 2^30 mazes);
* the data-scarce regime (``train_set_size = M``) uses the fixed set ``RL_OFFSET + [0, M)`` for
  many epochs: position ``j = s B + b`` of the concatenated epochs is set member
  ``perm_e[j mod M]`` with ``e = j div M`` and ``perm_e`` a fresh permutation per epoch, so each
  epoch visits every member once;
* a fixed training file (``num_train = F > 0``, the authors' protocol: one file of 1M mazes for
  SFT and RL) replaces both streams: SFT and RL (without ``train_set_size``) take epochs, as
  above, over the stream mazes ``[0, F)``, each stage (and SFT seed) with its own permutations.

Test mazes come from the environment's held-out stream (disjoint from every training maze by
construction, see ``maxrl_jax.envs.maze``); the validation mazes are the next
``num_validation`` held-out mazes after the test set (disjoint from training and test mazes).
Everything is a pure function of the step number, so
a resumed run sees exactly the batches of an uninterrupted one. The mazes of a chunk of steps are
generated before the chunk (one compiled generator for every batch shape) and passed to the
jitted training chunk, sharded on the batch axis.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from maxrl_jax.envs import maze

RL_OFFSET = 1 << 30
SFT_SEED_STRIDE = 1 << 24  # stream mazes per SFT seed (the paper's SFT uses 48,000)
MAX_SFT_SEED = RL_OFFSET // SFT_SEED_STRIDE - 1
GEN_BLOCK = 64  # mazes per call of the compiled generator
_EPOCH_STREAM = 0x6570  # seed tag of the data-scarce epoch permutations
_FILE_STREAM = 0x66696C65  # seed tag of the fixed training file's epoch permutations


@dataclasses.dataclass(frozen=True)
class MazeTask:
  """Mazes of one size from one seed; hashable (usable as a static jit argument).

  Fields after ``num_test`` pick the experiment's protocol; the defaults are the authors'
  (paper section 6.2): ``reward_rule`` names the verifier (``maze.RULES``), ``generator`` the
  maze generator (``maze.VARIANTS``), ``response_budget`` the most response tokens sampled
  (0: the longest BFS answer, ``maze.max_response_length(size)``; the paper samples up to 180),
  ``stop`` the names of the tokens that end a rollout (the paper's rollouts stop at ``<eos>``).
  """
  size: int
  extra_openings: int = 0
  seed: int = 0
  num_test: int = 256
  reward_rule: str = "first_arrival"
  generator: str = "from_start"
  response_budget: int = 0
  stop: tuple[str, ...] = ("<eos>",)
  num_validation: int = 0
  num_train: int = 0

  def __post_init__(self):
    if not 0 <= self.num_train <= RL_OFFSET:
      raise ValueError(f"num_train must be in [0, 2^30], got {self.num_train}")
    maze.check_size(self.size)
    maze.check_rule(self.reward_rule)
    maze.check_variant(self.generator)
    if self.response_budget and self.response_budget < maze.max_response_length(self.size):
      raise ValueError(
          f"response_budget {self.response_budget} is shorter than the longest BFS answer "
          f"({maze.max_response_length(self.size)} tokens for {self.size}x{self.size}); use 0 "
          "for that length")
    if not self.stop or any(name not in maze.VOCAB for name in self.stop):
      raise ValueError(f"stop must name tokens of the maze vocabulary, got {self.stop!r}")

  @classmethod
  def from_config(cls, config) -> "MazeTask":
    c = config.maze
    return cls(size=int(c.size), extra_openings=int(c.extra_openings), seed=int(config.seed),
               num_test=int(c.num_test), reward_rule=str(c.get("reward_rule", "first_arrival")),
               generator=str(c.get("generator", "from_start")),
               response_budget=int(c.get("response_budget", 0)),
               stop=tuple(str(s) for s in c.get("stop_tokens", ("<eos>",))),
               num_validation=int(c.get("num_validation", 0)),
               num_train=int(c.get("num_train", 0)))

  # Token layout.
  @property
  def vocab_size(self) -> int:
    return maze.VOCAB_SIZE

  @property
  def prompt_length(self) -> int:
    return maze.prompt_length(self.size)

  @property
  def max_response_length(self) -> int:
    """Response budget: ``response_budget``, or the longest BFS answer (``2 m^2`` tokens)."""
    return self.response_budget or maze.max_response_length(self.size)

  @property
  def stop_tokens(self) -> tuple[int, ...]:
    """Ids of the ``stop`` tokens (the sampler keeps the stop token in the response)."""
    return tuple(maze.VOCAB[name] for name in self.stop)

  @property
  def pad_id(self) -> int:
    return maze.PAD

  # Batches (host side: the device programs take the grids as inputs).
  def train_grids(self, indices) -> np.ndarray:
    """Training-stream mazes ``int8 [*indices.shape, size, size]`` (host array).

    Generated by the environment's jitted ``train_mazes`` in fixed blocks of ``GEN_BLOCK``
    indices, so one compiled generator serves every batch size of every stage.
    """
    indices = np.asarray(indices, np.int32)
    flat = indices.reshape(-1)
    pad = -len(flat) % GEN_BLOCK
    padded = np.concatenate([flat, np.zeros((pad,), np.int32)])
    blocks = [np.asarray(maze.train_mazes(self.seed, padded[i:i + GEN_BLOCK], self.size,
                                          self.extra_openings, self.generator))
              for i in range(0, len(padded), GEN_BLOCK)]
    out = np.concatenate(blocks, 0)[: len(flat)]
    return out.reshape(indices.shape + (self.size, self.size))

  def sft_indices(self, step: int, batch: int, sft_seed: int = 0) -> np.ndarray:
    """Stream indices of SFT step ``step``: ``SFT_SEED_STRIDE sft_seed + step batch + [0, batch)``
    (epochs over the fixed file ``[0, num_train)`` when ``num_train``)."""
    if not 0 <= sft_seed <= MAX_SFT_SEED:
      raise ValueError(f"sft_seed must be in [0, {MAX_SFT_SEED}], got {sft_seed}")
    j = step * batch + np.arange(batch, dtype=np.int64)
    if self.num_train:
      return _epochs(j, self.num_train, (self.seed, _FILE_STREAM, 0, int(sft_seed)))
    return SFT_SEED_STRIDE * sft_seed + j

  def rl_indices(self, step: int, batch: int, train_set_size: int = 0) -> np.ndarray:
    """Stream indices of RL step ``step`` (infinite stream, epochs over the data-scarce set, or
    epochs over the fixed file ``[0, num_train)``)."""
    j = step * batch + np.arange(batch, dtype=np.int64)
    if train_set_size:
      return RL_OFFSET + _epochs(j, int(train_set_size), (self.seed, _EPOCH_STREAM))
    if self.num_train:
      return _epochs(j, self.num_train, (self.seed, _FILE_STREAM, 1))
    return RL_OFFSET + j

  def chunk_grids(self, stage: str, start_step: int, num_steps: int, batch: int,
                  train_set_size: int = 0, sft_seed: int = 0) -> np.ndarray:
    """Grids of steps ``start_step .. start_step + num_steps - 1``: ``[num_steps, B, S, S]``."""
    if stage == "sft":
      idx = [self.sft_indices(s, batch, sft_seed)
             for s in range(start_step, start_step + num_steps)]
    else:
      idx = [self.rl_indices(s, batch, train_set_size)
             for s in range(start_step, start_step + num_steps)]
    return self.train_grids(np.stack(idx))

  def fixed_train_grids(self, train_set_size: int) -> np.ndarray:
    """The data-scarce training set: stream mazes ``RL_OFFSET + [0, M)``."""
    return self.train_grids(RL_OFFSET + np.arange(int(train_set_size)))

  def test_grids(self) -> np.ndarray:
    """The ``num_test`` held-out test mazes (host array, computed once per task)."""
    return _test_grids(self.num_test, self.size, self.seed, self.extra_openings, self.generator)

  def validation_grids(self) -> np.ndarray:
    """The ``num_validation`` held-out mazes that follow the test mazes in the held-out stream."""
    if not self.num_validation:
      return np.zeros((0, self.size, self.size), np.int8)
    both = _test_grids(self.num_test + self.num_validation, self.size, self.seed,
                       self.extra_openings, self.generator)
    return both[self.num_test:]

  # Tokens and rewards (jittable, batched).
  @staticmethod
  def prompts(grids: jax.Array) -> jax.Array:
    """``[B, S, S]`` grids -> ``int32 [B, prompt_length]``."""
    return jax.vmap(maze.prompt_tokens)(grids)

  @staticmethod
  def targets(grids: jax.Array) -> jax.Array:
    """BFS shortest paths ``int32 [B, max_response_length]`` (moves, ``DONE <eos>``, padding)."""
    return jax.vmap(maze.shortest_path)(grids)

  def rewards(self, grids: jax.Array, responses: jax.Array) -> jax.Array:
    """Verifier rewards ``float32 [B, N]`` for responses ``[B, N, L]`` on grids ``[B, S, S]``."""
    per_maze = jax.vmap(functools.partial(maze.reward, rule=self.reward_rule), in_axes=(None, 0))
    return jax.vmap(per_maze)(grids, responses).astype(jnp.float32)


def _epochs(j: np.ndarray, m: int, tag: tuple) -> np.ndarray:
  """Member ``perm_e[j mod m]`` of ``[0, m)`` at position ``j``, ``e = j div m``, with ``perm_e``
  the permutation seeded by ``tag + (e,)`` (each epoch visits every member once)."""
  out = np.empty_like(j)
  for e in np.unique(j // m):
    sel = j // m == e
    out[sel] = _permutation(tag + (int(e),), m)[j[sel] % m]
  return out


@functools.lru_cache(maxsize=8)
def _permutation(seed: tuple, m: int) -> np.ndarray:
  perm = np.random.default_rng(list(seed)).permutation(m)
  perm.flags.writeable = False
  return perm


@functools.lru_cache(maxsize=16)
def _test_grids(num: int, size: int, seed: int, extra_openings: int, generator: str) -> np.ndarray:
  return np.asarray(maze.test_mazes(num, size, seed, extra_openings, variant=generator))
