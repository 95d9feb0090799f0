r"""The training grid of the toy Bernoulli policy: every estimator at every N, and the exact truth.

For each policy (``tabular``, ``logistic``; see :mod:`experiments.bernoulli.policies`) three
families of runs train from the same initial pass rates on the objective ``E_x[.]`` over the
``M`` prompts:

* ``sampled``: estimator ``e`` at group size ``N`` with seed ``s``. Each step draws per-rollout
  rewards ``r ~ Bernoulli(p)``, shape ``[M, N]``, computes ``A = advantages(r, e)``
  (:func:`maxrl_jax.estimators.advantages`, the kernel the real drivers use) and descends the
  surrogate ``-mean_{x,i} sg(A_i) log pi(r_i|x)``, whose gradient is the estimator ``g``.
* ``exact_estimator``: the same ``(e, N)`` with its exact expected gradient
  ``E[g] = w_N(p) grad p`` (the finite-N weight, :mod:`experiments.bernoulli.exact`).
* ``exact_truncated``: exact gradient of ``J^(T)``, ``w_T(p) grad p``; ``T = 1`` is RL and
  ``T = inf`` is exact maximum likelihood.

Compilation. ``N`` fixes array shapes, so the grid is grouped by ``N``: for each ``N`` one
``vmap`` over (estimator, seed) of the sampled update, and one ``vmap`` over estimators of the
exact update; one more ``vmap`` over ``T``. All groups of a policy are advanced together by one
jitted function that runs ``chunk_steps`` steps under ``lax.scan``; there is no rollout padding,
so ``K`` and ``N`` are exactly those of the group. The sampled runs of one ``(N, seed)`` share
their uniform draws across estimators (common random numbers), and seed ``s`` at step ``t``
uses ``fold_in(fold_in(fold_in(key, N), s), t)``, so a resumed run is bit-identical.

Metrics (per run, after every step): mean log p (the ML objective), mean p, pass@k, the fraction
of prompts with ``p > 0.5`` and the mean log p of the hardest decile (the prompts with the lowest
initial pass rate).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.bernoulli import exact
from experiments.bernoulli import policies
from experiments.bernoulli.metrics import hardest_mask, metric_names, policy_metrics
from maxrl_jax import estimators
from maxrl_jax.train.errors import require


# ----------------------------------------------------------------------------- configuration


def validate_config(config) -> None:
  """Raises ConfigError naming the first invalid field (before anything is compiled)."""
  require(config.num_prompts >= 2, "config.num_prompts", f"must be >= 2, got {config.num_prompts}")
  require(0.0 < config.initial_pass_rate_min <= config.initial_pass_rate_max < 1.0,
          "config.initial_pass_rate_min",
          "need 0 < initial_pass_rate_min <= initial_pass_rate_max < 1, got "
          f"{config.initial_pass_rate_min}, {config.initial_pass_rate_max}")
  require(0.0 < config.hardest_fraction <= 1.0, "config.hardest_fraction",
          f"must be in (0, 1], got {config.hardest_fraction}")
  require(len(config.policies) >= 1 and set(config.policies) <= {"tabular", "logistic"},
          "config.policies", f"must be a non-empty subset of (tabular, logistic), "
          f"got {tuple(config.policies)}")
  for name in config.policies:
    pc = config[name]
    require(hasattr(optax, pc.optimizer) and callable(getattr(optax, pc.optimizer)),
            f"config.{name}.optimizer", f"not an optax optimiser: {pc.optimizer!r}")
    require(pc.learning_rate > 0, f"config.{name}.learning_rate",
            f"must be > 0, got {pc.learning_rate}")
  require(config.logistic.num_features >= 1, "config.logistic.num_features",
          f"must be >= 1, got {config.logistic.num_features}")
  require(isinstance(config.seed, int) and config.seed >= 0, "config.seed",
          f"must be an int >= 0, got {config.seed!r}")
  require(config.num_steps >= 1, "config.num_steps", f"must be >= 1, got {config.num_steps}")
  require(config.chunk_steps >= 1 and config.num_steps % config.chunk_steps == 0,
          "config.chunk_steps",
          f"must be >= 1 and divide num_steps={config.num_steps}, got {config.chunk_steps}")
  require(config.checkpoint_every >= 0 and config.checkpoint_every % config.chunk_steps == 0,
          "config.checkpoint_every",
          f"must be 0 or a multiple of chunk_steps={config.chunk_steps}, "
          f"got {config.checkpoint_every}")
  ns = tuple(config.sampled.num_rollouts)
  require(len(ns) >= 1 and all(isinstance(n, int) and n >= 1 for n in ns)
          and len(set(ns)) == len(ns), "config.sampled.num_rollouts",
          f"must be distinct ints >= 1, got {ns}")
  require(config.sampled.num_seeds >= 1, "config.sampled.num_seeds",
          f"must be >= 1, got {config.sampled.num_seeds}")
  for field in ("sampled", "exact"):
    names = tuple(config[field].estimators)
    require(len(set(names)) == len(names), f"config.{field}.estimators",
            f"must be distinct names (may be empty), got {names}")
    for name in names:
      require(name in estimators.METHODS, f"config.{field}.estimators",
              f"unknown estimator {name!r}; expected names from {estimators.METHODS}")
      for n in ns:  # Validates the options (e.g. maxrl_truncated's truncation <= N).
        try:
          estimators.coefficient_table(name, n, **estimator_options(config, name, n))
        except ValueError as err:
          require(False, f"config.sampled.options.{name}", f"{err} (at N = {n})")
  ts = tuple(config.exact.truncations)
  require(all(t == math.inf or (float(t) == int(t) and t >= 1) for t in ts),
          "config.exact.truncations", f"must be ints >= 1 or inf, got {ts}")
  ks = tuple(config.metrics.pass_at_k)
  require(len(ks) >= 1 and all(isinstance(k, int) and k >= 1 for k in ks),
          "config.metrics.pass_at_k", f"must be ints >= 1, got {ks}")
  require(config.figures.num_rollouts in ns, "config.figures.num_rollouts",
          f"must be one of config.sampled.num_rollouts={ns}, got {config.figures.num_rollouts}")
  require(config.analysis.num_repeats >= 2, "config.analysis.num_repeats",
          f"must be >= 2, got {config.analysis.num_repeats}")
  require(config.analysis.weight_num_rollouts >= 1, "config.analysis.weight_num_rollouts",
          f"must be >= 1, got {config.analysis.weight_num_rollouts}")


def estimator_options(config, name: str, n: int | None = None) -> dict[str, Any]:
  """Options of estimator ``name`` from ``config.sampled.options`` (empty if none).

  An option value ``"N"`` stands for the group size ``n`` (e.g. ``maxrl_maclaurin`` with
  ``truncation="N"`` estimates grad J^(N), ``pkpo`` with ``k="N"`` grad pass@N), so one grid
  can run these estimators at every N.
  """
  opts = config.sampled.options
  if name not in opts:
    return {}
  value = opts[name]
  value = dict(value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value)
  if n is not None:
    value = {k: (int(n) if v == "N" else v) for k, v in value.items()}
  return value


def make_optimizer(config, policy_name: str) -> optax.GradientTransformation:
  """The optax optimiser of a policy. Tabular learning rates are per prompt (times M)."""
  pc = config[policy_name]
  lr = pc.learning_rate * (config.num_prompts if policy_name == "tabular" else 1)
  kwargs = pc.optimizer_kwargs.to_dict() if pc.optimizer_kwargs is not None else {}
  return getattr(optax, pc.optimizer)(learning_rate=lr, **kwargs)


def compiler_options(config) -> dict[str, Any] | None:
  """XLA options for the grid's jitted functions (see ``config.fast_cpu_compile``)."""
  if config.fast_cpu_compile and jax.default_backend() == "cpu":
    return {"xla_backend_optimization_level": 0}
  return None


