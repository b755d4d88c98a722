"""The agent: planners, the deliberate executor, the episode runner, the CLI and the dashboard."""
