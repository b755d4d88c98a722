"""The agent: the episode loop (loop/), its planners (planners/), the services that run it
(services/), the benchmarks `peam bench` runs (bench/), the CLI and the dashboard."""