def truncation_label(t) -> str:
  return "ml" if t == math.inf else f"T{int(t)}"


# ----------------------------------------------------------------------------- the grid


@dataclasses.dataclass(frozen=True, eq=False)
class PolicyGrid:
  """All runs of one policy and the jitted function advancing them ``chunk_steps`` steps."""

  config: ml_collections.ConfigDict
  policy: Any
  optimizer: optax.GradientTransformation
  key: jax.Array

  @property
  def ns(self) -> tuple[int, ...]:
    return tuple(self.config.sampled.num_rollouts)

  @property
  def sampled_estimators(self) -> tuple[str, ...]:
    return tuple(self.config.sampled.estimators)

  @property
  def exact_estimators(self) -> tuple[str, ...]:
    return tuple(self.config.exact.estimators)

  @property
  def truncations(self) -> tuple[float, ...]:
    return tuple(float(t) for t in self.config.exact.truncations)

  # -- state

  def _stacked(self, shape: tuple[int, ...]):
    params = self.policy.init()
    opt = self.optimizer.init(params)
    tile = lambda x: jnp.broadcast_to(x, shape + jnp.shape(x))
    return {"params": jax.tree.map(tile, params), "opt": jax.tree.map(tile, opt)}

  def init_state(self) -> dict:
    """Initial parameters and optimiser states of every run (all start equal)."""
    e, s = len(self.sampled_estimators), self.config.sampled.num_seeds
    return {
        "sampled": {f"n{n}": self._stacked((e, s)) for n in self.ns if e},
        "exact_estimator": {f"n{n}": self._stacked((len(self.exact_estimators),))
                            for n in self.ns if self.exact_estimators},
        "exact_truncated": self._stacked((len(self.truncations),)),
    }

  def tables(self) -> dict[str, dict[str, jax.Array]]:
    """Exact coefficient tables per N, stacked over the exact estimators."""
    out = {}
    for n in self.ns if self.exact_estimators else ():
      tabs = [exact.estimator_table(m, n, options=estimator_options(self.config, m, n))
              for m in self.exact_estimators]
      out[f"n{n}"] = exact.stack_tables(tabs).device()
    return out

  def empty_curves(self) -> dict[str, np.ndarray]:
    """Host arrays ``[num_steps + 1, runs..., metrics]`` (NaN until filled); row 0 = init."""
    t, nm = self.config.num_steps + 1, len(metric_names(self.config))
    e, s = len(self.sampled_estimators), self.config.sampled.num_seeds
    curves = {}
    for n in self.ns:
      if e:
        curves[f"sampled/n{n}"] = np.full((t, e, s, nm), np.nan, np.float32)
      if self.exact_estimators:
        curves[f"exact_estimator/n{n}"] = np.full((t, len(self.exact_estimators), nm), np.nan,
                                                  np.float32)
    curves["exact_truncated"] = np.full((t, len(self.truncations), nm), np.nan, np.float32)
    return curves

  # -- one step

  def _update(self, params, opt, loss_fn, *args):
    loss, grads = jax.value_and_grad(loss_fn)(params, *args)
    updates, opt = self.optimizer.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  def sampled_loss(self, params, rewards: jax.Array, advantages: jax.Array) -> jax.Array:
    """Surrogate whose gradient is minus the sampled estimator, mean over prompts."""
    logp = policies.rollout_log_probs(self.policy.logits(params), rewards)
    return estimators.surrogate_loss_from_logprobs(logp, advantages)

  def exact_loss(self, params, coefficient: jax.Array) -> jax.Array:
    """``-mean_x sg(c(x)) l(x)``: its gradient is minus the exact gradient ``E_x[c grad l]``."""
    return -jnp.mean(jax.lax.stop_gradient(coefficient) * self.policy.logits(params))

  def sample_rewards(self, keys: jax.Array, logits: jax.Array, n: int) -> jax.Array:
    """Rewards ``1[u < p]``, ``[E, S, M, n]``, for logits ``[E, S, M]`` and keys ``[S]``.

    Common random numbers: seed ``s`` draws one ``u ~ U[0, 1)^(M x n)`` shared by all
    estimators (float32 uniforms resolve pass rates down to ~1e-7).
    """
    chex.assert_rank(logits, 3)
    chex.assert_shape(keys, (logits.shape[1],))
    u = jax.vmap(lambda k: jax.random.uniform(k, (logits.shape[-1], n)))(keys)  # [S, M, n]
    return (u[None] < jax.nn.sigmoid(logits)[..., None]).astype(jnp.float32)

  def sampled_advantages(self, rewards: jax.Array) -> jax.Array:
    """``[E, ..., M, N]`` advantages: estimator ``e`` applied to ``rewards[e]``."""
    return jnp.stack([
        estimators.advantages(rewards[i], m,
                              **estimator_options(self.config, m, rewards.shape[-1]))
        for i, m in enumerate(self.sampled_estimators)])

  def step(self, state: dict, step: jax.Array, tables: dict, keys: dict, hard: jax.Array):
    """One update of every run; returns the new state and the metrics after it."""
    ks = tuple(self.config.metrics.pass_at_k)
    metrics_of = lambda params: policy_metrics(self.policy.logits(params), hard, ks)
    new = {"sampled": {}, "exact_estimator": {}}
    metrics = {}
    for n in self.ns:
      name = f"n{n}"
      if name in state["sampled"]:
        group = state["sampled"][name]
        logits = jax.vmap(jax.vmap(self.policy.logits))(group["params"])  # [E, S, M]
        step_keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(keys[name])  # [S]
        rewards = self.sample_rewards(step_keys, logits, n)
        adv = self.sampled_advantages(rewards)
        update = lambda p, o, r, a: self._update(p, o, self.sampled_loss, r, a)
        params, opt, _ = jax.vmap(jax.vmap(update))(group["params"], group["opt"], rewards, adv)
        new["sampled"][name] = {"params": params, "opt": opt}
        metrics[f"sampled/{name}"] = jax.vmap(jax.vmap(metrics_of))(params)

      if name not in state["exact_estimator"]:
        continue
      group = state["exact_estimator"][name]

      def exact_update(p, o, table):
        c = exact.expected_logit_coefficient(self.policy.logits(p), table)
        return self._update(p, o, self.exact_loss, c)

      params, opt, _ = jax.vmap(exact_update)(group["params"], group["opt"], tables[name])
      new["exact_estimator"][name] = {"params": params, "opt": opt}
      metrics[f"exact_estimator/{name}"] = jax.vmap(metrics_of)(params)

    group = state["exact_truncated"]

    def truncated_update(p, o, t):
      c = exact.truncated_logit_coefficient(self.policy.logits(p), t)
      return self._update(p, o, self.exact_loss, c)

    ts = jnp.asarray(self.truncations, jnp.float32)
    params, opt, _ = jax.vmap(truncated_update)(group["params"], group["opt"], ts)
    new["exact_truncated"] = {"params": params, "opt": opt}
    metrics["exact_truncated"] = jax.vmap(metrics_of)(params)
    return new, metrics

  def run_keys(self) -> dict[str, jax.Array]:
    """Per-N ``[S]`` keys: ``fold_in(fold_in(key, N), seed)``."""
    seeds = jnp.arange(self.config.sampled.num_seeds)
    return {f"n{n}": jax.vmap(lambda s, n=n: jax.random.fold_in(
        jax.random.fold_in(self.key, n), s))(seeds) for n in self.ns}

  def make_chunk_fn(self):
    """``chunk(state, start_step) -> (state, metrics [chunk_steps, ...])``, jitted."""
    tables = self.tables()
    keys = self.run_keys()
    hard = jnp.asarray(hardest_mask(self.config))
    num_steps = self.config.chunk_steps

    @functools.partial(jax.jit, compiler_options=compiler_options(self.config))
    def chunk(state, start_step):
      def body(state, t):
        return self.step(state, t, tables, keys, hard)

      steps = start_step + jnp.arange(num_steps)
      return jax.lax.scan(body, state, steps)

    return chunk

  def initial_metrics(self) -> np.ndarray:
    ks = tuple(self.config.metrics.pass_at_k)
    hard = jnp.asarray(hardest_mask(self.config))
    return np.asarray(policy_metrics(self.policy.logits(self.policy.init()), hard, ks))


def make_grids(config) -> dict[str, PolicyGrid]:
  """One :class:`PolicyGrid` per policy in ``config.policies``."""
  base = jax.random.key(config.seed)
  return {name: PolicyGrid(config=config, policy=policies.make_policy(name, config),
                           optimizer=make_optimizer(config, name),
                           key=jax.random.fold_in(base, i))
          for i, name in enumerate(config.policies)}
