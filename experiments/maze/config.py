"""Presets for the maze driver (paper section 6.2, appendices E.1 and L; the authors' code where
the text is silent or differs).

Select one with ``--config=experiments/maze/config.py:<preset>``:

* ``paper``: 17x17 mazes, a ~3M-parameter Qwen2-style decoder (4 layers, hidden 256, MLP 1024,
  GQA 4/2, RoPE 1e6, bf16 compute; float16 with loss scaling one field away), SFT 1,500 steps at
  batch 32, lr 5e-4, then estimators {maxrl, grpo, rloo} x N in {4, ..., 128}, batch 256, lr
  1e-4, 9,000 steps; pass@k on 256 held-out mazes from 2,048 samples. The authors' optimisers
  (AdamW, clipping 1.0, weight decay 0.01), verl's per-micro-batch token-mean, GRPO with the
  sample std, MaxRL eps 1e-6, epochs over 1M fixed training mazes.
* ``paper_table3``: Table 3 / Figure 18: batch 32 x 128 rollouts, 20,000 steps, six methods.
* ``cpu``: the same pipeline sized for two CPU cores (the main job): 9x9 mazes, a tiny decoder,
  a short SFT (seeds 0 and 1) that leaves the pass rate low-to-moderate so RL has room to
  improve, N in {2, 8, 32} x RL seeds {0, 1}, 100 steps, 256 test mazes.
* ``cpu_long``: ``cpu`` trained 400 steps with RL seeds {0, 1, 2} (the README's published run).
* ``cpu_lr``: chooses the CPU learning rate on held-out validation mazes (no test maze).
* ``smoke``: seconds; used by the tests.
* ``paper_scarce``, ``cpu_scarce``, ``smoke_scarce``: the data-scarce regime, the didactic
  analogue of the paper's GSM8K result: RL for many epochs on a small fixed set of training
  mazes, tracking pass@1 and pass@k on those training mazes and on the held-out test mazes.

``config.experiment``: ``"sweep"`` (SFT, the grid estimators x N from one SFT checkpoint,
figures), ``"data_scarce"`` (SFT, one RL run per estimator on ``rl.train_set_size`` fixed mazes,
figures) or ``"single"`` (SFT, one RL run with ``config.rl``).
"""

import ml_collections
from ml_collections.config_dict import placeholder

PRESETS = ("paper", "paper_table3", "cpu", "cpu_long", "cpu_lr", "smoke", "paper_scarce",
           "cpu_scarce", "smoke_scarce")

# k values of the paper's pass@k evaluation; only those <= the number of samples are reported.
PAPER_KS = (1, 32, 128, 256, 1024, 2048)
# Fields added in 0.2.0, with the value a workdir written before them implicitly ran with (a
# run's resume check compares a missing field as this value; maxrl_jax.train.stage).
FIELDS_ADDED = {"maze.num_train": 0, "model.loss_scale_init": 2.0 ** 16,
                "model.loss_scale_period": 400, "rl.loss_microbatch_size": 4096,
                "rl.loss_data_parallel": 4}


