r"""Memory and FLOP budget of every ``paper`` program, from ahead-of-time compilation (no execution).

Each program the drivers run at the paper's shapes is lowered with abstract inputs
(``jax.ShapeDtypeStruct``) and compiled for ONE device of the current backend (on a CPU-only
machine: XLA:CPU). Nothing runs, so a laptop can check that a paper run fits a device before one
is rented. Per program it prints the compiler's buffer assignment (temporary, argument and output
bytes; ``compiled.memory_analysis()``) and its FLOP count (``compiled.cost_analysis()``):

* maze (paper section 6.2): the SFT step (batch 32, 17x17); the RL step of the scaling sweep
  (256 mazes x N = 128, Figure 3) and of the default setting (32 x 128, Table 3), each ONE step of
  the driver's ``rl_program`` chunk with the preset's ``rl.sample_mazes`` / ``rl.grad_mazes``
  micro-batches and loss aggregation (verl's per-micro-batch token-mean); the SFT and RL steps
  again in float16 with the dynamic loss scale (``*_fp16``: the authors' RL precision); one
  evaluation call (``eval.mazes_per_call`` x ``eval.samples_per_call``);
* ImageNet (paper section 6.1): the ResNet-50 train step at batch 256, 224x224, cross-entropy and
  MaxRL with N = 1024.

Loops. XLA's cost analysis counts the body of a ``while`` loop ONCE, not times its trip count
(checked below: ``flop_check``). The maze RL step has three loops: the sampler's decoding loop
(one trip per generated token), ``lax.map`` over sampling chunks and ``lax.scan`` over gradient
micro-batches. Its FLOPs are therefore rebuilt from loop-free programs compiled separately at the
same shapes (prompt encoding of a chunk, one decoding step, the gradient of one micro-batch
through the driver's ``rl_update``, the optimiser update) and multiplied by the trip counts.
The maze SFT step and the ImageNet steps have no loop; the evaluation call has the decoding loop
(corrected the same way).

Response length. The sampler stops when every rollout of a chunk has stopped, so the number of
decoding steps is the longest response of the chunk (at most the 180-token cap), while the loss is
computed on the whole ``[B, N, 180]`` response tensor (padding masked out). Two lengths are
reported: the cap (180, every rollout runs to the end; the worst case) and a typical response of
the trained policy, ``L = 30`` (a shortest path of ~28-30 moves plus ``DONE``; ``<eos>`` is not
generated, the rollout stops at ``DONE``).

Minimum FLOPs of an RL step (per the paper's setting: prompt encoded once per maze, each response
token forward once and backward once): ``6 P (B Lp + B N L)`` with ``P`` the parameter count
(``2 P`` per token forward, ``4 P`` backward), plus the same with the attention's
``QK^T`` and ``AV`` products (``4 h`` FLOPs per layer per attended position forward, twice that
backward). The sampler's own forward pass is a second forward (``+ 2 P`` per token) unless its
activations were kept; both minima are printed.

Shared against repeated prompt: the FLOPs of the same step with the prompt repeated N times in
the sampler (``sampling.sample(share_prompt=False)``) and in the loss
(``sampling.response_logprobs_naive``), each compiled at ``L = 30`` and at ``L = 180``.

  python benchmarks/paper_budget.py                       # all programs, JSON on stdout
  python benchmarks/paper_budget.py --out=docs/paper_budget.json
  python benchmarks/paper_budget.py --programs=maze_rl_sweep,imagenet_maxrl_n1024

Memory numbers are XLA:CPU's buffer assignment when run on a CPU: an estimate for an accelerator
(whose compiler fuses and lays out differently), not a measurement on one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import os
import sys
import time
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

GIB = float(1 << 30)
BUDGET_GIB = 40.0
TYPICAL_RESPONSE = 30  # tokens: shortest path (~28-30 moves at 17x17) + DONE
MAZE_PROGRAMS = ("maze_sft", "maze_rl_sweep", "maze_rl_table3", "maze_eval", "maze_sft_fp16",
                 "maze_rl_sweep_fp16", "maze_rl_table3_fp16")
IMAGENET_PROGRAMS = ("imagenet_ce", "imagenet_maxrl_n1024")
PROGRAMS = MAZE_PROGRAMS + IMAGENET_PROGRAMS


# --------------------------------------------------------------------------------------------
# Compilation and analysis.

def flops_of(compiled) -> float:
  """``flops`` of ``compiled.cost_analysis()`` (a dict, or a list of dicts in older JAX)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))


