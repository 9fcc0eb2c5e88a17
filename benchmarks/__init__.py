"""Benchmarks for asyncprov: ``python -m benchmarks [--quick]`` writes RESULTS.md here.

Not part of the installed package; see benchmarks/README.md.
"""
