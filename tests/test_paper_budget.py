"""The heaviest paper-scale programs fit one 40 GiB device: ahead-of-time compilation at the real
shapes (paper section 6.2 scaling sweep, 256 mazes x N = 128, in bfloat16 and in the authors'
float16 with loss scaling; paper section 6.1 ResNet-50 at batch 256 with N = 1024 sampled
labels), read off the compiler's buffer assignment. Nothing runs.
"""

import pytest

from benchmarks import paper_budget


def test_flops_of_reads_dict_and_list_cost_analyses():
  class Compiled:
    def __init__(self, cost):
      self.cost = cost

    def cost_analysis(self):
      return self.cost

  assert paper_budget.flops_of(Compiled({"flops": 3.0})) == 3.0
  assert paper_budget.flops_of(Compiled([{"flops": 2.0}])) == 2.0
  assert paper_budget.flops_of(Compiled(None)) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_maze_rl_sweep_step_fits_40_gib(dtype):
  """The paper preset's RL step (verl's micro-batch token-mean) in bfloat16 and in float16 with
  the dynamic loss scale in the state."""
  config, task, model_cfg = paper_budget.maze_setup("paper", **{"model.dtype": dtype})
  assert (task.size, task.max_response_length, task.prompt_length) == (17, 180, 310)
  assert config.rl.loss_aggregation == "microbatch_token_mean"
  compiled, _ = paper_budget.maze_rl(config, task, model_cfg, paper_budget.one_device_mesh(),
                                     batch=256, n=128)
  mem = paper_budget.memory_of(compiled)
  assert mem["temp_gib"] is not None and 0 < mem["temp_gib"] <= paper_budget.BUDGET_GIB, mem
  state = paper_budget.maze_state_spec(model_cfg, paper_budget.steps_lib_maze().optimizer_spec(
      config.rl), paper_budget.steps_lib_maze().loss_scale_spec(config))
  assert hasattr(state.opt_state, "scale") == (dtype == "float16")


@pytest.mark.slow
def test_maze_sft_step_fits_40_gib_in_float16():
  config, task, model_cfg = paper_budget.maze_setup("paper", **{"model.dtype": "float16"})
  compiled, _ = paper_budget.maze_sft(config, task, model_cfg, paper_budget.one_device_mesh())
  mem = paper_budget.memory_of(compiled)
  assert mem["temp_gib"] is not None and 0 < mem["temp_gib"] <= paper_budget.BUDGET_GIB, mem


@pytest.mark.slow
def test_imagenet_maxrl_n1024_step_fits_40_gib():
  compiled, _, extra = paper_budget.imagenet_step("maxrl", 1024, batch=256)
  assert extra["image_size"] == 224
  mem = paper_budget.memory_of(compiled)
  assert mem["temp_gib"] is not None and 0 < mem["temp_gib"] <= paper_budget.BUDGET_GIB, mem
  assert paper_budget.flops_of(compiled) > 1e12  # ResNet-50 forward+backward, 256 images
