"""Maze navigation driver (SPEC section 4.3): SFT on BFS paths, then on-policy RL, the N sweep."""