def _base() -> ml_collections.ConfigDict:
  """The paper's values (paper section 6.2); presets override what they shrink."""
  c = ml_collections.ConfigDict()
  c.preset = "paper"
  c.experiment = "sweep"
  c.seed = 0
  # XLA options of every compiled program (jax.jit compiler_options). For the tiny CPU presets
  # compilation dominates the wall time, and {"xla_backend_optimization_level": 0} halves it.
  c.compile_options = ml_collections.ConfigDict()

  # Environment: 17x17 Prim mazes, start (1, 1), goal (size-2, size-2).
  c.maze = ml_collections.ConfigDict()
  c.maze.size = 17
  c.maze.extra_openings = 0
  c.maze.num_test = 256  # held-out test mazes (disjoint from the training stream)
  # Held-out validation mazes (the held-out mazes after the test set), evaluated when
  # eval.validation_mazes > 0; the CPU learning rate is chosen on them (preset cpu_lr).
  c.maze.num_validation = 0
  # The authors' fixed training file (maze/generate_maze.py: 1M mazes): SFT and RL take epochs
  # over training-stream mazes [0, num_train), generated per chunk (README: 6.1 s for 1M on one
  # core). 0: a fresh maze every step (CPU presets). Disjoint from test/validation mazes.
  c.maze.num_train = 1_000_000
  # The authors' protocol (maxrl_jax.envs.maze): their verifier (the first arrival at the goal
  # wins; "end_on_goal" is the stricter earlier rule), their generator (cell-frontier Prim grown
  # from the start cell; "random_root" is the earlier one), up to 180 response tokens, and
  # rollouts that stop at DONE or <eos>: the authors' maze/ckpt-1500/generation_config.json has
  # eos_token_id [2, 7] (<eos>, DONE), which their HF rollout and maze/sft.py's evaluation use.
  # The verifier ignores everything after the first DONE, so rewards do not depend on it.
  c.maze.reward_rule = "first_arrival"
  c.maze.generator = "from_start"
  c.maze.response_budget = 180  # 0: the longest BFS answer, 2 m^2 tokens (128 for 17x17)
  c.maze.stop_tokens = ("DONE", "<eos>")

  # Policy: Qwen2-style decoder (maxrl_jax.models.transformer.DecoderConfig fields).
  c.model = ml_collections.ConfigDict()
  c.model.num_layers = 4
  c.model.hidden_dim = 256
  c.model.mlp_dim = 1024
  c.model.num_heads = 4
  c.model.num_kv_heads = 2
  c.model.rope_theta = 1e6
  c.model.rms_eps = 1e-6
  c.model.max_len = 512
  # bfloat16 (float32's exponent range: no loss scaler); "float16", the authors' RL precision,
  # runs both stages behind a dynamic loss scale (experiments/maze/loss_scale.py).
  c.model.dtype = "bfloat16"
  c.model.loss_scale_init = 2.0 ** 16  # float16 only: initial scale (torch's GradScaler)
  c.model.loss_scale_period = 400  # float16 only: finite steps before the scale doubles
  c.model.param_dtype = "float32"
  c.model.remat = False  # rematerialise decoder blocks in the backward pass (memory)

  # Stage 1: next-token cross-entropy on BFS shortest paths, masked to the response.
  c.sft = ml_collections.ConfigDict()
  c.sft.steps = 1500
  c.sft.batch_size = 32
  c.sft.learning_rate = 5e-4
  # The authors' maze/sft.py: AdamW betas (0.9, 0.95), weight decay 0.01, clipping at 1.0.
  c.sft.betas = (0.9, 0.95)
  c.sft.weight_decay = 0.01
  c.sft.max_grad_norm = 1.0
  c.sft.warmup_steps = 0
  # Seed of stage 1 (initialisation and its stream of training mazes); a repeat of SFT with
  # another seed gives the spread of the starting point (sweep.sft_seeds). The maze streams of
  # different SFT seeds are disjoint; the test and validation mazes do not depend on it.
  c.sft.seed = 0
  # A Hugging Face Qwen2 checkpoint directory (config.json + model.safetensors, e.g. the
  # authors' maze/ckpt-1500) to start RL from instead of training stage 1 ("": train SFT).
  c.sft.init_from_hf = ""
  c.sft.chunk_steps = 50
  c.sft.eval_every = 500  # steps between pass@k evaluations (0: only at the end)
  c.sft.checkpoint_every = 500

  # Stage 2: fully on-policy RL (one AdamW update per batch of rollouts).
  c.rl = ml_collections.ConfigDict()
  # estimator / num_rollouts / batch_size / steps are set per run by config.sweep; only
  # experiment "single" reads them (overriding them in a sweep is refused).
  c.rl.estimator = placeholder(str)  # any maxrl_jax.estimators.METHODS name
  c.rl.num_rollouts = placeholder(int)
  c.rl.batch_size = placeholder(int)  # mazes per step (sharded over the "data" mesh axis)
  c.rl.steps = placeholder(int)
  c.rl.seed = placeholder(int)  # the rollouts' keys (sweep.seeds; None means 0)
  # Options per estimator, {estimator: {option: value}} (the authors' code: GRPO with the
  # sample std, MaxRL's denominator K/N + 1e-6).
  c.rl.estimator_options = ml_collections.ConfigDict(
      {"grpo": {"std": "sample", "eps": 1e-6}, "maxrl": {"eps": 1e-6}})
  # The authors' verl settings: AdamW betas (0.9, 0.999), weight decay 0.01, clipping at 1.0.
  c.rl.learning_rate = 1e-4
  c.rl.betas = (0.9, 0.999)
  c.rl.weight_decay = 0.01
  c.rl.max_grad_norm = 1.0  # 0: no clipping
  # verl's token-mean as its actor computes it (dp_actor.py): the mean of each micro-batch's
  # token-mean ("token_mean": one global token-mean; "sequence_mean").
  c.rl.loss_aggregation = "microbatch_token_mean"
  # Micro-batch min(loss_microbatch_size, batch N / loss_data_parallel) sequences: maze_17.sh's
  # ppo_micro_batch_size_per_gpu=4096 on 4 GPUs (N = 128: 8 micro-batches of 4,096; at N < 64,
  # where verl would reject 4096, and in Table 3's 32 x 128: one micro-batch per GPU).
  c.rl.loss_microbatch_size = 4096
  c.rl.loss_data_parallel = 4
  c.rl.temperature = 1.0  # sampling and the loss's log-probs (logits / T), as verl
  # Entropy bonus of the "<estimator>+entropy" runs (Table 3's "GRPO + entropy bonus"): NOT given
  # by the paper (the authors' ppo_trainer.yaml: entropy_coeff 0, set by no maze script); 0.001
  # is this project's untuned choice.
  c.rl.entropy_coef = 0.001
  # Memory: sample this many mazes at a time, accumulate gradients over micro-batches of this
  # many mazes (0: the whole batch). The update equals the unchunked one.
  c.rl.sample_mazes = 32
  c.rl.grad_mazes = 4
  # Compute the loss on the first 32, 64 or 96 response tokens when every rollout of the batch
  # fits (typical answers are ~30 tokens of a 180-token budget); the update is unchanged.
  c.rl.loss_lengths = (32, 64, 96)
  c.rl.chunk_steps = 10
  c.rl.eval_every = 1000
  c.rl.checkpoint_every = 1000
  c.rl.train_set_size = 0  # 0: a fresh maze every time (infinite data); > 0: fixed set, epochs

  # The scaling sweep: grid estimators x num_rollouts from the same SFT checkpoint; these values
  # override rl.batch_size / rl.steps for every grid run.
  c.sweep = ml_collections.ConfigDict()
  c.sweep.estimators = ("maxrl", "grpo", "rloo")
  c.sweep.num_rollouts = (4, 8, 16, 32, 64, 128)
  c.sweep.batch_size = 256
  c.sweep.steps = 9000
  # Seeds as a sweep axis: every (estimator, N) is trained once per RL seed, all from the SFT
  # checkpoint of sft_seeds[0]; the other SFT seeds are repeats of stage 1 (their final
  # evaluation gives the spread of the starting point). Run names get "_s<seed>" when there is
  # more than one RL seed.
  c.sweep.seeds = (0,)
  c.sweep.sft_seeds = (0,)
  # Learning rates as a sweep axis (empty: rl.learning_rate); names get "_lr<rate>" when there
  # is more than one. The cpu_lr preset uses it to choose the CPU rate on validation mazes.
  c.sweep.learning_rates = ()

  # pass@k evaluation on the held-out test mazes (unbiased estimator, temperature 1.0).
  c.eval = ml_collections.ConfigDict()
  c.eval.num_samples = 2048  # samples per maze at the final evaluation
  c.eval.during_num_samples = 256  # samples per maze at the periodic evaluations in training
  c.eval.ks = PAPER_KS
  c.eval.num_mazes = 256  # test mazes evaluated (<= maze.num_test; 0: none, e.g. cpu_lr)
  c.eval.validation_mazes = 0  # validation mazes evaluated as well (<= maze.num_validation)
  c.eval.train_mazes = 0  # data-scarce: how many of the training mazes to evaluate as well
  c.eval.samples_per_call = 128  # rollouts per maze per jitted sampling call (memory bound)
  c.eval.mazes_per_call = 256  # mazes per jitted sampling call
  c.eval.temperature = 1.0
  return c


