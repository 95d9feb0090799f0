"""Maze navigation driver (paper section 6.2): SFT on BFS paths, then on-policy RL, the N sweep.

Its experiments in the reproduction (:mod:`experiments.common.drivers`): ``{name: preset}``
(the data-scarce regime is the ``<preset>_scarce`` preset).
"""

EXPERIMENTS = {"maze": "{preset}", "maze_scarce": "{preset}_scarce"}
