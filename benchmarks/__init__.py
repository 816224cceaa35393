"""Reproduction and speed harness (not tests): ``python -m benchmarks <suite> [--quick]``."""
