"""Benchmarks for maild: figures are printed against a floor measured in the same run."""