def memory_of(compiled) -> dict:
  m = compiled.memory_analysis()
  if m is None:
    return {"temp_gib": None, "argument_gib": None, "output_gib": None, "alias_gib": None}
  return {"temp_gib": m.temp_size_in_bytes / GIB, "argument_gib": m.argument_size_in_bytes / GIB,
          "output_gib": m.output_size_in_bytes / GIB,
          "alias_gib": getattr(m, "alias_size_in_bytes", 0) / GIB}


def compile_abstract(fn, *args, **kwargs):
  """``(compiled, seconds)``: ``fn`` (jitted or not) lowered on abstract ``args``, compiled."""
  jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
  t0 = time.perf_counter()
  compiled = jitted.lower(*args, **kwargs).compile()
  return compiled, time.perf_counter() - t0


def abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def spec(shape, dtype):
  return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype))


def key_spec():
  return jax.eval_shape(lambda: jax.random.key(0))


def one_device_mesh():
  from maxrl_jax.train import mesh as mesh_lib
  return mesh_lib.make_mesh(jax.devices()[:1])


def row(name, compiled, seconds, **extra) -> dict:
  out = {"program": name, **memory_of(compiled), "tflop": flops_of(compiled) / 1e12,
         "compile_seconds": round(seconds, 1)}
  out.update(extra)
  return out


# --------------------------------------------------------------------------------------------
# Maze.

def steps_lib_maze():
  from experiments.maze import steps
  return steps


def maze_setup(preset: str = "paper", **overrides):
  """``(config, task, model_cfg)`` of a maze preset (``overrides``: dotted config fields)."""
  from experiments.maze import config as config_lib
  from experiments.maze import data as maze_data
  from experiments.maze import steps
  config = config_lib.get_config(preset)
  for k, v in overrides.items():
    sec, field = k.split(".")
    config[sec][field] = v
  task = maze_data.MazeTask.from_config(config)
  return config, task, steps.decoder_config(config, task)


def maze_state_spec(model_cfg, opt_spec, loss_scale=None):
  """Abstract ``TrainState`` (``loss_scale``: ``steps.loss_scale_spec``, float16's scaler)."""
  from experiments.maze import steps
  from maxrl_jax.models import transformer
  from maxrl_jax.train.state import TrainState
  params = jax.eval_shape(lambda: transformer.init_params(jax.random.key(0), model_cfg))
  opt = jax.eval_shape(steps.make_optimizer(opt_spec, loss_scale).init, params)
  return TrainState(params, opt)


def maze_sft(config, task, model_cfg, mesh):
  from experiments.maze import steps
  scale = steps.loss_scale_spec(config)
  program = steps.sft_program(task, model_cfg, steps.optimizer_spec(config.sft), mesh,
                              steps.compile_options(config), scale)
  b, s = int(config.sft.batch_size), task.size
  return compile_abstract(program, maze_state_spec(model_cfg, steps.optimizer_spec(config.sft),
                                                   scale), spec((1, b, s, s), np.int8))


def maze_rl(config, task, model_cfg, mesh, batch: int, n: int):
  """One step (a chunk of length 1) of the driver's RL program, the preset's micro-batches,
  loss aggregation (verl's micro-batches at ``batch`` x ``n``) and precision."""
  from experiments.maze import steps
  rl = config.rl
  # The loss on the full response length (rl.loss_lengths' largest branch: the worst case).
  program_spec = dataclasses.replace(steps.rl_program_spec(config, batch, n), loss_lengths=())
  program = steps.rl_program(task, model_cfg, steps.optimizer_spec(rl), program_spec, mesh,
                             steps.compile_options(config))
  s = task.size
  return compile_abstract(program, maze_state_spec(model_cfg, steps.optimizer_spec(rl),
                                                   program_spec.loss_scale),
                          spec((1,), np.int32), spec((1, batch, s, s), np.int8),
                          spec((), np.int32), key_spec())


