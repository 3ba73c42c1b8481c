"""Benchmarks of a local production-style hub; see bench/README.md (`python -m bench list`)."""
