"""The benchmarks `peam bench` runs (continual, savings) and their reports."""