def maze_eval(config, task, model_cfg):
  from experiments.maze import evaluate
  from experiments.maze import steps
  m, n = int(config.eval.mazes_per_call), int(config.eval.samples_per_call)
  args = (task, model_cfg, n, float(config.eval.temperature), steps.compile_options(config))
  if "mesh" in inspect.signature(evaluate._eval_program).parameters:  # pylint: disable=protected-access
    args += (one_device_mesh(),)
  program = evaluate._eval_program(*args)  # pylint: disable=protected-access
  params = maze_state_spec(model_cfg, steps.optimizer_spec(config.rl)).params
  return compile_abstract(program, params, spec((m, task.size, task.size), np.int8), key_spec())


# Loop-free pieces of the maze RL step (FLOP accounting).

def _prefill_fn(model_cfg, rows: int, lp: int):
  from maxrl_jax.models import transformer

  def prefill(params, prompts):
    pos = jnp.broadcast_to(jnp.arange(lp, dtype=jnp.int32), (rows, lp))
    return transformer.Decoder(model_cfg).apply(params, prompts, pos)
  return prefill


def _decode_fn(model_cfg, b: int, n: int, lp: int):
  """One trip of the sampler's decoding loop body (``sampling._sample_cached.step_fn`` plus the
  categorical draw): ``b`` prompts, ``n`` rollouts each sharing the prompt's keys/values."""
  from maxrl_jax.models import transformer

  def step(params, tok, t, cache, prefix, logits, key):
    draw = jax.random.categorical(key, logits.reshape(b * n, -1).astype(jnp.float32))
    positions = jnp.full((b, n, 1), lp, jnp.int32) + t
    out, cache = transformer.Decoder(model_cfg).apply(
        params, tok.reshape(b, n, 1), positions, cache=cache, cache_index=t, prefix=prefix)
    return draw, out, cache
  return step


def eval_flops(config, task, model_cfg) -> dict:
  """Trip-count-corrected FLOPs of one evaluation call: prompt encoding + decoding steps."""
  m, n = int(config.eval.mazes_per_call), int(config.eval.samples_per_call)
  lp, cap = task.prompt_length, task.max_response_length
  params = maze_state_spec(model_cfg, (1e-4, 0.0, 0, 0.0, (0.9, 0.999))).params
  kv = model_cfg.num_kv_heads, model_cfg.head_dim
  dt = jnp.dtype(model_cfg.dtype)
  pre, _ = compile_abstract(_prefill_fn(model_cfg, m, lp), params, spec((m, lp), np.int32))
  cache = tuple((spec((m, n, cap) + kv, dt),) * 2 for _ in range(model_cfg.num_layers))
  prefix = tuple((spec((m, lp) + kv, dt),) * 2 for _ in range(model_cfg.num_layers))
  dec, _ = compile_abstract(_decode_fn(model_cfg, m, n, lp), params, spec((m * n,), np.int32),
                            spec((), np.int32), cache, prefix,
                            spec((m * n, model_cfg.vocab_size), np.float32), key_spec())
  f_pre, f_dec = flops_of(pre), flops_of(dec)
  return {"tflop_corrected_cap": (f_pre + cap * f_dec) / 1e12,
          "tflop_corrected_typical": (f_pre + TYPICAL_RESPONSE * f_dec) / 1e12,
          "corrected_note": (f"one prompt encoding + {cap} (cap) or {TYPICAL_RESPONSE} "
                             "(typical) decoding steps")}


