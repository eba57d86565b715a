"""Benchmarks of the workspace (`make bench`): each reports ratios against a baseline run in the same process."""
