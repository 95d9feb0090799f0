"""Maze navigation driver (paper section 6.2): SFT on BFS paths, then on-policy RL, the N sweep."""
