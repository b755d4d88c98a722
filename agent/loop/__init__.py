"""The episode loop: the runner and its per-episode state, the slow/fast arbiter, the fast
path, the deliberate executor with its navigation, and what the agent remembers seeing and
achieving."""