def rl_pieces(config, task, model_cfg, *, response_len: int, share_prompt: bool) -> dict:
  """FLOPs of the loop-free pieces of one RL step at ``response_len`` (sampling chunk of
  ``rl.sample_mazes`` mazes, gradient micro-batch of ``rl.grad_mazes`` mazes, N = 128)."""
  from experiments.maze import steps
  from maxrl_jax import sampling
  from maxrl_jax.models import transformer
  n = 128
  c, g = int(config.rl.sample_mazes), int(config.rl.grad_mazes)
  lp, length = task.prompt_length, int(response_len)
  cfg = model_cfg
  opt_spec = steps.optimizer_spec(config.rl)
  state = maze_state_spec(cfg, opt_spec)
  params = state.params
  kv = cfg.num_kv_heads, cfg.head_dim
  dt = jnp.dtype(cfg.dtype)
  # Prompt encoding of one sampling chunk (shared: c prompts; repeated: c * N).
  rows = c if share_prompt else c * n
  pre, _ = compile_abstract(_prefill_fn(cfg, rows, lp), params, spec((rows, lp), np.int32))
  # One decoding step (shared: [c, N] rollouts on c prefixes; repeated: [c N, 1] on c N).
  bb, nn = (c, n) if share_prompt else (c * n, 1)
  cache = tuple((spec((bb, nn, length) + kv, dt),) * 2 for _ in range(cfg.num_layers))
  prefix = tuple((spec((bb, lp) + kv, dt),) * 2 for _ in range(cfg.num_layers))
  dec, _ = compile_abstract(_decode_fn(cfg, bb, nn, lp), params, spec((bb * nn,), np.int32),
                            spec((), np.int32), cache, prefix, spec((bb * nn, cfg.vocab_size),
                                                                    np.float32), key_spec())
  # Gradient of one micro-batch through the driver's rl_update (scan of length 1) + update.
  optimizer = steps.make_optimizer(opt_spec)
  out = sampling.SampleOutput(spec((g, n, length), np.int32), spec((g, n, length), np.float32),
                              spec((g, n, length), np.float32))

  # One micro-batch of the FLOP accounting is one accumulation chunk; verl's micro-batch
  # token-mean differs from the token-mean only in scalar normalisers (same FLOPs).
  aggregation = str(config.rl.loss_aggregation).replace("microbatch_token_mean", "token_mean")

  def update(st, prompts, out, adv):
    return steps.rl_update(st, prompts, out, adv, model_cfg=cfg, optimizer=optimizer,
                           grad_mazes=g, aggregation=aggregation)

  patch = (contextlib.nullcontext() if share_prompt else
           mock.patch.object(sampling, "response_logprobs", sampling.response_logprobs_naive))
  with patch:
    upd, _ = compile_abstract(update, state, spec((g, lp), np.int32), out,
                              spec((g, n), np.float32))

  def opt_only(st, grads):
    u, o = optimizer.update(grads, st.opt_state, st.params)
    return jax.tree.map(jnp.add, st.params, u), o

  opt, _ = compile_abstract(opt_only, state, params)
  f_opt = flops_of(opt)
  return {"sample_mazes": c, "grad_mazes": g, "num_rollouts": n, "response_len": length,
          "prefill_chunk": flops_of(pre), "decode_step_chunk": flops_of(dec),
          "grad_micro_batch": flops_of(upd) - f_opt, "optimizer": f_opt}


def rl_step_flops(pieces: dict, batch: int, decode_steps: int, grad_pieces: dict | None = None
                  ) -> dict:
  """Trip-count-corrected FLOPs of one RL step of ``batch`` mazes (``grad_pieces``: the
  gradient pieces when they were compiled at another response length than the sampler's)."""
  gp = grad_pieces or pieces
  chunks, micro = batch // pieces["sample_mazes"], batch // gp["grad_mazes"]
  sample = chunks * (pieces["prefill_chunk"] + decode_steps * pieces["decode_step_chunk"])
  grad = micro * gp["grad_micro_batch"] + gp["optimizer"]
  return {"sample_tflop": sample / 1e12, "grad_tflop": grad / 1e12,
          "total_tflop": (sample + grad) / 1e12}


