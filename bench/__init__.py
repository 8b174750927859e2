"""Benchmarks: each measures the service beside a bare baseline in the same run."""