def _shrink_to_cpu(c: ml_collections.ConfigDict) -> None:
  """The main job's maze sweep on two CPU cores (measured: 9 min 44 s on idle cores, 27 min beside
  other jobs). 200 SFT steps leave test pass@1 near 0.085 and pass@64 near 0.87:
  room for RL, and rollouts that succeed. N spans 16x (the paper's 4 to 128 costs 4x more)."""
  c.preset = "cpu"
  c.maze.size = 9  # 4x4 cells: 100,352 perfect mazes (7x7 has 192, too few to hold out 256)
  c.maze.num_validation = 128
  # Shorter rollouts for speed: the longest BFS answer (32 tokens at 9x9).
  c.maze.response_budget = 0
  c.model.num_layers = 2
  c.model.hidden_dim = 64
  c.model.mlp_dim = 192
  c.model.max_len = 0  # 0: prompt + response length of the maze size (derived)
  c.model.dtype = "float32"
  c.maze.num_train = 0
  c.rl.loss_aggregation = "token_mean"
  c.sft.steps = 200
  c.sft.learning_rate = 3e-3
  c.sft.eval_every = 0
  c.sft.checkpoint_every = 200
  c.rl.sample_mazes = 0  # the whole (small) batch at once
  c.rl.grad_mazes = 0
  # Chosen on the 128 validation mazes by the cpu_lr preset (mean final validation pass@1 of
  # MaxRL, GRPO and RLOO at N = 8 after 200 steps, among 1e-4, 3e-4, 1e-3; docs/maze_cpu_lr.md),
  # the same for every estimator, not tuned per estimator and never on the test mazes.
  c.rl.learning_rate = 1e-4
  c.rl.chunk_steps = 25
  c.rl.eval_every = 50
  c.rl.checkpoint_every = 50
  c.sweep.num_rollouts = (2, 8, 32)
  c.sweep.batch_size = 8
  c.sweep.steps = 100
  c.sweep.seeds = (0, 1)
  c.sweep.sft_seeds = (0, 1)
  c.eval.num_samples = 64
  c.eval.ks = (1, 4, 16, 64)
  c.eval.during_num_samples = 16
  c.eval.samples_per_call = 32