def minimum_flops(model_cfg, num_params: int, batch: int, n: int, lp: int, length: int) -> dict:
  """``6 P`` per token (prompt once per maze, each response token once forward and backward),
  with and without attention, and with a separate sampling forward (``+2 P`` per token)."""
  h = model_cfg.num_heads * model_cfg.head_dim
  layers = model_cfg.num_layers
  tokens = batch * lp + batch * n * length
  # Attention forward: 4 h FLOPs per layer per attended position (QK^T and AV), causal.
  prompt_ctx = lp * (lp + 1) / 2
  resp_ctx = length * lp + length * (length + 1) / 2
  attn_fwd = 4 * h * layers * (batch * prompt_ctx + batch * n * resp_ctx)
  return {"tokens": tokens, "min_6p_tflop": 6 * num_params * tokens / 1e12,
          "min_6p_attention_tflop": (6 * num_params * tokens + 3 * attn_fwd) / 1e12,
          "min_8p_attention_tflop": (8 * num_params * tokens + 4 * attn_fwd) / 1e12}


def maze_flop_accounting(config, task, model_cfg, full_compiled, batch: int) -> dict:
  """FLOP accounting of the RL step (see the module docstring)."""
  from maxrl_jax.models import transformer
  num_params = transformer.num_params(
      jax.eval_shape(lambda: transformer.init_params(jax.random.key(0), model_cfg)))
  cap = task.max_response_length
  lp = task.prompt_length
  pieces = {}
  for length in (TYPICAL_RESPONSE, cap):
    for share in (True, False):
      pieces[(length, share)] = rl_pieces(config, task, model_cfg, response_len=length,
                                          share_prompt=share)
  # The driver computes the loss on the shortest of rl.loss_lengths (or the cap) that holds
  # every rollout of the batch (experiments.maze.steps.rl_update).
  bucket = min([x for x in config.rl.loss_lengths if x >= TYPICAL_RESPONSE] + [cap])
  if (bucket, True) not in pieces:
    pieces[(bucket, True)] = rl_pieces(config, task, model_cfg, response_len=bucket,
                                       share_prompt=True)
  n = 128
  out = {"num_params": num_params, "prompt_len": lp, "response_cap": cap,
         "typical_response": TYPICAL_RESPONSE,
         "assumption": (f"typical response {TYPICAL_RESPONSE} tokens (shortest path + DONE); the "
                        "sampler runs as many decoding steps as the longest response of its chunk "
                        f"and the loss covers the first {bucket} response positions (the "
                        "shortest of rl.loss_lengths that holds every rollout)"),
         "pieces": {f"L{k[0]}_{'shared' if k[1] else 'repeated'}": v
                    for k, v in pieces.items()}}
  raw = flops_of(full_compiled)
  p = pieces[(cap, True)]
  once = p["prefill_chunk"] + p["decode_step_chunk"] + p["grad_micro_batch"] + p["optimizer"]
  out["flop_check"] = {
      "cost_analysis_raw_tflop": raw / 1e12,
      "each_loop_body_once_tflop": once / 1e12,
      "note": ("cost_analysis of the whole step is close to the sum of ONE prompt-encoding chunk, "
               "ONE decoding step, ONE gradient micro-batch and the optimiser (the rest: rewards "
               "and advantages): XLA counts each while-loop body once. Corrected totals multiply "
               "each piece by its trip count.")}
  rows = {}
  for length in (TYPICAL_RESPONSE, cap):
    shared = rl_step_flops(pieces[(length, True)], batch, length)
    naive = rl_step_flops(pieces[(length, False)], batch, length)
    rows[f"L{length}"] = {
        "shared": shared, "repeated": naive,
        "repeated_over_shared": naive["total_tflop"] / shared["total_tflop"],
        "minimum": minimum_flops(model_cfg, num_params, batch, n, lp, length)}
  # The driver as it is, typical responses: TYPICAL decoding steps on the 180-token cache and
  # the loss on the first `bucket` positions.
  driver_typical = rl_step_flops(pieces[(cap, True)], batch, TYPICAL_RESPONSE,
                                 grad_pieces=pieces[(bucket, True)])
  rows["driver_at_typical_length"] = {
      **driver_typical,
      "note": (f"{TYPICAL_RESPONSE} decoding steps on the {cap}-token cache, loss over the first "
               f"{bucket} response positions (rl.loss_lengths)"),
      "over_min_6p": driver_typical["total_tflop"] / rows[f"L{TYPICAL_RESPONSE}"]["minimum"][
          "min_6p_tflop"],
      "over_min_8p_attention": driver_typical["total_tflop"] / rows[f"L{TYPICAL_RESPONSE}"][
          "minimum"]["min_8p_attention_tflop"]}
  for length in (TYPICAL_RESPONSE, cap):
    r = rows[f"L{length}"]
    r["shared_over_min_6p"] = r["shared"]["total_tflop"] / r["minimum"]["min_6p_tflop"]
    r["shared_over_min_8p_attention"] = (r["shared"]["total_tflop"]
                                         / r["minimum"]["min_8p_attention_tflop"])
  out["per_step"] = rows
  return out


