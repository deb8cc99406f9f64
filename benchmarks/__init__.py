"""Benchmarks: runners that print a figure and its ratio against a baseline of the same run."""
