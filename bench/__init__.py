"""Benchmarks: each module has ``main() -> dict`` that prints its figures and returns them."""