# --------------------------------------------------------------------------------------------
# ImageNet.

def imagenet_step(objective: str, num_rollouts: int, batch: int = 256):
  from experiments.imagenet import config as config_lib
  from experiments.imagenet import runs as runs_lib
  from experiments.imagenet import steps as steps_lib
  from maxrl_jax.train import mesh as mesh_lib
  config = config_lib.get_config("paper")
  config.optim.batch_size = batch
  mesh = one_device_mesh()
  model = steps_lib.build_model(config, 1000)
  tx, schedule = steps_lib.make_optimizer(config, total_steps=100_000, warmup_steps=10_000)
  rc = runs_lib.run_config(config, {"name": objective, "objective": objective,
                                     "num_rollouts": num_rollouts})
  step = jax.jit(steps_lib.make_train_step(rc, model, tx, schedule), donate_argnums=0,
                 out_shardings=(mesh_lib.replicated(mesh),) * 2)
  state = abstract(jax.eval_shape(lambda: steps_lib.init_state(config, model, tx, mesh)))
  size = int(config.data.image_size)
  batch_spec = {"image": spec((batch, size, size, 3), np.uint8), "label": spec((batch,), np.int32)}
  compiled, sec = compile_abstract(step, state, batch_spec, spec((), np.int32))
  return compiled, sec, {"batch": batch, "image_size": size, "dtype": str(config.model.dtype),
                         "num_rollouts": num_rollouts}


# --------------------------------------------------------------------------------------------