def _cpu_long(c: ml_collections.ConfigDict) -> None:
  """The published CPU maze run (README): the cpu preset trained 4x longer (past the flat part
  of the validation curves: MaxRL N = 8 at lr 1e-4 reached 25% validation pass@1 by step 300
  and stayed there to step 600), 3 RL seeds, 128 samples per test maze."""
  _shrink_to_cpu(c)
  c.preset = "cpu_long"
  c.sweep.steps = 400
  c.sweep.seeds = (0, 1, 2)
  c.eval.num_samples = 128
  c.eval.ks = (1, 4, 16, 64, 128)


def _cpu_lr(c: ml_collections.ConfigDict) -> None:
  """Chooses the CPU presets' RL learning rate on held-out VALIDATION mazes (no test maze is
  evaluated): MaxRL, GRPO and RLOO at N = 8 for 200 steps at each rate."""
  _shrink_to_cpu(c)
  c.preset = "cpu_lr"
  c.sweep.num_rollouts = (8,)
  c.sweep.steps = 200
  c.sweep.seeds = (0,)
  c.sweep.sft_seeds = (0,)
  c.sweep.learning_rates = (1e-4, 3e-4, 1e-3)
  c.eval.num_mazes = 0
  c.eval.validation_mazes = 128
  c.eval.num_samples = 128
  c.eval.ks = PAPER_KS
  c.eval.mazes_per_call = 128


