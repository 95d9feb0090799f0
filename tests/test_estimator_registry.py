"""The estimator registry: one record per method, the derived tables, the options schema."""

from __future__ import annotations

import dataclasses
import pathlib
import typing

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from maxrl_jax import estimators

REPO = pathlib.Path(__file__).resolve().parents[1]

# The public names kept from before the registry, with their values and order.
OLD_METHODS = ("reinforce", "mean_baseline", "rloo", "grpo", "maxrl", "maxrl_keep_cv",
               "maxrl_no_cv", "maxrl_truncated", "maxrl_maclaurin", "pkpo", "dsgrpo")
OLD_DEFAULTS = {
    "reinforce": {},
    "mean_baseline": {},
    "rloo": {},
    "grpo": {"std": "population", "eps": 1e-6},
    "maxrl": {"eps": None},
    "maxrl_keep_cv": {},
    "maxrl_no_cv": {},
    "maxrl_truncated": {"truncation": None, "control_variate": True},
    "maxrl_maclaurin": {"truncation": None},
    "pkpo": {"k": 16, "variant": "loo"},
    "dsgrpo": {"std": "population", "eps": 1e-6, "correct_coef": 0.05, "incorrect_coef": 0.05},
}


def test_derived_tables_keep_their_values_and_order():
  assert estimators.METHODS == OLD_METHODS
  assert tuple(estimators.REGISTRY) == OLD_METHODS
  assert typing.get_args(estimators.Method) == OLD_METHODS
  assert estimators.LOGPROB_METHODS == ("dsgrpo",)
  assert {m: e.defaults for m, e in estimators.REGISTRY.items()} == OLD_DEFAULTS
  for name, est in estimators.REGISTRY.items():
    assert est.name == name
    assert estimators.REWARD_DOMAIN[name] == est.reward_domain
    assert (name in estimators.LOGPROB_METHODS) == est.needs_logprobs
  assert [m for m, e in estimators.REGISTRY.items() if e.fixed_group_size] == [
      "maxrl_truncated", "maxrl_maclaurin", "pkpo"]


def test_records_are_frozen_and_registry_is_read_only():
  est = estimators.REGISTRY["maxrl"]
  with pytest.raises(dataclasses.FrozenInstanceError):
    est.reward_domain = "real"  # type: ignore[misc]
  with pytest.raises(TypeError):
    estimators.REGISTRY["new"] = est  # type: ignore[index]
  with pytest.raises(ValueError, match="reward_domain"):
    estimators.Estimator("x", "r_i", "0", "grad p", "ternary")  # type: ignore[arg-type]
  with pytest.raises(ValueError, match="options"):
    estimators.Estimator("x", "r_i", "0", "grad p", "real",
                         options=(estimators.Option("a", 1, "complex"),))