def run(programs=PROGRAMS, flops: bool = True, log=None) -> dict:
  log = log or (lambda *a: print(*a, file=sys.stderr, flush=True))
  result = {"benchmark": "paper_budget", "jax": jax.__version__,
            "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
            "budget_gib": BUDGET_GIB, "programs": [], "notes": [
                "temp/argument/output sizes: the compiler's buffer assignment for ONE device of "
                "this backend (XLA:CPU when run on a CPU: an estimate for an accelerator)",
                "tflop: compiled.cost_analysis() (while-loop bodies counted once); for the maze "
                "RL step see maze_rl_flops for trip-count-corrected totals"]}
  if any(p in MAZE_PROGRAMS for p in programs):
    config, task, model_cfg = maze_setup("paper")
    mesh = one_device_mesh()
    for name, dtype in (("maze_sft", "bfloat16"), ("maze_sft_fp16", "float16")):
      if name in programs:
        log(f"compiling {name}")
        cfg_d, task_d, mcfg_d = maze_setup("paper", **{"model.dtype": dtype})
        c, s = maze_sft(cfg_d, task_d, mcfg_d, mesh)
        result["programs"].append(row(name, c, s, batch=int(cfg_d.sft.batch_size),
                                      maze_size=task_d.size, remat=mcfg_d.remat, dtype=dtype))
    for name, preset, batch, dtype in (
        ("maze_rl_sweep", "paper", 256, "bfloat16"),
        ("maze_rl_table3", "paper_table3", 32, "bfloat16"),
        ("maze_rl_sweep_fp16", "paper", 256, "float16"),
        ("maze_rl_table3_fp16", "paper_table3", 32, "float16")):
      if name not in programs:
        continue
      log(f"compiling {name}")
      cfg_p, task_p, mcfg_p = maze_setup(preset, **{"model.dtype": dtype})
      c, s = maze_rl(cfg_p, task_p, mcfg_p, mesh, batch, 128)
      result["programs"].append(row(
          name, c, s, batch=batch, num_rollouts=128, sample_mazes=int(cfg_p.rl.sample_mazes),
          grad_mazes=int(cfg_p.rl.grad_mazes), remat=mcfg_p.remat,
          response_cap=task_p.max_response_length, dtype=dtype,
          loss_aggregation=str(cfg_p.rl.loss_aggregation),
          loss_microbatch_size=steps_lib_maze().loss_microbatch_size(cfg_p, batch, 128),
          note="tflop counts each loop body once; see maze_rl_flops"))
      if dtype != "bfloat16":
        continue  # the FLOP accounting is that of the bfloat16 programs
      if name == "maze_rl_sweep" and flops:
        log("compiling the loop-free pieces of the RL step (FLOP accounting)")
        result["maze_rl_flops"] = maze_flop_accounting(cfg_p, task_p, mcfg_p, c, batch)
      if flops and "maze_rl_flops" in result:
        pieces = result["maze_rl_flops"]["pieces"][f"L{task_p.max_response_length}_shared"]
        if (pieces["sample_mazes"], pieces["grad_mazes"]) == (int(cfg_p.rl.sample_mazes),
                                                              int(cfg_p.rl.grad_mazes)):
          cap = task_p.max_response_length
          bucket = min([x for x in cfg_p.rl.loss_lengths if x >= TYPICAL_RESPONSE] + [cap])
          grad_typical = result["maze_rl_flops"]["pieces"].get(f"L{bucket}_shared", pieces)
          result["programs"][-1].update(
              tflop_corrected_cap=rl_step_flops(pieces, batch, cap)["total_tflop"],
              tflop_corrected_typical=rl_step_flops(pieces, batch, TYPICAL_RESPONSE,
                                                    grad_pieces=grad_typical)["total_tflop"],
              corrected_note=(f"loop trip counts applied: {cap} (cap) or {TYPICAL_RESPONSE} "
                              f"(typical) decoding steps, the loss over {cap} or the first "
                              f"{bucket} positions (rl.loss_lengths)"))
    if "maze_eval" in programs:
      log("compiling maze_eval")
      c, s = maze_eval(config, task, model_cfg)
      result["programs"].append(row(
          "maze_eval", c, s, mazes=int(config.eval.mazes_per_call),
          samples=int(config.eval.samples_per_call),
          note="tflop counts the decoding loop body once (one prompt encoding + one step)"))
      if flops:
        result["programs"][-1].update(eval_flops(config, task, model_cfg))
  for name, objective, n in (("imagenet_ce", "cross_entropy", 1),
                             ("imagenet_maxrl_n1024", "maxrl", 1024)):
    if name in programs:
      log(f"compiling {name}")
      c, s, extra = imagenet_step(objective, n)
      result["programs"].append(row(name, c, s, **extra))
  result["fits"] = all(p["temp_gib"] is None or p["temp_gib"] <= BUDGET_GIB
                       for p in result["programs"])
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--programs", default=",".join(PROGRAMS),
                      help=f"comma-separated subset of {','.join(PROGRAMS)}")
  parser.add_argument("--no-flops", action="store_true",
                      help="skip the loop-free pieces (maze RL FLOP accounting)")
  parser.add_argument("--out", default="", help="also write the JSON here")
  args = parser.parse_args(argv)
  programs = tuple(p for p in args.programs.split(",") if p)
  unknown = set(programs) - set(PROGRAMS)
  if unknown:
    parser.error(f"unknown programs {sorted(unknown)}; choose from {PROGRAMS}")
  t0 = time.perf_counter()
  result = run(programs, flops=not args.no_flops)
  result["wall_seconds"] = round(time.perf_counter() - t0, 1)
  text = json.dumps(result, indent=1)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")
  return result


if __name__ == "__main__":
  main()
