"""Benchmarks beside the peers; run each from the repository root as `python -m benchmarks.<name>`."""