def _shrink_to_smoke(c: ml_collections.ConfigDict) -> None:
  """Seconds: the tests' preset (still SFT -> RL -> eval -> figures, every code path)."""
  _shrink_to_cpu(c)
  c.preset = "smoke"
  c.maze.size = 7  # small and fast; 7x7 still holds 8 distinct held-out test mazes
  c.maze.extra_openings = 1
  c.maze.num_test = 8
  c.maze.num_validation = 0
  c.model.num_layers = 1
  c.model.hidden_dim = 32
  c.model.mlp_dim = 64
  c.model.num_heads = 2
  c.model.num_kv_heads = 1
  c.sft.steps = 150
  c.sft.batch_size = 16
  c.sft.learning_rate = 1e-2
  c.sft.checkpoint_every = 150
  c.rl.chunk_steps = 2
  c.rl.eval_every = 2
  c.rl.checkpoint_every = 2
  c.sweep.estimators = ("maxrl", "rloo")
  c.sweep.num_rollouts = (2, 4)
  c.sweep.batch_size = 8
  c.sweep.steps = 4
  c.sweep.seeds = (0,)
  c.sweep.sft_seeds = (0,)
  c.eval.ks = PAPER_KS
  c.eval.num_samples = 32
  c.eval.during_num_samples = 8
  c.eval.num_mazes = 8
  c.eval.samples_per_call = 8
  c.eval.mazes_per_call = 8
  c.compile_options.xla_backend_optimization_level = 0  # compilation dominates at this size


def _data_scarce(c: ml_collections.ConfigDict) -> None:
  """Many epochs over a small fixed set of training mazes; one run per sweep estimator."""
  c.experiment = "data_scarce"
  c.preset = c.preset + "_scarce"
  c.maze.num_train = 0  # the fixed set is rl.train_set_size


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
  """Returns the named preset (see the module docstring)."""
  c = _base()
  if preset == "paper":
    pass
  elif preset == "paper_table3":
    # The paper's default setting (Table 3, Figure 18): batch 32 mazes x 128 rollouts, 20,000
    # steps, every estimator of Table 3 from the same SFT checkpoint.
    c.preset = "paper_table3"
    c.sweep.estimators = ("maxrl", "grpo", "rloo", "grpo+entropy", "pkpo", "dsgrpo")
    # The authors' PKPO (core_algos.py, k = algorithm.pass_k = 4 in maze/maze_17.sh); the text's
    # "PKPO (T = 16)": --config.rl.estimator_options.pkpo.variant=loo, ...pkpo.k=16.
    c.rl.estimator_options.pkpo = {"k": 4, "variant": "authors"}
    c.sweep.num_rollouts = (128,)
    c.sweep.batch_size = 32
    c.sweep.steps = 20000
  elif preset == "cpu":
    _shrink_to_cpu(c)
  elif preset == "cpu_long":
    _cpu_long(c)
  elif preset == "cpu_lr":
    _cpu_lr(c)
  elif preset == "smoke":
    _shrink_to_smoke(c)
  elif preset == "paper_scarce":
    _data_scarce(c)
    c.rl.train_set_size = 256  # 256 mazes x 128 rollouts, 50 epochs at batch 32 = 400 steps
    c.sweep.num_rollouts = (128,)
    c.sweep.batch_size = 32
    c.sweep.steps = 400
    c.rl.eval_every = 50
    c.rl.checkpoint_every = 100
    c.eval.train_mazes = 256
  elif preset == "cpu_scarce":
    _shrink_to_cpu(c)
    _data_scarce(c)
    c.rl.train_set_size = 32
    c.sweep.num_rollouts = (8,)
    c.sweep.batch_size = 8
    c.sweep.steps = 120  # 30 epochs of the 32 training mazes
    c.sweep.sft_seeds = (0,)
    c.rl.chunk_steps = 20
    c.rl.eval_every = 40
    c.rl.checkpoint_every = 40
    c.eval.train_mazes = 32
  elif preset == "smoke_scarce":
    _shrink_to_smoke(c)
    _data_scarce(c)
    c.rl.train_set_size = 8
    c.sweep.estimators = ("maxrl", "grpo")
    c.sweep.num_rollouts = (4,)
    c.sweep.steps = 4
    c.eval.train_mazes = 8
  else:
    raise ValueError(f"unknown maze preset {preset!r}; choose one of {PRESETS}")
  return c