def test_every_record_has_a_kernel_branch_and_the_docs():
  """Each record evaluates (the kernel knows its name) and its docs fields are filled."""
  n = 4
  rewards = jnp.asarray([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
  for name, est in estimators.REGISTRY.items():
    assert est.advantage and est.at_k0 and est.unbiased_for
    options = {o.name: n for o in est.options if o.required}
    if name == "pkpo":
      options["k"] = 2
    logp = -jnp.ones_like(rewards) if est.needs_logprobs else None
    out = estimators.advantages(rewards, name, logprobs=logp, **options)
    assert out.shape == rewards.shape and np.all(np.isfinite(np.asarray(out)))


def test_table_markdown_is_in_the_readme_and_the_module_docstring():
  table = estimators.table_markdown()
  rows = table.splitlines()
  assert len(rows) == 2 + len(estimators.METHODS) + sum(
      len(e.variants) for e in estimators.REGISTRY.values())
  for name, est in estimators.REGISTRY.items():
    row = next(r for r in rows if r.startswith(f"| `{name}`"))
    assert est.advantage in row and row.endswith(f"| {est.reward_domain} |")
  assert table in estimators.__doc__
  readme = (REPO / "README.md").read_text()
  assert table in readme, "README's estimator table differs from estimators.table_markdown()"


def test_validate_options_accepts_and_normalises():
  got = estimators.validate_options({
      "grpo": {"std": "sample", "eps": 0},
      "maxrl": {"eps": None},
      "maxrl_truncated": {"truncation": "N", "control_variate": np.bool_(False)},
      "pkpo": {"k": np.int64(4), "variant": "authors"},
      "reinforce": {},
  })
  assert got == {"grpo": {"std": "sample", "eps": 0.0}, "maxrl": {"eps": None},
                 "maxrl_truncated": {"truncation": "N", "control_variate": False},
                 "pkpo": {"k": 4, "variant": "authors"}, "reinforce": {}}
  assert type(got["pkpo"]["k"]) is int and type(got["grpo"]["eps"]) is float
  at_16 = estimators.validate_options({"maxrl_truncated": {"truncation": "N"},
                                       "pkpo": {"k": "N"}}, 16)
  assert at_16 == {"maxrl_truncated": {"truncation": 16}, "pkpo": {"k": 16}}
  config = ml_collections.ConfigDict({"maxrl_maclaurin": {"truncation": 8}})
  assert estimators.validate_options(config, 8) == {"maxrl_maclaurin": {"truncation": 8}}
  assert estimators.validate_options({}) == {}


@pytest.mark.parametrize(
    "options,n,message",
    [({"ppo": {}}, None, r"^cfg\.ppo: unknown estimator 'ppo'"),
     ({"maxrl": {"std": "sample"}}, None, r"^cfg\.maxrl\.std: not an option"),
     ({"grpo": {"std": "bessel"}}, None, r"^cfg\.grpo\.std: must be one of"),
     ({"grpo": {"eps": -1.0}}, None, r"^cfg\.grpo\.eps: must be finite and >= 0"),
     ({"grpo": {"eps": None}}, None, r"^cfg\.grpo\.eps: grpo needs a value"),
     ({"pkpo": {"k": 9}}, 8, r"^cfg\.pkpo\.k: must satisfy 1 <= k <= N = 8, got 9"),
     ({"pkpo": {"k": 0}}, None, r"^cfg\.pkpo\.k: must satisfy"),
     ({"pkpo": {"k": 2.0}}, None, r"^cfg\.pkpo\.k: must be a static Python int"),
     ({"pkpo": {"k": "n"}}, None, r"^cfg\.pkpo\.k: must be an int in 1\.\.N or the string"),
     ({"pkpo": {"variant": "plain"}}, None, r"^cfg\.pkpo\.variant: must be one of"),
     ({"maxrl_truncated": {}}, None, r"^cfg\.maxrl_truncated\.truncation: maxrl_truncated "
      r"needs truncation="),
     ({"maxrl_truncated": {"truncation": 2, "control_variate": 1}}, None,
      r"^cfg\.maxrl_truncated\.control_variate: must be a bool"),
     ({"dsgrpo": {"correct_coef": float("inf")}}, None, r"^cfg\.dsgrpo\.correct_coef: must be"),
     ({"maxrl": 3}, None, r"^cfg\.maxrl: must be a mapping"),
     ([("maxrl", {})], None, r"^cfg: must be a mapping"),
     ({"maxrl": {}}, 0, r"^n: must satisfy")])
def test_validate_options_errors_name_the_dotted_field(options, n, message):
  with pytest.raises(ValueError, match=message):
    estimators.validate_options(options, n, field="cfg")


def test_default_field_name():
  with pytest.raises(ValueError, match=r"^estimator_options\.pkpo\.k: "):
    estimators.validate_options({"pkpo": {"k": -1}})


def test_resolve_options():
  assert estimators.resolve_options("pkpo", None, 32) == {"k": 16, "variant": "loo"}
  assert estimators.resolve_options("pkpo", {"k": "N"}, 4) == {"k": 4, "variant": "loo"}
  assert estimators.resolve_options("pkpo", {"k": "N"}) == {"k": "N", "variant": "loo"}
  assert estimators.resolve_options("maxrl_truncated", {"truncation": "N"}, 8) == {
      "truncation": 8, "control_variate": True}
  assert estimators.resolve_options("grpo", {}, 8) == {"std": "population", "eps": 1e-6}
  with pytest.raises(ValueError, match=r"^k: must satisfy 1 <= k <= N = 8"):
    estimators.resolve_options("pkpo", {}, 8)  # the default k = 16 exceeds N
  with pytest.raises(ValueError, match=r"^config\.rl\.pkpo\.k: must satisfy"):
    estimators.resolve_options("pkpo", {}, 8, field="config.rl")
  with pytest.raises(ValueError, match=r"^method: unknown estimator"):
    estimators.resolve_options("ppo", {}, 8)
  # The resolved options are what advantages() runs with: "N" means the group size.
  rewards = jnp.asarray([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]])
  np.testing.assert_allclose(
      estimators.advantages(rewards, "maxrl_truncated", truncation="N"),
      estimators.advantages(rewards, "maxrl_truncated",
                            **estimators.resolve_options("maxrl_truncated",
                                                         {"truncation": "N"}, 6)))
  fn = estimators.make_advantage_fn("pkpo", k="N")  # resolved at the call, N = 6
  np.testing.assert_allclose(fn(rewards), estimators.advantages(rewards, "pkpo", k=6))


def test_py_typed_marker():
  assert (REPO / "maxrl_jax" / "py.typed").is_file()
