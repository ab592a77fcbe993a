"""Benchmarks that anyone can rerun (make targets), as opposed to tests."""
